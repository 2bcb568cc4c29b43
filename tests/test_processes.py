"""Processes: an output is locked against a real second edgekd process, a signal to bench ends its
worker child and removes its temporary folder, impossible --out paths are refused up front, and
every numeric option is checked against a sane range."""
from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import assert_user_error, run_cli, run_cli_here
from edgekd.device.bench.run import run_bench
from edgekd.train.config import load_config
from edgekd.core.errors import ConfigError, EdgeKDError
from edgekd.exporters import export_run
from edgekd.core.fsutil import refuse_existing

# a distill of a few seconds: the lock test pauses it (SIGSTOP) while a second process tries
QUICK = ["--teacher", "mlp:hidden=16", "--student", "mlp:hidden=8", "--folds", "2",
         "--teacher-epochs", "2", "--student-epochs", "3", "--quiet"]


def _start(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgekd", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _wait_for(condition, seconds: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended before {what}: {proc.communicate()}")
        time.sleep(0.01)
    pytest.fail(f"no {what} within {seconds} s")


@pytest.fixture
def paused():
    """Processes this test stopped with SIGSTOP: continued (or killed) whatever happens."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_a_second_distill_on_a_live_run_folder_is_refused_and_the_first_finishes(tmp_path, paused):
    out = tmp_path / "run"
    first = _start("distill", *QUICK, "--out", str(out), cwd=tmp_path)
    paused.append(first)
    _wait_for(lambda: (tmp_path / ".run.partial" / "train.log").is_file(), 120, "training", first)
    os.kill(first.pid, signal.SIGSTOP)        # holds its lock while the others try
    try:
        for extra in (["--resume"], ["--force"], []):     # --resume is what the refusal hint suggests
            second = run_cli("distill", *QUICK, "--out", str(out), *extra, cwd=tmp_path)
            assert_user_error(second, f"run folder '{out}' is being written by another edgekd process "
                                      f"(PID {first.pid})")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    lines = [line.split(" ", 2)[2] for line in (out / "train.log").read_text().splitlines()]
    assert len(lines) == len(set(lines)), lines           # every line once: one process wrote it
    assert (out / "cv.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]     # no staging folder, no lock file


def test_a_second_export_to_the_same_new_bundle_is_refused(demo_run, tmp_path, paused):
    out = tmp_path / "bundle"
    args = ("export", str(demo_run), "--no-int8", "--roles", "student", "--out", str(out), "--quiet")
    first = _start(*args)
    paused.append(first)
    _wait_for(lambda: (tmp_path / ".bundle.lock").exists(), 300, "lock file", first)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        assert_user_error(run_cli(*args), f"bundle folder '{out}' is being written by another edgekd "
                                           f"process (PID {first.pid})")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.communicate()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert_user_error(run_cli(*args), "already exists")     # and a later one is told so, not let replace it


# --- signals to bench ------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    """Live bench workers whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z" and b"edgekd.device.bench.worker" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _bench_with_a_worker(demo_bundle, tmp_path) -> tuple[subprocess.Popen, int, Path]:
    bundle, tmp = tmp_path / "bundle", tmp_path / "tmp"
    shutil.copytree(demo_bundle, bundle)
    tmp.mkdir()
    # 30 s of timed calls: --max-runs would stop a fast model after 2 s
    parent = _start("bench", str(bundle), "--min-seconds", "30", "--max-runs", "10000000", "--threads", "1", "--quiet",
                    env={**os.environ, "TMPDIR": str(tmp)})
    worker = _wait_for(lambda: _children(parent.pid), 120, "bench worker", parent)[0]
    return parent, worker, tmp


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_bench_ends_its_worker_and_removes_its_temporary_folder(demo_bundle, tmp_path):
    parent, worker, tmp = _bench_with_a_worker(demo_bundle, tmp_path)
    try:
        os.kill(parent.pid, signal.SIGTERM)
        _, stderr = parent.communicate(timeout=10)
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
    assert parent.returncode == 143, stderr
    assert [x for x in stderr.splitlines() if x.strip()] == ["error: terminated"]
    assert not _alive(worker)
    assert list(tmp.glob("edgekd-bench-*")) == []       # (onnxruntime leaves a .ses file of its own there)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_dies_with_a_parent_killed_outright(demo_bundle, tmp_path):
    parent, worker, _ = _bench_with_a_worker(demo_bundle, tmp_path)
    try:
        os.kill(parent.pid, signal.SIGKILL)      # no cleanup runs in the parent
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker)
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


