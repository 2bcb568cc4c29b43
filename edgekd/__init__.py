"""edgekd: distill a classifier, export it to ONNX and int8 TFLite, bench it on the device.

The CLI is a thin layer over these functions; heavy imports (torch, onnx,
litert_torch) happen inside them, so importing edgekd stays fast and torch-free.
"""
__version__ = "0.1.0"

__all__ = ["__version__", "distill", "export", "bench"]


def distill(config):
    """Run the distillation experiment described by a ``DistillConfig``; see edgekd.distill.experiment."""
    from .distill.experiment import run_experiment
    return run_experiment(config)


def export(run_dir, **options):
    """Export a run folder into a bundle; see edgekd.exporters.export_run."""
    from .exporters import export_run
    return export_run(run_dir, **options)


def bench(target, **options):
    """Benchmark a bundle or one model file; see edgekd.bench.run_bench."""
    from .bench import run_bench
    return run_bench(target, **options)
