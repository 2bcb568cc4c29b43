"""Shared, expensive fixtures: one real distill run and one real bundle per session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Under pytest-xdist (make test-fast runs two workers) each worker is one process on one of the 2
# cores: torch's own threads would oversubscribe them (measured: the fast lane took 1.5x as long with
# both workers at torch's default threads as with one thread each). Set before any test imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

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


#: the shared fixtures that train, export or run a sweep, here and in test modules (those built on these,
#: like test_gate's baseline, need no entry): a test that uses one, itself or through another fixture,
#: is ``slow``
SLOW_FIXTURES = {"converged_cpu_run", "demo_run", "demo_bundle", "demo_bench", "zoo_run", "zoo_bundle",
                 "image_run", "image_bundle",
                 "base_run",                    # test_export: a trained run
                 "v3", "cnn_run", "pooled",     # test_onnx_int8: exported or trained models
                 "sweep",                       # test_sweep: a whole sweep
                 "rgb_run", "pixel_bundles"}    # test_pixel_input: an RGB run, exported twice
#: modules slow by nature: each test starts sshd, builds a device environment or runs torchrun
SLOW_MODULES = {"test_device_envs", "test_remote", "test_distributed"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``make test-fast`` (``-m "not slow"``) keeps pure logic, golden values, schemas and the bad
    inputs refused before any training. ``slow``: a test of the modules above, one that uses a fixture
    above, and the few that train, export or start the CLI in a process inline, marked where they are
    written (``@pytest.mark.slow``; test_bad_input marks the table's rows that copy the shared run)."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.module.__name__ in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def image_cache(tmp_path_factory):
    """The decoded-image cache of every test (folder: sources, --image-size) in a folder of the
    session's, not the user's ~/.cache; subprocesses inherit it."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME")
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(scope="session")
def converged_cpu_run(tmp_path_factory) -> dict:
    """The cv.json document of one CONVERGING run in this process, on the CPU."""
    from edgekd.train.config import load_config
    from edgekd.train.distill import run_experiment

    return run_experiment(load_config(None, **CONVERGING, device="cpu",
                                      out=str(tmp_path_factory.mktemp("converged") / "run")))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A real run folder from ``run_experiment`` on digits (session-wide, read-only for tests)."""
    from edgekd.train.config import load_config
    from edgekd.train.distill import run_experiment

    out = tmp_path_factory.mktemp("demo") / "run"
    run_experiment(load_config(None, **TINY, out=str(out)))
    return out


def exported(run: Path, tmp_path_factory, name: str) -> Path:
    """The default --int8 bundle of ``run``, in a fresh folder ``name``."""
    import edgekd

    out = tmp_path_factory.mktemp(name) / "bundle"
    edgekd.export(run, out=out)
    return out


@pytest.fixture(scope="session")
def demo_bundle(demo_run, tmp_path_factory) -> Path:
    """A real bundle from ``edgekd.export`` of ``demo_run`` (the default --int8 set)."""
    return exported(demo_run, tmp_path_factory, "bundle")


#: the zoo through every stage: a ResNet teacher and a MobileNetV3-Small student (hard-swish and
#: squeeze-excitation: the ops int8 converters leave float most often), short enough to stay ~1 min
#: on 2 cores, long enough that the student is well above chance
ZOO_RUN = dict(data="digits", teacher="resnet:depth=8", student="mobilenetv3:variant=small,width=0.25", folds=1,
               teacher_epochs=2, student_epochs=8, student_fraction=0.5, batch_size=64, seed=0)


@pytest.fixture(scope="session")
def zoo_run(tmp_path_factory) -> tuple[Path, dict]:
    """(run folder, cv.json) of one ZOO_RUN (session-wide, read-only for tests)."""
    from edgekd.train.config import load_config
    from edgekd.train.distill import run_experiment

    out = tmp_path_factory.mktemp("zoo") / "run"
    return out, run_experiment(load_config(None, **ZOO_RUN, out=str(out)))


@pytest.fixture(scope="session")
def zoo_bundle(zoo_run, tmp_path_factory) -> Path:
    """The default --int8 bundle of ``zoo_run``: its student.int8.tflite is full-integer MobileNetV3."""
    return exported(zoo_run[0], tmp_path_factory, "zoo_bundle")


def digits_png_folder(root: Path) -> Path:
    """sklearn's digits as 8-bit gray PNG files, one folder per class (values 0..16 scaled to 0..240):
    a folder of pictures as a user has one, for the paths that decode image files."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        folder = root / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((pixels * 15).astype(np.uint8), "L").save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def image_run(tmp_path_factory) -> Path:
    """TINY on ``digits_png_folder`` resized to 12×12: a run whose manifest records an image transform."""
    from edgekd.train.config import load_config
    from edgekd.train.distill import run_experiment

    root = tmp_path_factory.mktemp("digits_png")
    out = root / "run"
    run_experiment(load_config(None, **{**TINY, "data": f"folder:{digits_png_folder(root / 'images')}",
                                        "image_size": "12"}, out=str(out)))
    return out


