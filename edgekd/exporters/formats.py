"""The FORMATS table: the single source of truth for every export format.

Each row names the format, the file it writes (``{role}{suffix}``), its precision, the runtime
that checks it, the exporter function (``module:function``, imported only when used, so this
table stays torch-free) and the options of ``ExportOptions`` it honours: an option given
explicitly (``--opset``) that no exported format honours is refused rather than ignored.
An unknown name fails with the known ones and the closest match.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from edgekd.core.errors import ConfigError
from edgekd.core.registry import Registry

# bytes each weight takes at a precision (for "weight bytes" = parameters x this)
BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "int8": 1}

# --opset values the ONNX formats can honour. 18 is the lowest the torch dynamo exporter
# translates to (below it, torch and onnx.version_converter silently keep 18 or fail on
# Gemm/ReduceMean); 27 is the newest whose int8 ops (DequantizeLinear) onnxruntime runs.
ONNX_OPSETS = range(18, 28)

# --int8-activations: the activation type of onnx-int8 (weights are int8 either way). onnxruntime's
# x86 int8 kernels are built for uint8 activations x int8 weights (u8s8); Arm's dot-product
# instructions (SDOT) multiply int8 by int8. "auto" decides by the exporting machine (exporters.onnx).
INT8_ACTIVATIONS = ("auto", "u8", "s8")

# --input: what the int8 files take. float: standardised floats in the model's own layout (NCHW for
# images), quantized by the caller with the input's scale/zero point. uint8: the camera's frame, raw
# 0..255 pixels in NHWC after the run's image transform; the standardisation is inside the model
# (exporters.pixels). Only runs trained on 8-bit images have pixels to take.
INPUT_VALUES = ("float", "uint8")


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str                  # file name is f"{role}{suffix}"
    precision: str               # fp32 | fp16 | int8
    runtime: str                 # runtime that checks it (and runs it on the device): onnxruntime | tflite
    exporter: str                # "module:function" inside edgekd.exporters, imported lazily
    options: tuple[str, ...]     # ExportOptions fields this format honours
    calibrated: bool             # needs calibration samples
    tolerance: float | None      # fp32: fail when max |logits - PyTorch| exceeds this

    def filename(self, role: str) -> str:
        return f"{role}{self.suffix}"

    def exporter_function(self) -> Callable:
        module, _, function = self.exporter.partition(":")
        return getattr(importlib.import_module(f"edgekd.exporters.{module}"), function)


FORMATS: Registry[Format] = Registry("export format", ConfigError)

for _fmt in (
    # ONNX fp32: dynamo exporter, one file, dynamic batch, onnxsim-simplified
    Format("onnx", ".onnx", "fp32", "onnxruntime", "onnx:export_onnx", ("opset",), False, 1e-4),
    # ONNX int8 QDQ, per-channel weights, static activations (onnxruntime.quantization); float input/output
    Format("onnx-int8", ".int8.onnx", "int8", "onnxruntime", "onnx:export_onnx_int8",
           ("opset", "calibration_samples", "int8_activations", "keep_float", "input"), True, None),
    # TFLite fp32 (litert-torch, no TensorFlow), NCHW input as in PyTorch
    Format("tflite", ".tflite", "fp32", "tflite", "tflite:export_tflite", (), False, 1e-4),
    # TFLite with float16 weights (ai-edge-quantizer float casting), float32 compute and I/O
    Format("tflite-fp16", ".fp16.tflite", "fp16", "tflite", "tflite:export_tflite_fp16", (), False, None),
    # TFLite full-integer int8: int8 weights (symmetric per-channel), activations, input and output
    # (ai-edge-quantizer's static recipe on the fp32 flatbuffer)
    Format("tflite-int8", ".int8.tflite", "int8", "tflite", "tflite:export_tflite_int8",
           ("calibration_samples", "keep_float", "input"),
           True, None),
):
    FORMATS.register(_fmt.name)(_fmt)


def get_format(name: str) -> Format:
    return FORMATS.get(name.strip())


def list_of_names(value, what: str, example: str) -> list[str]:
    """The API takes a list of names; only the CLI splits its "a,b" text (a string here is a mistake
    that would otherwise be read letter by letter or, split here too, in two places)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"{what} must be a list of names, got {value!r}",
                          hint=f"the command line takes 'a,b'; the Python API takes {example}")
    return list(value)


def parse_formats(value: list[str] | tuple[str, ...] | None) -> list[Format] | None:
    """A list of format names → Format rows (order kept, duplicates dropped)."""
    if value is None:
        return None
    names = list_of_names(value, "formats", "['onnx', 'tflite-int8']")
    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        raise ConfigError("no export format given", hint=f"known: {', '.join(FORMATS.names())}")
    out: list[Format] = []
    for name in names:
        fmt = get_format(name)
        if fmt not in out:
            out.append(fmt)
    return out
