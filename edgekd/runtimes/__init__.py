"""Model runtimes behind one small interface. Torch-free: this is the device side.

``open_model(path)`` picks the runtime from the file suffix (``.onnx`` → onnxruntime,
``.tflite`` → TFLite through ai_edge_litert / tflite_runtime / tensorflow.lite) or from
an explicit runtime name, and returns a :class:`Runtime`::

    rt = open_model("student.int8.tflite", threads=1)
    logits = rt.run(x_float32)          # quantize → invoke → dequantize, float32 logits
    xq = rt.prepare(x_float32)          # once, outside any timer
    call = rt.bind(xq)                  # zero-argument callable: the runtime's own call only
    raw = rt.fetch(call()); logits = rt.postprocess(raw)

int8 input quantization and output dequantization use the model's own scale and
zero point, read from the model file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import RuntimeBackendError, unknown_name
from ..registry import Registry
from .base import Runtime, UnsupportedBatch, TensorInfo

#: runtime name → opener(path, threads, providers) -> Runtime. Aliases point at the same opener.
RUNTIMES: Registry[Callable[..., Runtime]] = Registry("runtime", RuntimeBackendError)

#: file suffix → runtime name
SUFFIXES = {".onnx": "onnxruntime", ".tflite": "tflite"}


@RUNTIMES.register("onnxruntime")
def _open_onnx(path, threads=None, providers=None) -> Runtime:
    from .onnx import OnnxRuntime
    return OnnxRuntime(path, threads=threads, providers=providers)


@RUNTIMES.register("tflite")
def _open_tflite(path, threads=None, providers=None) -> Runtime:
    from .tflite import TFLiteRuntime
    return TFLiteRuntime(path, threads=threads)


# Aliases users (and manifests) may write.
RUNTIMES.register("onnx")(_open_onnx)
RUNTIMES.register("ort")(_open_onnx)
RUNTIMES.register("litert")(_open_tflite)

CANONICAL = {"onnxruntime": "onnxruntime", "onnx": "onnxruntime", "ort": "onnxruntime",
             "tflite": "tflite", "litert": "tflite"}


def canonical_runtime(name: str) -> str:
    """The canonical runtime name for ``name`` (an alias or a canonical name); unknown → error."""
    RUNTIMES.get(name)  # raises with the known names and the closest match
    return CANONICAL[name]


def runtime_for(path: str | os.PathLike, runtime: str | None = None) -> str:
    """The canonical runtime that opens ``path``: the given name, else by file suffix."""
    if runtime:
        return canonical_runtime(runtime)
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise unknown_name("model file suffix", suffix or Path(path).name, SUFFIXES, RuntimeBackendError)
    return SUFFIXES[suffix]


def open_model(path: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None,
               runtime: str | None = None) -> Runtime:
    """Open a model file with the runtime its suffix (or ``runtime``) names."""
    path = Path(path)
    name = runtime_for(path, runtime)
    if not path.is_file():
        raise RuntimeBackendError(f"model file '{path}' not found")
    if threads is not None and threads < 1:
        raise RuntimeBackendError(f"threads must be at least 1, got {threads}")
    return RUNTIMES.get(name)(path, threads=threads, providers=providers)


__all__ = ["Runtime", "TensorInfo", "UnsupportedBatch", "RUNTIMES", "SUFFIXES", "open_model",
           "runtime_for", "canonical_runtime", "np"]