@pytest.fixture(scope="session")
def image_bundle(image_run, tmp_path_factory) -> Path:
    """The default --int8 bundle of ``image_run``."""
    return exported(image_run, tmp_path_factory, "image_bundle")


#: a short bench: one thread, five timed runs (the numbers are checked for shape, not for speed)
FAST_BENCH = dict(threads=[1], runs=5, min_seconds=0.0, warmup=2, warmup_seconds=0.0)
#: the same, as ``edgekd bench`` options
FAST_BENCH_ARGS = [text for key, value in FAST_BENCH.items() for text in
                   (f"--{key.replace('_', '-')}", ",".join(map(str, value)) if isinstance(value, list) else str(value))]


@pytest.fixture(scope="session")
def demo_bench(demo_bundle, tmp_path_factory) -> dict:
    """The bench.json document of one ``FAST_BENCH`` bench of ``demo_bundle`` (written beside it, not in it)."""
    from edgekd.device.bench.run import run_bench

    return run_bench(demo_bundle, out=tmp_path_factory.mktemp("bench") / "bench.json", **FAST_BENCH)


def torch_blocked(tmp_path: Path) -> dict:
    """The environment of a process in which torch and scikit-learn cannot be imported, as on a board
    (each replaced by a package whose import fails); checked before it is handed out."""
    blocker = tmp_path / "blocker"
    for mod in ("torch", "sklearn"):
        (blocker / mod).mkdir(parents=True)
        (blocker / mod / "__init__.py").write_text(f"raise ImportError('{mod} is not on the device')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), str(Path(__file__).resolve().parents[1])])}
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True,
                           env={**os.environ, **env})
    assert probe.returncode != 0 and "not on the device" in probe.stderr
    return env


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``edgekd ARGS`` in a real subprocess (exit codes and stderr exactly as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "edgekd", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=900)


def assert_user_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    """One clear ``error:`` line (an optional ``hint:``), exit 2, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert fragment.lower() in result.stderr.lower(), result.stderr


def run_cli_here(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``edgekd ARGS`` in this process, through the console script's own entry point (``edgekd.app.cli.main``:
    EdgeKDGroup's error printing and exit codes), for the many cases of the one-line contract that need
    no process of their own: a subprocess re-imports torch (2-3 s) for each.

    Warnings go to the captured stderr as in a fresh interpreter (default filters, every occurrence), so
    a stray warning line still breaks the contract. An exception the CLI lets through is returned as exit
    1 with its traceback on stderr, as Python would print it. What this cannot see (a process's start-up,
    signals, another process's lock, a library logging to its own stream) stays with ``run_cli``."""
    import contextlib
    import io
    import tempfile
    import traceback
    import warnings

    from edgekd.app.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    saved = sys.argv, dict(os.environ), tempfile.tempdir, os.getcwd()
    sys.argv, tempfile.tempdir = ["edgekd", *map(str, args)], None      # None: TMPDIR is read again
    os.environ.update(env or {})
    os.chdir(cwd or saved[3])          # not contextlib.chdir: edgekd supports Python 3.10
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                warnings.catch_warnings(record=True) as caught:
            _fresh_interpreter_warning_filters()
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:                    # what a user would see as a traceback
                code = 1
                stderr.write(traceback.format_exc())
    finally:
        sys.argv, tempfile.tempdir = saved[0], saved[2]
        os.chdir(saved[3])
        os.environ.clear()
        os.environ.update(saved[1])
    for w in caught:
        stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
    return subprocess.CompletedProcess(["edgekd", *map(str, args)], code, stdout.getvalue(), stderr.getvalue())


def _fresh_interpreter_warning_filters() -> None:
    """What ``python -m edgekd`` starts with (pytest's own filters removed), each warning shown every time."""
    import warnings

    warnings.resetwarnings()
    warnings.simplefilter("always")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("always", category=DeprecationWarning, module="__main__")
