"""Shared, expensive fixtures: one real distill run and one real bundle per session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Small but real: digits, 2 folds, short training (about 4 s). Tests check behaviour, not accuracy
# targets, but the models are trained well enough (student ~87 %, not near chance) that a wrong
# prediction anywhere downstream shows up in the accuracies the tests compare.
TINY = dict(data="digits", teacher="cnn:width=32,depth=2", student="cnn:width=8,depth=2", folds=2,
            teacher_epochs=4, student_epochs=20, student_fraction=0.5, batch_size=64, seed=0)


# Long enough that all three models converge (~98% held-out on digits): a run on another path
# (torchrun, CUDA mixed precision) is then compared with this one, not with the noise of
# half-trained models.
CONVERGING = dict(data="digits", teacher="cnn:width=32,depth=2", student="cnn:width=16,depth=2", folds=2,
                  teacher_epochs=10, student_epochs=40, student_fraction=0.5, batch_size=128, seed=0)


@pytest.fixture(scope="session")
def converged_cpu_run(tmp_path_factory) -> dict:
    """The cv.json document of one CONVERGING run in this process, on the CPU."""
    from edgekd.config import load_config
    from edgekd.distill import run_experiment

    return run_experiment(load_config(None, **CONVERGING, device="cpu",
                                      out=str(tmp_path_factory.mktemp("converged") / "run")))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A real run folder from ``run_experiment`` on digits (session-wide, read-only for tests)."""
    from edgekd.config import load_config
    from edgekd.distill import run_experiment

    out = tmp_path_factory.mktemp("demo") / "run"
    run_experiment(load_config(None, **TINY, out=str(out)))
    return out


@pytest.fixture(scope="session")
def demo_bundle(demo_run, tmp_path_factory) -> Path:
    """A real bundle from ``edgekd.export`` of ``demo_run`` (the default --int8 set)."""
    import edgekd

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    edgekd.export(demo_run, out=out)
    return out


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``edgekd ARGS`` in a real subprocess (exit codes and stderr exactly as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "edgekd", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=900)


def assert_user_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    """One clear ``error:`` line (an optional ``hint:``), exit 2, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert lines and lines[0].startswith("error: "), result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    assert "Traceback" not in result.stderr
    assert fragment.lower() in result.stderr.lower(), result.stderr
