"""``export --input uint8``: int8 files that take the camera's frame, with the standardisation inside.

The file's input is the raw 0..255 pixels of an image after the run's recorded image transform (resize,
crop, colour: the caller's), in NHWC (the layout of cameras and TFLite pipelines). What the float files
leave to the caller, ``(pixel − mean) / std`` per channel and the NCHW layout, moves into the model:

- The module quantized is a copy of the model with a forward pre-hook (not a wrapper module, so every
  layer keeps its name: the per-layer report, ``--keep-float`` and QAT ranges name the same layers)
  that adds ``−mean``, multiplies by ``1/std`` and permutes to NCHW. litert-torch folds the ``1/std``
  into the first convolution and cancels the permute against its own NCHW→NHWC transpose: one int8
  ADD is all the standardisation costs in the TFLite file.
- tflite-int8: ai-edge-quantizer makes int8 inputs only. The input's range is pinned to the pixels'
  whole range [0, 255] (not the calibration samples' min/max, which a frame may exceed), which makes
  its quantization exactly scale 1, zero point −128 (q = pixel − 128); then the input becomes a uint8
  tensor (scale 1, zero point 0: q = pixel) read by one QUANTIZE op (uint8 → int8, what TensorFlow's
  converter inserts for ``inference_input_type=uint8``). Every other tensor stays int8 (check_tflite).
  XNNPACK does not take that QUANTIZE (LiteRT 2.3): it runs in TFLite's own kernel, once, before the
  delegated graph, over H·W·C bytes.
- onnx-int8: the input is a uint8 tensor (NHWC); a Cast to float inside the file feeds the
  QuantizeLinear that the float input file starts with (its output stays float, as onnx-int8's does).

The manifest's entry says so: ``input`` ``{"layout": "NHWC", "dtype": "uint8", "values": "pixels"}``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from dataclasses import dataclass, replace

import numpy as np

from edgekd.core.errors import ConfigError, ExportError
from edgekd.core.preprocess import eight_bit, to_pixels
from edgekd.core.schema.manifest import PIXELS
from edgekd.exporters._util import fb_text
from edgekd.exporters.source import Source

#: the pixels' range, pinned as the TFLite input's: with int8's 256 steps, scale 1 and zero point −128
PIXEL_RANGE = (0.0, 255.0)
LAYOUT = "NHWC"


class Standardize:
    """The forward pre-hook: (N, H, W, C) pixels (uint8, or float holding whole numbers) → the
    standardised (N, C, H, W) floats the model was trained on."""

    def __init__(self, pre: dict):
        import torch

        channels = len(pre["mean"])
        self.shift = -torch.tensor(pre["mean"], dtype=torch.float32).reshape(1, 1, 1, channels)
        self.scale = 1.0 / torch.tensor(pre["std"], dtype=torch.float32).reshape(1, 1, 1, channels)

    def __call__(self, module, args):
        # x + (−mean) rather than x − mean: onnxruntime's quantizer has an int8 Add, no Sub
        return (((args[0].float() + self.shift) * self.scale).permute(0, 3, 1, 2),)


@dataclass
class PixelSource(Source):
    """A torch source whose module takes pixels; ``example`` gives them in ``dtype``: float32 for
    litert-torch (the input ai-edge-quantizer quantizes), uint8 for the ONNX exporter."""

    dtype: str = "float32"

    def example(self, batch: int = 1):
        import torch

        return torch.zeros(batch, *self.input_shape, dtype=getattr(torch, self.dtype))


def check_pixel_input(sources: dict, plan: list) -> None:
    """--input uint8 before anything is written: every file that would take pixels comes from a model
    trained on 8-bit images (whose preprocessing can be put inside it) and built from PyTorch weights."""
    for role, fmt in plan:
        src = sources[role]
        if "input" not in fmt.options:
            continue
        pre = src.spec.get("preprocessing")
        if not eight_bit(pre) or len(src.input_shape) != 3:
            raise ConfigError(f"--input uint8 needs a run trained on 8-bit images, but the {role}'s data was not "
                              "(model.json's preprocessing records no image transform of uint8 pixels)",
                              hint="export with --input float (the default), or distill from image files "
                                   "(folder:DIR) to export a model that takes the camera's pixels")
        if src.kind != "torch" or src.program is not None:
            raise ConfigError(f"--input uint8 puts the standardisation into the {role}'s PyTorch module, but the "
                              f"{role} is a brought {'ONNX file' if src.kind == 'onnx' else '.pt2 program'}",
                              hint="export it with --input float (the default)")


def pixel_route(input_values: str, src: Source, fmt, ctx, x_eval: np.ndarray) -> tuple[Source, object, np.ndarray]:
    """(the source to convert, its export context, the eval input its file takes): ``src``, ``ctx`` and
    ``x_eval`` themselves unless --input uint8 applies to ``fmt``; else the pixel-taking copy, the
    calibration samples and the eval set as pixels (the eval data stays the bundle's eval.npz)."""
    if input_values != "uint8" or "input" not in fmt.options:
        return src, ctx, x_eval
    pre = src.spec["preprocessing"]
    dtype = "float32" if fmt.runtime == "tflite" else "uint8"
    key = f"pixels_{dtype}"
    if key not in src.cache:        # one copy per source and input dtype: the exporters cache on it
        src.cache[key] = pixel_source(src, dtype)
    calibration = to_pixels(pre, ctx.calibration, LAYOUT).astype(dtype, copy=False)
    return src.cache[key], replace(ctx, calibration=calibration), to_pixels(pre, x_eval, LAYOUT)


def pixel_source(src: Source, dtype: str) -> PixelSource:
    """A copy of ``src`` whose module takes (N, H, W, C) pixels and standardises them itself."""
    module = copy.deepcopy(src.module).eval()
    module.register_forward_pre_hook(Standardize(src.spec["preprocessing"]))
    channels, height, width = src.input_shape
    spec = {**src.spec, "input": {**src.spec["input"], "shape": [height, width, channels], "layout": LAYOUT,
                                  "dtype": "uint8", "values": PIXELS}}
    return PixelSource(src.role, src.folder, spec, "torch", module=module,  # type: ignore[arg-type]
                       parameters=src.parameters, macs=src.macs, pixels=True, dtype=dtype)


def pin_pixel_range(ranges: dict, content: bytes) -> dict:
    """ai-edge-quantizer's calibration ranges with the graph input's set to the pixels' whole range."""
    name = _input_tensor(content)
    low, high = PIXEL_RANGE
    entry = ranges[name]
    return {**ranges, name: {**entry, "min": np.full(np.shape(entry["min"]), low, np.float32),
                             "max": np.full(np.shape(entry["max"]), high, np.float32)}}


def pixel_overrides(fp32: Path, pixels: bool) -> dict:
    """onnxruntime's quantizer options that pin the pixel-input file's first quantized tensor (the
    input's Cast to float) to 0..255, as :func:`pin_pixel_range` pins TFLite's: scale 1 (zero point 0 with
    uint8 activations, −128 with int8) then holds every pixel exactly; calibrated on the samples' range, a
    brighter frame clips and every pixel rounds (measured: 98.9 % top-1 agreement with the float-input
    file on an RGB run, above 99 % pinned)."""
    if not pixels:
        return {}
    import onnx

    graph = onnx.load(str(fp32)).graph
    cast = next(n for n in graph.node if n.op_type == "Cast" and n.input[0] == graph.input[0].name)
    return {"TensorQuantOverrides": {cast.output[0]: [{"rmin": np.float32(0.0), "rmax": np.float32(255.0)}]}}


def _input_tensor(content: bytes) -> str:
    from ai_edge_litert.tools import flatbuffer_utils as fb

    graph = fb.read_model_from_bytearray(bytearray(content)).subgraphs[0]
    return fb_text(graph.tensors[graph.inputs[0]].name)


def uint8_input(content: bytes) -> bytes:
    """The quantized flatbuffer with a uint8 input (scale 1, zero point 0: the pixels themselves) read by
    a QUANTIZE op into the int8 input it had (scale 1, zero point −128), which keeps its name + "_int8";
    the signature names the new tensor. Exact: both hold the same real value, the pixel."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model_from_bytearray(bytearray(content))
    graph = model.subgraphs[0]
    old = graph.inputs[0]
    tensor = graph.tensors[old]
    quant = tensor.quantization
    if tensor.type != schema.TensorType.INT8 or quant is None or list(quant.scale) != [1.0] \
            or list(quant.zeroPoint) != [-128]:
        raise ExportError("the int8 file's input is not quantized as the pixels' range [0, 255] "
                          f"(scale 1, zero point -128): {quant and list(quant.scale)}, {quant and list(quant.zeroPoint)}",
                          hint="a bug in edgekd's --input uint8; --debug and report it")
    pixels = copy.deepcopy(tensor)
    pixels.type, pixels.quantization = schema.TensorType.UINT8, schema.QuantizationParametersT()
    pixels.quantization.scale, pixels.quantization.zeroPoint = [1.0], [0]
    tensor.name = (tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name) + "_int8"
    graph.tensors.append(pixels)
    new = len(graph.tensors) - 1
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = _opcode(model, schema.BuiltinOperator.QUANTIZE), [new], [old]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.QuantizeOptions, schema.QuantizeOptionsT()
    graph.operators.insert(0, op)       # operators run in order: the QUANTIZE before every reader of old
    graph.inputs = [new]
    for signature in model.signatureDefs:
        for entry in signature.inputs:
            if entry.tensorIndex == old:
                entry.tensorIndex = new
    return bytes(fb.convert_object_to_bytearray(model))


def _opcode(model, builtin: int) -> int:
    """The index of ``builtin`` among the model's operator codes, added (version 2: int8 output) if absent."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    codes = [fb.get_builtin_code_from_operator_code(code) for code in model.operatorCodes]
    if builtin in codes:
        return codes.index(builtin)
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 2
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1
