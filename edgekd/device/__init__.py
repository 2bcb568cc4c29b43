"""Device tier: what runs on the board. Torch-free: numpy and a runtime (onnxruntime, LiteRT).

:mod:`edgekd.device.runtimes` opens model files (the only place that does);
:mod:`edgekd.device.bench` measures a bundle and gates a change on the numbers. Imports only
:mod:`edgekd.core` (``lint-imports`` enforces it: pyproject.toml, [tool.importlinter]).
"""
