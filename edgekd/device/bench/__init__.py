"""``edgekd bench``: accuracy, latency and memory of every model of a bundle, on this device.

Torch-free (the device side runs with numpy + a runtime). :func:`~.run.run_bench` verifies the
target (:mod:`.target`) and measures each model in its own fresh child process (:mod:`.worker`),
as :class:`~.options.BenchOptions` say; the result is the ``bench.json`` document
(:mod:`edgekd.core.schema.bench`), written by :mod:`.outputs`.

This package imports nothing itself: each module costs only its own imports, so the CLI reads
bench's option defaults (:mod:`.options`, stdlib only) without loading numpy, and a worker child
measures its memory without the parent's modules loaded.
"""
