"""Put on PYTHONPATH by tests/test_device_envs.py, so every Python process of a bench (the parent
and each measuring child) loads it and writes to the file $EDGEKD_NETWORK_LOG: one "python PID"
line when it starts (proof the guard was there) and one line for each attempt to reach the
network. The test asserts there is none; the bench's private network namespace also makes any
attempt fail."""
import os
import sys

NETWORK_EVENTS = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                  "socket.sendto", "socket.sendmsg", "urllib.Request", "http.client.connect"}
LOG = os.environ.get("EDGEKD_NETWORK_LOG")


def _write(line):
    with open(LOG, "a") as log:
        log.write(line + "\n")


def _record(event, args):
    if event in NETWORK_EVENTS:
        _write(f"{event} {args!r}")


if LOG:
    _write(f"python {os.getpid()}")
    sys.addaudithook(_record)
