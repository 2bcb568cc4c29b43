"""edgekd: distill a classifier, export it to ONNX and int8 TFLite, bench it on the device.

The Python API, one function per command, each returning its document (:mod:`edgekd.app.api`)::

    from edgekd import distill, export, bench, sweep, Predictor

    summary = distill(data="folder:photos", out="runs/mine", folds=1)   # cv.json
    report = export("runs/mine", int8=True)                             # export.json
    result = bench("runs/mine/bundle", threads=[1])                     # bench.json (torch-free)
    top5 = Predictor("runs/mine/bundle").predict("photo.jpg")           # edgekd predict (torch-free)

Each is imported when first used, and heavy imports (torch, onnx, litert_torch) happen inside
them, so ``import edgekd`` stays fast and torch-free.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from edgekd.core.version import __version__

if TYPE_CHECKING:
    from edgekd.app.api import bench, distill, export, sweep
    from edgekd.device.predict import Predictor

__all__ = ["__version__", "distill", "export", "bench", "sweep", "Predictor"]


def __getattr__(name: str):
    """The API's names, imported when first used (``import edgekd`` stays light)."""
    if name == "Predictor":
        from edgekd.device.predict import Predictor
        return Predictor
    if name in ("distill", "export", "bench", "sweep"):
        from edgekd.app import api
        return getattr(api, name)
    raise AttributeError(f"module 'edgekd' has no attribute '{name}'")
