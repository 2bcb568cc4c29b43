"""Core tier: what every stage shares, and nothing heavier than numpy.

Errors, the generic registry, safe file writing, number formatting, the bundle (the folder that
travels to the device) and the JSON/TOML documents between stages (:mod:`edgekd.core.schema`).
Imports no other tier, and never torch, onnx or litert (``lint-imports`` enforces both: pyproject.toml, [tool.importlinter]).
"""
