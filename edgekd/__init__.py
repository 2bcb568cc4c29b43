"""edgekd: distill a classifier, export it to ONNX and int8 TFLite, bench it on the device.

The Python API behind the three commands::

    from edgekd.config import load_config
    from edgekd.distill import run_experiment      # edgekd distill
    import edgekd; edgekd.export(run_dir)           # edgekd export
    from edgekd.bench import run_bench              # edgekd bench (torch-free)

Heavy imports (torch, onnx, litert_torch) happen inside these, so ``import edgekd``
stays fast and torch-free.
"""
__version__ = "0.1.0"

__all__ = ["__version__", "export"]


def export(run_dir, **options):
    """Export a run folder into a bundle; see ``edgekd.exporters.export_run``."""
    from .exporters import export_run
    return export_run(run_dir, **options)
