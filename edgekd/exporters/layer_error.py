"""Where int8 hurts: each quantized layer's int8 output against the fp32 model's, on calibration samples.

The comparison itself is the libraries': ai-edge-quantizer's ``Quantizer.validate`` for TFLite (both
interpreters run on the same sample, every tensor compared), onnxruntime's ``qdq_loss_debug`` for ONNX
(every activation made a graph output, the fp32 activation matched with the QDQ model's dequantized
one). This module picks a bounded sample, names the layers readably and writes one entry per layer:

    {"layer": "blocks.3.block.1", "op": "DEPTHWISE_CONV_2D", "snr_db": 23.1, "cosine": 0.997}

SNR is the signal-to-quantization-noise ratio in dB, 10·log10(mean(fp32²) / mean((int8 - fp32)²)):
higher is better; every 6 dB is about one bit. Layers are listed in graph order. Both models run end
to end, so a layer's number includes the error its inputs bring from the layers before it: where int8
hurts is where the ratio falls, and the lowest numbers may sit just downstream of that layer.
"""
from __future__ import annotations

import ast
import difflib
import math
import os
from pathlib import Path
from typing import AbstractSet

import numpy as np

from edgekd.exporters._util import fb_text
from edgekd.core.errors import ExportError
from edgekd.device.runtimes import open_model
from edgekd.device.runtimes.onnx import OnnxRuntime

SAMPLES = 32          # a bounded sample of the calibration inputs: seconds, not minutes
SNR_FLOOR = 1e-12     # a layer whose int8 output is all noise still gets a finite number


def pick_samples(x: np.ndarray, count: int = SAMPLES) -> np.ndarray:
    """Up to ``count`` samples spread evenly over the calibration set (it is stratified by class)."""
    if len(x) <= count:
        return x
    return x[np.linspace(0, len(x) - 1, count).astype(int)]


def _entry(layer: str, op: str, snr_db: float, cosine: float | None) -> dict:
    return {"layer": layer, "op": op, "snr_db": round(float(snr_db), 2),
            "cosine": None if cosine is None else round(float(cosine), 5)}


def _report(tool: str, samples: int, layers: list[dict]) -> dict:
    return {"tool": tool, "samples": int(samples), "metric": "int8 output vs fp32 output of each layer",
            "layers": layers}


# --- TFLite ----------------------------------------------------------------------------------------

def tflite_layer_errors(quantizer, int8_content: bytes, feed: dict, module=None) -> dict:
    """The report of a quantized ``ai_edge_quantizer.Quantizer`` (right after ``quantize``, which made
    ``int8_content``) on ``feed``
    (its calibration input format: {signature: [{input name: batch-1 array}, ...]})."""
    from ai_edge_quantizer.utils.validation_utils import ValidationErrorMetric as Metric

    result = quantizer.validate(test_data=feed, error_metrics=[Metric.SNR, Metric.COSINE_SIMILARITY],
                                num_threads=os.cpu_count() or 1)
    signature = result.get_signature_comparison_result(next(iter(feed)))
    measured = {**signature.intermediate_tensors, **signature.output_tensors}
    classes = module_classes(module)
    layers = []
    for name, op in produced_tensors(int8_content)[0]:
        if name in measured:  # every op output the interpreter kept; the input is not a layer's
            values = measured[name]
            layer = "output" if name in signature.output_tensors else readable_tflite_name(name, classes)
            layers.append(_entry(layer, op,
                                 10 * math.log10(max(values["snr"], SNR_FLOOR)), values["cosine_similarity"]))
    return _report("ai-edge-quantizer Quantizer.validate", len(next(iter(feed.values()))), layers)


def tflite_layer_tensors(content: bytes, module=None) -> dict[str, list[str]]:
    """Each layer name the report uses (readable_tflite_name of an op's output) → the tensor names
    of the ops it covers, in graph order; "output" names the model's output tensor as in the report."""
    produced, outputs = produced_tensors(content)
    classes = module_classes(module)
    layers: dict[str, list[str]] = {}
    for name, _ in produced:
        layer = "output" if name in outputs else readable_tflite_name(name, classes)
        layers.setdefault(layer, []).append(name)
    return layers


def kept_tensors(names: list[str], layers: dict[str, list[str]], fmt: str, role: str) -> dict[str, list[str]]:
    """--keep-float's names → {name: the tensor names it keeps float}. A name is a layer of the report
    or a module above some (``blocks.4`` keeps every layer inside blocks.4); an unknown name fails with
    the closest layer names, before the file is written."""
    kept = {}
    for name in dict.fromkeys(names):
        tensors = [t for layer, ts in layers.items() if layer == name or layer.startswith(name + ".") for t in ts]
        if not tensors:
            close = difflib.get_close_matches(name, list(layers), n=3, cutoff=0.5)
            raise ExportError(f"--keep-float: the {role} {fmt} model has no layer '{name}'",
                              hint=(f"closest: {', '.join(close)}; " if close else "")
                              + "the names are those of export.json's layer_error (edgekd export --explain)")
        kept[name] = tensors
    return kept


