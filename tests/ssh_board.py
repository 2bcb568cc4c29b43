"""A real OpenSSH server for the remote-bench tests: Debian's sshd on a free port of 127.0.0.1, with
a throwaway host key and user key, reached through an ssh_config file of its own (host checking on:
its host key is the one line of its known_hosts).

As root the server runs in a network namespace of its own (``unshare --net``, only loopback up),
which no other process on this machine can reach, and ssh reaches it through a ProxyCommand that
enters that namespace (``nsenter --net``) and relays the connection (:data:`RELAY`). Without root it
listens on this machine's 127.0.0.1, for this user's key alone. ``make test`` installs
openssh-server (and rsync) as root when they are missing.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
ALIAS = "edgekd-test-board"
#: a few lines of stdlib Python: stdin/stdout to a TCP port, for ssh's ProxyCommand
RELAY = r"""
import socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while (data := sys.stdin.buffer.read1(65536)):
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while (data := s.recv(65536)):
    sys.stdout.buffer.write(data); sys.stdout.buffer.flush()
"""


@dataclass
class Board:
    host: str                 # the alias of ssh_config
    ssh_config: Path
    isolated: bool            # in a network namespace of its own
    process: subprocess.Popen

    def ssh(self, script: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", self.host, script],
                              capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def missing() -> str | None:
    """Why no board can be started here, or None."""
    for tool in ("ssh", "ssh-keygen", "scp"):
        if not shutil.which(tool):
            return f"no {tool} here"
    if not SSHD.is_file():
        return "no /usr/sbin/sshd: make test installs openssh-server when run as root (apt-get install openssh-server)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keys(d: Path) -> None:
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"edgekd-test-{name}", "-f", d / name],
                       check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    (d / "known_hosts").write_text(f"{ALIAS} {(d / 'host_key.pub').read_text()}")
    for name in ("host_key", "user_key", "authorized_keys"):
        os.chmod(d / name, 0o600)


def _user() -> str:
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name


def _server_config(d: Path, port: int) -> Path:
    user = _user()
    lines = [f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}",
             f"AuthorizedKeysFile {d / 'authorized_keys'}", "PasswordAuthentication no",
             "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", f"AllowUsers {user}",
             "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no", f"PidFile {d / 'sshd.pid'}",
             "Subsystem sftp internal-sftp", "LogLevel ERROR"]
    (d / "sshd_config").write_text("\n".join(lines) + "\n")
    return d / "sshd_config"


def _client_config(d: Path, port: int, relay_pid: int | None) -> Path:
    user = _user()
    lines = [f"Host {ALIAS}", "  HostName 127.0.0.1", f"  Port {port}", f"  User {user}",
             f"  IdentityFile {d / 'user_key'}", "  IdentitiesOnly yes", f"  HostKeyAlias {ALIAS}",
             f"  UserKnownHostsFile {d / 'known_hosts'}", "  StrictHostKeyChecking yes", "  LogLevel ERROR"]
    if relay_pid is not None:
        (d / "relay.py").write_text(RELAY)
        lines.append(f"  ProxyCommand nsenter --target {relay_pid} --net -- {sys.executable} {d / 'relay.py'} "
                     f"127.0.0.1 {port}")
    lines += ["Host edgekd-test-nowhere", "  HostName 127.0.0.1", f"  Port {free_port()}",
              f"  IdentityFile {d / 'user_key'}", "  IdentitiesOnly yes", f"  UserKnownHostsFile {d / 'known_hosts'}"]
    (d / "ssh_config").write_text("\n".join(lines) + "\n")
    return d / "ssh_config"


def start(d: Path) -> Board:
    """The server, answering: a throwaway key pair each, its own configs under ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    _keys(d)
    port = free_port()
    server = [str(SSHD), "-D", "-e", "-f", str(_server_config(d, port))]
    isolated = os.geteuid() == 0 and shutil.which("nsenter") is not None and shutil.which("ip") is not None
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)          # sshd's privilege-separation folder
    if isolated:         # exec: the process is sshd itself, inside its own namespace
        server = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *server]
    process = subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "w"))
    board = Board(ALIAS, _client_config(d, port, process.pid if isolated else None), isolated, process)
    deadline = time.monotonic() + 30
    while board.ssh("true").returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            board.stop()
            raise RuntimeError(f"the test sshd did not answer: {(d / 'sshd.log').read_text()}")
        time.sleep(0.2)
    return board
