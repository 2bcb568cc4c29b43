"""Parent side of the measurement: one fresh child process per (model, threads, batch). Torch-free."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekd.core.errors import BundleError, ConfigError, DataError, EdgeKDError, ModelError, RuntimeBackendError

_KINDS = {c.kind: c for c in (EdgeKDError, BundleError, ConfigError, DataError, ModelError,
                              RuntimeBackendError)}

WORKER = [sys.executable, "-m", "edgekd.device.bench.worker"]
GRACE_SECONDS = 2.0      # a child asked to stop (SIGTERM) gets this long before SIGKILL


class WorkerCrash(RuntimeError):
    """The child died without an answer (a native crash, out of memory, killed)."""


def _child_env() -> dict:
    env = dict(os.environ)
    # the child must import this very edgekd, wherever it is (source checkout or installed)
    root = str(Path(__file__).resolve().parents[3])     # the folder holding edgekd/
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def spawn_worker(request: dict, prefix: list[str] | None = None,
                 timeout: float | None = None) -> tuple[dict, str]:
    """Measure one model in a fresh child; returns (response, child's stderr).

    ``prefix`` wraps the child command (``["/usr/bin/time", "-v"]`` in the overhead benchmark).
    An EdgeKDError in the child is raised here as the same kind; a skipped batch returns
    ``{"ok": False, "skip": reason}``.
    """
    with tempfile.TemporaryDirectory(prefix="edgekd-bench-") as tmp:
        req_path, resp_path = Path(tmp, "request.json"), Path(tmp, "response.json")
        # the worker dies with its parent; behind a prefix its parent is the prefix's process
        req_path.write_text(json.dumps({**request, "parent_pid": None if prefix else os.getpid()}))
        cmd = [*(prefix or []), *WORKER, str(req_path), str(resp_path)]
        try:
            returncode, stderr = _run_child(cmd, timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeBackendError(f"measuring '{Path(request['path']).name}' took longer than {timeout:g} s",
                                      hint="lower --runs / --min-seconds, or raise the timeout") from None
        if not resp_path.is_file():
            tail = "\n".join(stderr.strip().splitlines()[-5:])
            how = f"signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
            raise RuntimeBackendError(
                f"the runtime crashed on '{Path(request['path']).name}' ({how})",
                hint=f"the model may be corrupt or use an unsupported op; child said: {tail or 'nothing'}")
        response = json.loads(resp_path.read_text())
    if response.get("ok") or "skip" in response:
        return response, stderr
    if "error" in response:
        err = response["error"]
        raise _KINDS.get(err["kind"], EdgeKDError)(err["message"], hint=err.get("hint"))
    raise WorkerCrash(f"the bench worker failed on {request['path']}: {response.get('crash')}\n"
                      f"{response.get('traceback', '')}")


def _run_child(cmd: list[str], timeout: float | None) -> tuple[int, str]:
    """(exit status, stderr) of the child. It never outlives this call: on a timeout, Ctrl-C or
    SIGTERM (which edgekd's CLI turns into an exception) it is ended before the error goes on."""
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=_child_env()) as proc:
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except BaseException:
            proc.terminate()
            try:
                proc.wait(GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    return proc.returncode, stderr.decode("utf-8", "replace")
