"""``edgekd bench``: accuracy, latency and memory of every model of a bundle, on this device.

Torch-free (the device side runs with numpy + a runtime). :func:`run_bench` (:mod:`.run`) verifies
the target (:mod:`.target`) and measures each model in its own fresh child process
(:mod:`.worker`), as :class:`BenchOptions` (:mod:`.options`) say; the result is the ``bench.json``
document (:mod:`edgekd.core.schema.bench`).
"""
from __future__ import annotations

from edgekd.device.bench.options import DEFAULTS, BenchOptions, default_threads
from edgekd.device.bench.run import run_bench
from edgekd.device.bench.target import check_classes, resolve_target   # check_classes: the worker scores with it

__all__ = ["run_bench", "BenchOptions", "resolve_target", "check_classes", "default_threads",
           "DEFAULTS"]
