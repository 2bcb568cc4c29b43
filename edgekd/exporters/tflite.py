"""TFLite exporters through litert-torch (Google's PyTorch → LiteRT converter; no TensorFlow).

- ``tflite``: fp32, straight conversion of the module.
- ``tflite-fp16``: the fp32 flatbuffer with float16 weights (ai-edge-quantizer float casting).
- ``tflite-int8``: full-integer int8 through the PT2E flow: litert-torch's PT2EQuantizer
  (symmetric per-channel int8 weights, static int8 activations observed on calibration
  samples) → ``convert(quant_config=...)``. litert-torch 0.10 folds the boundary
  quantize/dequantize into an int8 input and output; when a model still has float I/O
  behind a QUANTIZE/DEQUANTIZE pair, LiteRT's own ``modify_model_interface`` tool (shipped in
  ai-edge-litert) rewrites it to int8. Either way every tensor's dtype is then checked,
  because litert-torch without ``quant_config`` silently emits a float model.

The input keeps PyTorch's layout (NCHW for images): litert-torch inserts the transposes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ExportError
from ._util import converter_error, quiet

_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
               10: "float64", 17: "int4", 18: "bfloat16"}
INT8 = 9
CALIBRATION_BATCH = 32


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
        raise converter_error("litert-torch", src.role, fmt, exc, captured.text, src.module, src.example(1)) from None
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
    import torch

    _litert()  # imported quietly, progress off
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    step = "torch.export"
    try:
        with quiet() as captured:
            # traced with a dynamic batch so that calibration runs in batches; the conversion
            # below re-exports it at batch 1, the shape of the TFLite file
            batch = torch.export.Dim("batch", min=1, max=1 << 16)
            graph = torch.export.export(src.module, (src.example(2),), dynamic_shapes=({0: batch},),
                                        strict=False).module()
            step = "PT2E prepare"
            graph = prepare_pt2e(graph, quantizer)
            step = "PT2E calibration"
            with torch.no_grad():
                for i in range(0, len(ctx.calibration), CALIBRATION_BATCH):
                    graph(torch.from_numpy(np.ascontiguousarray(ctx.calibration[i:i + CALIBRATION_BATCH])))
            step = "PT2E convert"
            graph = convert_pt2e(graph, fold_quantize=False)
    except Exception as exc:
        raise converter_error(f"litert-torch ({step})", src.role, "tflite-int8", exc, captured.text,
                              src.module, src.example(1)) from None
    content = _convert(src, "tflite-int8", graph, QuantConfig(pt2e_quantizer=quantizer))
    out.write_bytes(content)
    io_fixed = _int8_interface(out, ctx.workdir, src.role)
    check_tflite(out, "int8", src.role)
    return {"converter": "litert-torch PT2E", "weights": "int8 symmetric per-channel",
            "activations": "int8 static", "io": "int8", "io_rewritten": io_fixed, "layout": src.layout}


def _int8_interface(path: Path, workdir: Path, role: str) -> bool:
    """Make the model's input and output int8 if they are still float behind QUANTIZE/DEQUANTIZE."""
    from ..runtimes import open_model

    with quiet():
        model = open_model(path, threads=1)
    if model.input.dtype == model.output.dtype == "int8":
        return False
    from ai_edge_litert import _pywrap_modify_model_interface as modify

    tmp = workdir / f"{role}.io.tflite"
    with quiet() as captured:
        status = modify.modify_model_interface(str(path), str(tmp), INT8, INT8)
    if status != 0 or not tmp.is_file():
        raise ExportError(f"the {role} int8 TFLite model keeps float input/output and LiteRT's "
                          f"modify_model_interface could not make them int8 (status {status})",
                          hint=captured.text.strip().splitlines()[-1][:200] if captured.text.strip() else None)
    path.write_bytes(tmp.read_bytes())
    tmp.unlink()
    return True


def describe_tflite(path: Path) -> dict:
    """Tensor dtypes of a flatbuffer: input/output, constants (weights, biases) and activations, and its ops."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model_from_bytearray(bytearray(path.read_bytes()))
    graph = model.subgraphs[0]
    consts, acts = [], []
    for index, tensor in enumerate(graph.tensors):
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        buffer = model.buffers[tensor.buffer] if tensor.buffer is not None and tensor.buffer < len(model.buffers) else None
        has_data = buffer is not None and buffer.data is not None and len(buffer.data) > 0
        entry = (index, name, _TYPE_NAMES.get(tensor.type, str(tensor.type)), list(tensor.shape or []))
        (consts if has_data else acts).append(entry)
    ops = sorted({fb.opcode_to_name(model, op.opcodeIndex) or "?" for op in graph.operators})
    types = {index: t for index, _, t, _ in consts + acts}
    return {"inputs": [types[i] for i in graph.inputs], "outputs": [types[i] for i in graph.outputs],
            "constants": consts, "activations": acts, "ops": ops}


def check_tflite(path: Path, precision: str, role: str) -> dict:
    """Fail unless every tensor's dtype is what the file name promises."""
    info = describe_tflite(path)
    bad: list[str] = []

    def wrong(kind: str, entries, allowed):
        for _, name, dtype, _ in entries:
            if dtype not in allowed:
                bad.append(f"{kind} '{name[-60:]}' is {dtype}")

    io = [(0, "input", t, []) for t in info["inputs"]] + [(0, "output", t, []) for t in info["outputs"]]
    if precision == "int8":
        wrong("tensor", io, {"int8"})
        # int32 is allowed for biases and shape vectors only; every feature map is int8
        wrong("activation", [a for a in info["activations"] if len(a[3]) > 1], {"int8"})
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
