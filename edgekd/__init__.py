"""edgekd: distill a classifier, export it to ONNX and int8 TFLite, bench it on the device.

The Python API behind the three commands::

    from edgekd.train.config import load_config
    from edgekd.train.distill import run_experiment      # edgekd distill
    import edgekd; edgekd.export(run_dir)           # edgekd export
    from edgekd.device.bench.run import run_bench              # edgekd bench (torch-free)
    from edgekd import Predictor; Predictor(bundle).predict(images)   # edgekd predict (torch-free)

Heavy imports (torch, onnx, litert_torch) happen inside these, so ``import edgekd``
stays fast and torch-free.
"""
from edgekd.core.version import __version__

__all__ = ["__version__", "export", "Predictor"]


def __getattr__(name: str):
    """``edgekd.Predictor``, imported when first used (numpy and a runtime: ``import edgekd`` stays light)."""
    if name == "Predictor":
        from edgekd.device.predict import Predictor
        return Predictor
    raise AttributeError(f"module 'edgekd' has no attribute '{name}'")


def export(run_dir, **options):
    """Export a run folder into a bundle; see ``edgekd.exporters.export_run``."""
    from edgekd.exporters import export_run
    return export_run(run_dir, **options)