# --- --out paths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("out,fragment", [
    ("/proc/edgekd-run", "cannot write in '/proc'"),
    ("/sys/edgekd-run", "cannot write in '/sys'"),
    ("/proc/new/deeper/run", "cannot write in '/proc'"),
    ("NAME" + "r" * 296, "is too long"),
    ("r" * 300 + "/run", "is too long"),
    ("r" * 250, "is too long"),             # fits, but its staging name .NAME.partial would not
    (b"runs/\xff".decode("utf-8", "surrogateescape"), "is not valid UTF-8"),
], ids=["proc", "sys", "proc-deeper", "name-300", "folder-300", "name-250", "not-utf8"])
def test_an_output_the_file_system_cannot_hold_is_refused_up_front(tmp_path, monkeypatch, out, fragment):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeKDError) as info:
        refuse_existing(Path(out), False, "run folder")
    assert fragment in info.value.message and "\n" not in info.value.message
    info.value.message.encode("utf-8")        # printable as it is
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_distill_out_that_is_not_utf8_leaves_nothing_behind(tmp_path):
    out = b"runs/\xff".decode("utf-8", "surrogateescape")
    for _ in range(2):          # the second run is refused for the same reason, not by a leftover
        assert_user_error(run_cli("distill", *QUICK, "--out", out, cwd=tmp_path), "is not valid UTF-8")
    assert list(tmp_path.iterdir()) == []


def test_a_bench_output_that_cannot_be_written_is_refused_before_measuring(demo_bundle):
    measured = []
    with pytest.raises(EdgeKDError, match="cannot write in '/proc'"):
        run_bench(demo_bundle, out="/proc/edgekd/bench.json", progress=lambda *step: measured.append(step))
    assert measured == []


# --- numeric options ---------------------------------------------------------------------------

@pytest.mark.parametrize("options,fragment", [
    ({"threads": [100000]}, "threads must be at least 1 and at most"),
    ({"batch": [100000000]}, "batch must be at least 1 and at most 65536"),
    ({"warmup": 10**7}, "warmup must be at least 0 and at most 1,000,000"),
    ({"warmup_seconds": math.inf}, "warmup_seconds must be at least 0 and at most 3,600, got inf"),
    ({"min_seconds": math.nan}, "min_seconds must be at least 0 and at most 3,600, got nan"),
    ({"min_seconds": 1e9}, "min_seconds must be at least 0 and at most 3,600"),
    ({"runs": 10**8}, "runs must be at least 1 and at most 10,000,000"),
    ({"runs": 2.5}, "(a whole number)"),
    ({"max_runs": 10**9}, "max_runs must be at least 100 and at most 10,000,000"),
    ({"repeat": 5000}, "repeat must be at least 1 and at most 1,000"),
    ({"timeout": 0}, "timeout must be at least 1 and at most 86,400"),
    ({"timeout": math.nan}, "timeout must be at least 1"),
    ({"seed": -1}, "seed must be at least 0 and at most 4,294,967,295"),
])
def test_bench_numbers_out_of_range_are_refused_before_anything_runs(tmp_path, options, fragment):
    with pytest.raises(ConfigError) as info:
        run_bench(tmp_path / "no-bundle-needed", out=False, **options)
    assert fragment in info.value.message


@pytest.mark.parametrize("options,fragment", [
    ({"folds": 1000}, "folds must be at least 1 and at most 100"),
    ({"teacher_epochs": 10**6}, "teacher epochs must be at least 1 and at most 100000"),
    ({"student_epochs": 10**6}, "student epochs must be at least 1 and at most 100000"),
    ({"batch_size": 10**6}, "batch size must be at least 1 and at most 65536"),
    ({"temperature": 1e9}, "temperature must be a finite number > 0 and at most 1000"),
    ({"lr": 100.0}, "learning rate must be a finite number > 0 and at most 10"),
    ({"weight_decay": math.inf}, "weight decay must be a finite number >= 0 and at most 10"),
])
def test_distill_numbers_out_of_range_are_refused(options, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, **options)
    assert fragment in info.value.message


@pytest.mark.parametrize("options,fragment", [
    ({"calibration_samples": 0}, "calibration samples must be at least 1 and at most 100000"),
    ({"calibration_samples": 10**12}, "calibration samples must be at least 1 and at most 100000"),
    ({"opset": 18.5}, "ONNX opset 18.5 is not supported"),
    ({"formats": "onnx,tflite"}, "formats must be a list of names, got 'onnx,tflite'"),     # the CLI's text
    ({"roles": "student"}, "roles must be a list of names, got 'student'"),
])
def test_bad_export_options_are_refused_before_the_run_is_read(tmp_path, options, fragment):
    with pytest.raises(ConfigError) as info:
        export_run(tmp_path / "no-run-needed", **options)
    assert fragment in info.value.message


@pytest.mark.parametrize("args,fragment", [
    (["bench", "missing", "--threads", "100000"], "threads must be at least 1 and at most"),
    (["bench", "missing", "--warmup-seconds", "inf"], "warmup_seconds must be at least 0 and at most 3,600"),
    (["distill", "--folds", "1000"], "folds must be at least 1 and at most 100"),
])
def test_numbers_out_of_range_are_one_error_line(tmp_path, args, fragment):
    assert_user_error(run_cli_here(*args, cwd=tmp_path), fragment)
    assert list(tmp_path.iterdir()) == []