def produced_tensors(content: bytes) -> tuple[list[tuple[str, str]], set[str]]:
    """(tensor name, producing op) for every op output of the flatbuffer in graph order, and the
    names of the model's outputs."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model_from_bytearray(bytearray(content))
    graph = model.subgraphs[0]
    out = []
    for op in graph.operators:
        kind = fb.opcode_to_name(model, op.opcodeIndex) or "?"
        for index in op.outputs:
            out.append((fb_text(graph.tensors[index].name), kind))
    return out, {fb_text(graph.tensors[i].name) for i in graph.outputs}


def module_classes(module) -> set[str]:
    """The qualified class names of a torch module's submodules, as litert-torch writes them."""
    if module is None:
        return set()
    return {f"{type(m).__module__}.{type(m).__qualname__}" for m in module.modules()}


def readable_tflite_name(name: str, classes: AbstractSet[str] = frozenset()) -> str:
    """litert-torch's tensor name → the torch module path of the layer that made it.

    litert-torch names a tensor after the torch ops folded into the TFLite op that wrote it, joined by
    ";" (a ";N" tail numbers repeats): the op that produced the value first, the op the chain started
    from last (e.g. ReLU6, BatchNorm2d, Conv2d for a fused conv block). Each is a module path whose
    segments read "package.Class_attribute" below the root class, so
    "pkg.Net/torch.nn.modules.container.Sequential_blocks/pkg.Block_3/torch.nn.modules.conv.Conv2d_0"
    is ``blocks.3.0``. Only the first and the last op name the layer (the parts between can name a
    neighbouring block whose op was folded in): siblings in one container read as a range,
    ``features.4-6`` for Conv2d, BatchNorm2d, ReLU at features.4, .5, .6; otherwise the deepest module
    holding both (``blocks.3`` for a residual add folded with the conv before it). A name that is no
    module path is kept as written; the root module's own ops (a global pooling in ``forward``) read
    as ``(model)``."""
    parts = [p for p in name.split(";") if "/" in p or "." in p]
    if not parts or (not any("/" in p for p in parts) and not _is_root(parts[0], classes)):
        return name
    return _span(_module_path(parts[-1], classes), _module_path(parts[0], classes))


def _span(start: list[str], end: list[str]) -> str:
    """The layer name of ops from module path ``start`` to ``end``: a range of siblings
    (``features.4-6``), else the deepest module holding both, ``(model)`` for the root."""
    if len(end) == len(start) and end[:-1] == start[:-1] and end != start:
        return ".".join([*end[:-1], f"{start[-1]}-{end[-1]}"])
    common = []
    for a, b in zip(end, start):
        if a != b:
            break
        common.append(a)
    return ".".join(common) or "(model)"


def writer_module(name: str, classes: AbstractSet[str] = frozenset()) -> str | None:
    """The module path of the torch op that produced a litert-torch tensor (the first op its name lists;
    "" for the root module's own ops), or None for a name that is no module path."""
    part = name.split(";")[0]
    return ".".join(_module_path(part, classes)) if "/" in part or part in classes else None


def _is_root(part: str, classes: AbstractSet[str]) -> bool:
    return part in classes or part.rsplit(".", 1)[-1][:1].isupper()


def _module_path(part: str, classes: AbstractSet[str]) -> list[str]:
    """"pkg.Net/pkg.Block_3/torch.nn.modules.conv.Conv2d_0" → ["3", "0"]: each segment's attribute
    name after its class. The model's classes settle where the class name ends (a class or an
    attribute may hold "_"); without them the class is taken to end at the first "_" after the last "."."""
    path = []
    for segment in part.split("/")[1:]:
        known = [c for c in classes if segment.startswith(c + "_")]
        if known:
            path.append(segment[len(max(known, key=len)) + 1:])
        else:
            head, _, tail = segment.rpartition(".")
            path.append(tail.split("_", 1)[1] if "_" in tail else tail)
    return path


# --- ONNX ------------------------------------------------------------------------------------------

