"""TFLite exporters through litert-torch (Google's PyTorch → LiteRT converter; no TensorFlow).

- ``tflite``: fp32, straight conversion of the module.
- ``tflite-fp16``: the fp32 flatbuffer with float16 weights (ai-edge-quantizer float casting).
- ``tflite-int8``: full-integer int8: the fp32 flatbuffer of the module in its int8-friendly forms
  (:mod:`edgekd.exporters.int8_forms`: ops XNNPACK runs in int8) quantized by ai-edge-quantizer's static
  recipe (symmetric per-channel int8 weights, int8 activations from min/max calibration on training
  samples, int8 input and output). Chosen over litert-torch's PT2E flow by measurement: PT2E leaves
  the activations after residual adds, ReLU6, hard-swish and hard-sigmoid in float (a QUANTIZE /
  DEQUANTIZE island around each), so no ResNet, MobileNet or EfficientNet-Lite came out int8; the
  flatbuffer route quantizes every op LiteRT has an int8 kernel for, and the toy CNN agrees with
  it as closely as with PT2E. Every tensor's dtype is then checked: a file that is not int8 end to
  end is refused.

The input keeps PyTorch's layout (NCHW for images): litert-torch inserts the transposes.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import AbstractSet

import numpy as np

from edgekd.core.errors import ExportError
from edgekd.exporters._util import converter_error, fb_text
from edgekd.core.quiet import quiet
from edgekd.exporters.int8_forms import int8_friendly
from edgekd.exporters.pixels import pin_pixel_range, uint8_input
from edgekd.exporters.qat_ranges import trained_ranges, with_trained_ranges
from edgekd.exporters.layer_error import kept_tensors, pick_samples, produced_tensors, tflite_layer_errors, tflite_layer_tensors

_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
               10: "float64", 17: "int4", 18: "bfloat16"}
# how tflite-int8 is made (recorded in export.json): chosen by measurement, see export_tflite_int8
ROUTE = "ai-edge-quantizer static_wi8_ai8 on the fp32 flatbuffer"


def _litert():
    with quiet():
        import litert_torch
    litert_torch.config.show_progress = False
    return litert_torch


def _convert(src, fmt: str, module, quant_config=None) -> bytes:
    litert_torch = _litert()
    try:
        with quiet() as captured:
            edge = litert_torch.convert(module, (src.example(1),), quant_config=quant_config)
            content = edge.model_content()
    except Exception as exc:
        raise converter_error("litert-torch", src.role, fmt, exc, captured.text, module, src.example(1)) from None
    return bytes(content)


def _require_torch(src, fmt: str) -> None:
    if src.kind != "torch":
        raise ExportError(f"the {src.role} is a brought ONNX model; it cannot be converted to {fmt}",
                          hint="litert-torch converts PyTorch models only; export it with --formats onnx,onnx-int8")


def _fp32_bytes(src) -> bytes:
    if "tflite" not in src.cache:
        _require_torch(src, "tflite")
        src.cache["tflite"] = _convert(src, "tflite", src.module)
    return src.cache["tflite"]


def _int8_base(src, samples: np.ndarray):
    """(fp32 flatbuffer to quantize, its module, export.json's note): the module's int8-friendly forms
    converted once per source (the fp32 file itself keeps the original ops, fastest in float)."""
    if "tflite_int8_base" not in src.cache:
        module, note = int8_friendly(src.module, samples, src.role)
        content = _fp32_bytes(src) if module is src.module else _convert(src, "tflite-int8", module)
        src.cache["tflite_int8_base"] = content, module, note
    return src.cache["tflite_int8_base"]


def export_tflite(ctx, src, out: Path) -> dict:
    content = _fp32_bytes(src)
    out.write_bytes(content)
    check_tflite(out, "fp32", src.role)
    return {"converter": "litert-torch", "layout": src.layout}


def export_tflite_fp16(ctx, src, out: Path) -> dict:
    _require_torch(src, "tflite-fp16")
    content = _fp32_bytes(src)
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_quantizer.quantizer import Quantizer

    ops = qtyping.TFLOperationName
    try:
        with quiet() as captured:
            quantizer = Quantizer(bytearray(content))
            for op in (ops.FULLY_CONNECTED, ops.CONV_2D, ops.DEPTHWISE_CONV_2D, ops.CONV_2D_TRANSPOSE,
                       ops.EMBEDDING_LOOKUP):
                quantizer.add_weight_only_config(regex=".*", operation_name=op, num_bits=16,
                                                 algorithm_key=AlgorithmName.FLOAT_CASTING)
            result = quantizer.quantize(enable_progress_report=False)
    except Exception as exc:
        raise converter_error("ai-edge-quantizer", src.role, "tflite-fp16", exc, captured.text) from None
    out.write_bytes(bytes(result.quantized_model))
    check_tflite(out, "fp16", src.role)
    return {"converter": "litert-torch + ai-edge-quantizer (float16 weights)", "layout": src.layout}


def export_tflite_int8(ctx, src, out: Path) -> dict:
    _require_torch(src, "tflite-int8")
    trained = trained_ranges(src.spec, f"the {src.role}'s model.json")    # --qat-epochs: its int8 grids
    content, module, forms = _int8_base(src, ctx.calibration)
    from ai_edge_quantizer import recipe
    from ai_edge_quantizer.quantizer import Quantizer

    kept = kept_tensors(ctx.keep_float, tflite_layer_tensors(content, module), "tflite-int8", src.role) \
        if ctx.keep_float else {}
    signature = _signature(content)
    step, carried = "calibration", None
    try:
        with quiet() as captured:
            quantizer = Quantizer(bytearray(content))
            quantizer.load_quantization_recipe(recipe.static_wi8_ai8())
            _keep_float(quantizer, kept)
            # the interpreter keeps one sample's tensors at a time and folds them into each
            # tensor's running min/max: memory does not grow with the number of samples
            ranges = src.cache.get("tflite_int8_ranges") or \
                quantizer.calibrate(_feed(signature, ctx.calibration), num_threads=os.cpu_count() or 1)
            if src.pixels:   # --input uint8: the input takes any pixel, not only the samples' range
                ranges = pin_pixel_range(ranges, content)
            if not kept:   # the float model's ranges of every tensor: any mixed file quantizes with them
                src.cache["tflite_int8_ranges"] = ranges   # (--keep-float auto re-quantizes, not recalibrates)
            if trained:
                ranges, carried = with_trained_ranges(ranges, trained, produced_tensors(content)[0], module)
            step = "quantization"
            result = quantizer.quantize(ranges, enable_progress_report=False)
            step = "validation"   # the per-layer report: each int8 output against fp32's
            layers = tflite_layer_errors(quantizer, bytes(result.quantized_model),
                                         _feed(signature, pick_samples(ctx.calibration)), module)
    except Exception as exc:
        raise converter_error(f"ai-edge-quantizer ({step})", src.role, "tflite-int8", exc, captured.text) from None
    quantized = bytes(result.quantized_model)
    out.write_bytes(uint8_input(quantized) if src.pixels else quantized)
    info = check_tflite(out, "int8", src.role, {t for tensors in kept.values() for t in tensors},
                        "uint8" if src.pixels else "int8")
    return {"converter": "litert-torch + ai-edge-quantizer", "route": ROUTE,
            "weights": "int8 symmetric per-channel", **_activations(carried),
            "io": _io(info, src.pixels),
            "layout": src.layout, "full_integer": not kept, "kept_float": list(kept), "int8_forms": forms,
            "layer_error": layers}


def _io(info: dict, pixels: bool) -> str:
    kinds = {t for _, _, t, _ in info["io"]}
    if pixels and kinds == {"uint8", "int8"}:
        return "uint8 pixels in (NHWC, --input uint8), int8 out"
    return "int8" if kinds == {"int8"} else "int8 and float (--keep-float)"


def _activations(carried: dict | None) -> dict:
    if carried is None:
        return {"activations": "int8 static (min/max calibration)"}
    return {"activations": f"int8 static: QAT-trained ranges for {carried['tensors_from_qat']} tensors, "
                           f"min/max calibration for {carried['tensors_calibrated']}", "qat_ranges": carried}


def _keep_float(quantizer, kept: dict[str, list[str]]) -> None:
    """Leave the ops that write the kept layers' tensors in float: ai-edge-quantizer matches a regex on
    each op's scope (its output tensor names, each followed by ";") and the last matching config wins,
    so a NO_QUANTIZE config added after the recipe overrides it there only (QUANTIZE/DEQUANTIZE go around)."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    tensors = [t for names in kept.values() for t in names]
    if tensors:
        regex = "(^|;)(" + "|".join(re.escape(t) for t in tensors) + ");"
        quantizer.update_quantization_recipe(regex=regex, operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                             algorithm_key=AlgorithmName.NO_QUANTIZE)


def _signature(content: bytes) -> tuple[str, str]:
    """(signature key, input name) of a flatbuffer, read from it, not by running it."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    signature = fb.read_model_from_bytearray(bytearray(content)).signatureDefs[0]
    return fb_text(signature.signatureKey), fb_text(signature.inputs[0].name)


def _feed(signature: tuple[str, str], samples: np.ndarray) -> dict:
    """ai-edge-quantizer's input format: per signature, one {input name: batch-1 array} per sample
    (the fp32 file is converted at batch 1)."""
    key, name = signature
    return {key: [{name: np.ascontiguousarray(samples[i:i + 1])} for i in range(len(samples))]}


def describe_tflite(path: Path) -> dict:
    """Tensor dtypes of a flatbuffer: input/output, constants (weights, biases) and activations, and its ops."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model_from_bytearray(bytearray(path.read_bytes()))
    graph = model.subgraphs[0]
    consts: list[tuple[int, str, str, list[int]]] = []       # (index, name, dtype, shape)
    acts: list[tuple[int, str, str, list[int]]] = []
    for index, tensor in enumerate(graph.tensors):
        name = fb_text(tensor.name)
        buffer = model.buffers[tensor.buffer] if tensor.buffer is not None and tensor.buffer < len(model.buffers) else None
        has_data = buffer is not None and buffer.data is not None and len(buffer.data) > 0
        entry = (index, name, _TYPE_NAMES.get(tensor.type, str(tensor.type)), list(tensor.shape or []))
        (consts if has_data else acts).append(entry)
    ops = sorted({fb.opcode_to_name(model, op.opcodeIndex) or "?" for op in graph.operators})
    producers = {i: fb.opcode_to_name(model, op.opcodeIndex) or "?" for op in graph.operators for i in op.outputs}
    types = {index: t for index, _, t, _ in consts + acts}
    return {"inputs": [types[i] for i in graph.inputs], "outputs": [types[i] for i in graph.outputs],
            "io": [(i, kind, types[i], []) for kind, indices in (("input", graph.inputs), ("output", graph.outputs))
                   for i in indices], "constants": consts, "activations": acts, "ops": ops, "producers": producers}


def _kept_indices(path: Path, kept: AbstractSet[str]) -> set[int]:
    """The tensors of the ops that write a kept tensor: their inputs (float weights, the DEQUANTIZE
    outputs before them) and outputs (read by the QUANTIZE after them)."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    graph = fb.read_model_from_bytearray(bytearray(path.read_bytes())).subgraphs[0]
    out: set[int] = set()
    for op in graph.operators:
        if any(fb_text(graph.tensors[i].name) in kept for i in op.outputs):
            out.update(i for i in [*op.inputs, *op.outputs] if i >= 0)
    return out


def _refuse_float_ops(path: Path, info: dict, exempt: set[int]) -> None:
    """An op other than QUANTIZE/DEQUANTIZE that writes a float feature map was left float by the
    quantizer (which quantizes every op LiteRT has an int8 kernel for) or kept float: name the op and its layer
    (the tensor's name is litert-torch's module path) rather than only the float tensors around it.
    Only in a quantized file: a float file given as int8 is the generic dtype error's."""
    if not any(dtype == "int8" for _, _, dtype, _ in info["activations"]):
        return
    left: dict[str, str] = {}
    for index, name, dtype, _ in info["activations"]:
        op = info["producers"].get(index)
        if dtype == "float32" and index not in exempt and op not in (None, "QUANTIZE", "DEQUANTIZE"):
            left.setdefault(op, name[-60:])
    if left:
        shown = ", ".join(f"{op} (writes '{name}')" for op, name in left.items())
        raise ExportError(f"'{path.name}' is not full-integer: ops left in float32: {shown}",
                          hint="ai-edge-quantizer leaves float the ops LiteRT has no int8 kernel for: replace "
                               "that op in the model, or keep its layer float with --keep-float (a mixed file); "
                               "nothing was written")


def check_tflite(path: Path, precision: str, role: str, kept: AbstractSet[str] = frozenset(),
                 input_dtype: str = "int8") -> dict:
    """Fail unless every tensor's dtype is what the file name promises; int8 files allow float only
    in the ops that write the ``kept`` tensors (--keep-float) and the tensors around them, and a uint8
    input only where ``input_dtype`` says so (--input uint8: the graph's input, nothing else)."""
    info = describe_tflite(path)
    bad: list[str] = []
    exempt = _kept_indices(path, set(kept)) if kept else set()

    def wrong(kind: str, entries, allowed):
        for index, name, dtype, _ in entries:
            if dtype not in allowed and index not in exempt:
                bad.append(f"{kind} '{name[-60:]}' is {dtype}")

    io = info["io"]   # (index, "input" | "output", dtype, [])
    if precision == "int8":
        _refuse_float_ops(path, info, exempt)
        inputs = {index for index, kind, _, _ in io if kind == "input"}
        wrong("tensor", [t for t in io if t[0] in inputs], {input_dtype})
        wrong("tensor", [t for t in io if t[0] not in inputs], {"int8"})
        # int32 is allowed for biases and shape vectors only; every feature map is int8
        wrong("activation", [a for a in info["activations"] if len(a[3]) > 1 and a[0] not in inputs], {"int8"})
        wrong("activation", [a for a in info["activations"] if len(a[3]) <= 1], {"int8", "int32"})
        wrong("constant", info["constants"], {"int8", "int32"})
        if not any(c[2] == "int8" for c in info["constants"]):
            bad.append("no int8 weights")
    elif precision == "fp16":
        wrong("tensor", io, {"float32"})
        wrong("tensor", info["activations"] + info["constants"], {"float32", "float16", "int32"})
        if not any(c[2] == "float16" for c in info["constants"]):
            bad.append("no float16 weights")
    else:
        wrong("tensor", io, {"float32"})
        wrong("tensor", info["activations"] + info["constants"], {"float32", "int32"})
    if bad:
        shown = "; ".join(bad[:4]) + (f"; and {len(bad) - 4} more" if len(bad) > 4 else "")
        raise ExportError(f"'{path.name}' is not a {precision} TFLite model as its name says: {shown}",
                          hint="the converter did not quantize it as asked; nothing was written")
    return info
