"""Model runtimes behind one small interface: the only code in edgekd that opens a model file and
runs it (parity checks, brought teachers, export checks and bench all come here). Torch-free.

``open_model(path)`` picks the runtime from the file suffix (``.onnx`` → onnxruntime,
``.tflite`` → TFLite through ai_edge_litert / tflite_runtime / tensorflow.lite) or from
an explicit runtime name, and returns a :class:`Runtime`::

    rt = open_model("student.int8.tflite", threads=1)
    logits = rt.logits(x_float32)       # every sample, batched, padded, (de)quantized: float32 logits
    xq = rt.prepare(x_float32)          # once, outside any timer
    call = rt.bind(xq)                  # zero-argument callable: the runtime's own call only
    raw = rt.fetch(call()); logits = rt.postprocess(raw)

int8 input quantization and output dequantization use the model's own scale and
zero point, read from the model file.

Each runtime is one row of :data:`ROWS`; every table keyed by runtime (suffixes, aliases, the
packages device info reports, the worker's backend import, bench's file check, bench's int8-vs-fp32
pairs and table labels, which teacher defines agreement) is derived from it.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgekd.core.errors import RuntimeBackendError, unknown_name
from edgekd.core.registry import Registry
from edgekd.device.runtimes.base import Runtime, TensorInfo, UnsupportedBatch


def _function(ref: str) -> Callable:
    """``"module:name"`` inside edgekd.device.runtimes, imported only when used (rows stay cheap to build)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


@dataclass(frozen=True)
class RuntimeRow:
    name: str                        # the canonical name, written in manifests and bench.json
    aliases: tuple[str, ...]         # other names users may write
    suffixes: tuple[str, ...]        # model file suffixes it opens (lower case)
    packages: tuple[str, ...]        # pip distributions whose versions device info reports
    export_format: str               # the export format of a file of this runtime, when nothing says
    int8_io_format: str | None       # … and when its input is int8 (None: int8 I/O says nothing)
    opener: str                      # "module:callable(path, threads=, providers=) -> Runtime"
    backend: str                     # "module:callable()" that imports the runtime's package
    file_check: str | None = None    # "module:callable(path, name)" for a bundle's file, before it runs
    int8_format: str | None = None   # the int8 format bench sets beside export_format (None: no such pair)
    label: str | None = None         # the runtime as people know it, in bench's tables (None: its name)

    def open(self, path: Path, threads: int | None = None, providers: list[str] | None = None) -> Runtime:
        return _function(self.opener)(path, threads=threads, providers=providers)

    def import_backend(self) -> None:
        """Import the runtime's package (the bench worker does this before it measures the memory
        'before load', so that figure is the model's own)."""
        _function(self.backend)()

    def check_file(self, path: Path, name: str) -> None:
        """Refuse a bundle's file this runtime would read more than the listed file of (BundleError)."""
        if self.file_check:
            _function(self.file_check)(path, name)

    def format_of(self, int8_input: bool) -> str:
        """The export format a file of this runtime most likely is (for a single file bench is given)."""
        return self.int8_io_format if int8_input and self.int8_io_format else self.export_format


#: in order of preference: the first runtime's fp32 teacher defines bench's agreement
ROWS: tuple[RuntimeRow, ...] = (
    RuntimeRow("onnxruntime", aliases=("onnx", "ort"), suffixes=(".onnx",),
               packages=("onnxruntime", "onnxruntime-gpu"), export_format="onnx", int8_io_format=None,
               opener="onnx:OnnxRuntime", backend="onnx:import_ort",
               file_check="onnx_external:refuse_external_data", int8_format="onnx-int8"),
    RuntimeRow("tflite", aliases=("litert",), suffixes=(".tflite",),
               packages=("ai-edge-litert", "tflite-runtime", "tensorflow"), export_format="tflite",
               int8_io_format="tflite-int8", opener="tflite:TFLiteRuntime", backend="tflite:import_interpreter",
               int8_format="tflite-int8", label="LiteRT"),
)

#: every runtime name and alias → its row (an unknown name fails with the known ones and the closest)
RUNTIMES: Registry[RuntimeRow] = Registry("runtime", RuntimeBackendError)
for _row in ROWS:
    for _name in (_row.name, *_row.aliases):
        RUNTIMES.register(_name)(_row)

#: file suffix → runtime name
SUFFIXES = {suffix: row.name for row in ROWS for suffix in row.suffixes}

def canonical_runtime(name: str) -> str:
    """The canonical runtime name for ``name`` (an alias or a canonical name); unknown → error."""
    return RUNTIMES.get(name).name


def runtime_row(name: str) -> RuntimeRow:
    """The row of a runtime name or alias; unknown → error."""
    return RUNTIMES.get(name)


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
    row = runtime_row(runtime_for(path, runtime))
    if not path.is_file():
        raise RuntimeBackendError(f"model file '{path}' not found")
    if threads is not None and threads < 1:
        raise RuntimeBackendError(f"threads must be at least 1, got {threads}")
    return row.open(path, threads=threads, providers=providers)


__all__ = ["Runtime", "TensorInfo", "UnsupportedBatch", "RuntimeRow", "ROWS", "RUNTIMES", "SUFFIXES",
           "open_model", "runtime_for", "runtime_row", "canonical_runtime"]