def onnx_layer_errors(fp32: Path, int8: Path, samples: np.ndarray, workdir: Path) -> dict:
    """The report of a QDQ int8 ONNX file against its fp32 source, one sample at a time (a 224 px
    model's every activation for a whole sample set would not fit in memory). Batch 1 also suits a
    fixed-batch file (from a .pt2)."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as debug

    augmented = {}
    for kind, path in (("float", fp32), ("qdq", int8)):
        augmented[kind] = workdir / f"{path.stem}.{kind}.outputs.onnx"
        debug.modify_model_output_intermediate_tensors(str(path), str(augmented[kind]))
    model = onnx.load(str(fp32))
    ops = {out: node.op_type for node in model.graph.node for out in node.output}
    names = {tensor: layer for tensor, (layer, _) in _onnx_layers(model).items()}
    totals: dict[str, float] = {}
    runs = {kind: _all_outputs(path) for kind, path in augmented.items()}
    for i in range(len(samples)):
        x = np.ascontiguousarray(samples[i:i + 1])
        float_acts, qdq_acts = (runs[kind](x) for kind in ("float", "qdq"))
        matched = debug.create_activation_matching(qdq_acts, float_acts)
        for name, errors in debug.compute_activation_error(matched).items():
            if "xmodel_err" in errors and name in ops:
                totals[name] = totals.get(name, 0.0) + errors["xmodel_err"]
    layers = [_entry(names.get(name, name), ops[name], totals[name] / len(samples), None)
              for name in ops if name in totals]
    return _report("onnxruntime.quantization.qdq_loss_debug", len(samples), layers)


FUSED_ACTIVATIONS = ("Relu", "Clip")    # onnxruntime folds them into the Conv/Gemm before them
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
SCOPES = "pkg.torch.onnx.name_scopes"   # torch.onnx (dynamo): each node's module path, kept across onnxsim


def onnx_layer_nodes(path: Path) -> dict[str, list[str]]:
    """Each layer name the ONNX report uses → the names of the nodes it covers: a node, and for a
    Relu/Clip the Conv/Gemm/MatMul it is fused with (the report has no entry for that node's output,
    which no QuantizeLinear follows)."""
    import onnx

    layers: dict[str, list[str]] = {}
    for layer, nodes in _onnx_layers(onnx.load(str(path))).values():
        layers[layer] = list(dict.fromkeys([*layers.get(layer, []), *nodes]))
    return layers


def _onnx_layers(model) -> dict[str, tuple[str, list[str]]]:
    """Each node output tensor → (its layer name, the names of the nodes that layer covers). The name
    is the torch module path where the exporter recorded it (as readable_tflite_name: ``features.4-6``
    for a Conv, BatchNorm, ReLU block, ``output`` for the model's output), else the tensor's name (a
    brought ONNX file)."""
    nodes = [n for n in model.graph.node if n.name]
    producers = {out: n for n in nodes for out in n.output}
    outputs = {o.name for o in model.graph.output}
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    layers = {}
    for node in nodes:
        before = producers.get(node.input[0]) if node.input else None
        fused = node.op_type in FUSED_ACTIVATIONS and before is not None and \
            before.op_type in WEIGHTED and readers[node.input[0]] == 1
        covered = [before, node] if fused else [node]
        for out in node.output:
            layers[out] = (_onnx_layer_name(out, covered, outputs), [n.name for n in covered])
    return layers


def _onnx_layer_name(tensor: str, covered: list, outputs: set[str]) -> str:
    end = _scope(covered[-1])
    if end is None:
        return tensor
    if tensor in outputs:
        return "output"
    return _span(_weight_module(covered[0]) or _scope(covered[0]) or end, end)


def _scope(node) -> list[str] | None:
    """The module path the exporter recorded for the node (its name_scopes: the enclosing modules'
    paths, then the op's own name), as segments; [] for the root module, None where none was recorded."""
    value = next((p.value for p in node.metadata_props if p.key == SCOPES), None)
    scopes = ast.literal_eval(value) if value else []
    return None if len(scopes) < 2 else [s for s in scopes[-2].split(".") if s]


def _weight_module(node) -> list[str] | None:
    """The module a weighted node's weight belongs to. The exporter folds a BatchNorm into the Conv
    before it and records the BatchNorm's module on the fused node; the conv's own module survives in
    its weight's name (``features.4.weight``)."""
    if node.op_type not in WEIGHTED or len(node.input) < 2 or not node.input[1].endswith(".weight") \
            or _scope(node) is None:
        return None
    return node.input[1][:-len(".weight")].split(".")


def _all_outputs(path: Path):
    """A function: one input → {tensor name: [value]} for every activation the augmented file outputs
    (run through edgekd's runtime layer; qdq_loss_debug's suffix removed as its collect_activations does)."""
    from onnxruntime.quantization.qdq_loss_debug import _TENSOR_SAVE_POSTFIX

    model = open_model(path, threads=os.cpu_count() or 1, providers=["cpu"])
    if not isinstance(model, OnnxRuntime):      # an .onnx path opens in onnxruntime: its session is read below
        raise TypeError(f"'{path}' did not open in onnxruntime")
    names = [o.name for o in model.session.get_outputs()]

    def run(x: np.ndarray) -> dict:
        values = model.session.run(None, {model.input.name: x})
        return {n[:-len(_TENSOR_SAVE_POSTFIX)]: [v] for n, v in zip(names, values) if n.endswith(_TENSOR_SAVE_POSTFIX)}
    return run


def worst(report: dict, count: int) -> list[dict]:
    """The ``count`` layers with the lowest SNR, worst first."""
    return sorted(report["layers"], key=lambda layer: layer["snr_db"])[:count]
