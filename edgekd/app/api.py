"""The Python API behind the commands: ``from edgekd import distill, export, bench, sweep, Predictor``.

Each function takes the command's options as keywords (their names as in the command's ``--help``,
with ``_`` for ``-``), checks them as the command does (one :class:`~edgekd.core.errors.EdgeKDError`
for a mistake, never a half-written output), writes the same files and returns the same document
(annotated with its TypedDict where the schema declares one). Torch, onnx and the runtimes are
imported when a function runs, not by ``import edgekd``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from edgekd.app.sweep import SweepOptions
    from edgekd.core.schema.bench import BenchDoc
    from edgekd.core.schema.cv import Document as CVDoc
    from edgekd.train.distill.trio import Reporter
    from edgekd.core.schema.sweep import SweepDoc

Where = str | Path        # a file or folder, as text or a Path


def distill(config: Where | None = None, *, resume: bool = False, force: bool = False,
            trust_model_code: bool = False, reporter: Reporter | None = None, **options: Any) -> CVDoc:
    """Train the teacher, the distilled student and the labels-only simple model with k-fold CV, write
    the run folder ``out`` and return its ``cv.json`` document (``edgekd distill``).

    ``config``: a TOML file of the same keys (a run's ``config.toml`` re-runs it); ``options``: the
    command's options over it, e.g. ``distill(data="folder:photos", out="runs/mine", folds=1,
    teacher="resnet8", student="mobilenetv3_small_050_s2")``. ``resume=True`` continues an
    interrupted run with its own configuration; ``force=True`` replaces an existing run folder;
    ``trust_model_code=True`` lets a config name your own model code; ``reporter(event, **info)``
    hears the progress (``EpochLines(sys.stderr)`` from :mod:`edgekd.train.distill` prints a line per
    epoch, as the command does in a CI log).
    """
    from edgekd.train.distill import run_experiment
    from edgekd.train.distill.checks import run_config

    cfg = run_config(config, trust_model_code, resume, **options)
    return run_experiment(cfg, reporter, resume=resume, force=force, trust_model_code=trust_model_code)


def export(run: Where, out: Where | None = None, *, force: bool = False, **options: Any) -> dict[str, Any]:
    """Export a run folder's models into a bundle folder (``out``, default ``RUN/bundle``) and return
    its ``export.json`` document (``edgekd export``): every file with its size and its parity with
    PyTorch in its own runtime. Its shape is the dataclass :class:`~edgekd.core.schema.export.ExportReport`
    (``ExportReport.from_json(doc, "export")`` reads it as one).

    ``options``: :class:`~edgekd.exporters.run.ExportOptions`' fields, e.g. ``int8=True``,
    ``formats=["onnx", "tflite-int8"]``, ``roles=["student"]``, ``keep_float="auto"``,
    ``input="uint8"``.
    """
    from edgekd.exporters import export_run

    return export_run(run, out, force=force, **options)


def bench(target: Where, *, out: Where | None | bool = None, markdown: Where | None = None, plot: Where | None = None,
          **options: Any) -> BenchDoc:
    """Measure a bundle's models (or one ``.onnx``/``.tflite`` file) on this machine and return the
    ``bench.json`` document (``edgekd bench``): accuracy, latency and memory per file and setting.

    ``options``: :class:`~edgekd.device.bench.options.BenchOptions`' fields, e.g. ``threads=[1]``,
    ``runs=200``, ``profile=True``; ``out``: where bench.json goes (default beside the target;
    ``False``: nowhere); ``markdown``/``plot``: extra outputs. Torch-free: this runs on the board.
    """
    from edgekd.device.bench.run import run_bench

    return run_bench(target, out=out, markdown=markdown, plot=plot, **options)


def sweep(students: str | list[str], out: Where, *, config: Where | None = None,
          options: SweepOptions | None = None, **distill_options: Any) -> SweepDoc:
    """Distill, export and bench each student of ``students`` (specs, or one text split at ``;``)
    against one teacher, write the sweep folder ``out`` and return ``sweep.json`` (``edgekd sweep``):
    the Pareto fronts of accuracy against latency, size and memory, and the pick.

    ``config`` and ``distill_options``: the distill configuration, as :func:`distill` takes it;
    ``options``: :class:`~edgekd.app.sweep.SweepOptions` (how to bench, a budget, the board, and
    ``trust_model_code``, which the configuration is read with too).
    """
    from edgekd.app.sweep import SweepOptions, run_sweep
    from edgekd.train.config import load_config

    options = options or SweepOptions()
    cfg = load_config(config, options.trust_model_code, **distill_options)
    return cast("SweepDoc", run_sweep(cfg, students, out, options))
