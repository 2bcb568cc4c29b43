"""ONNX exporters: fp32 through the dynamo exporter (+ onnxsim, onnx.checker) and
int8 QDQ through onnxruntime's static quantization."""
from __future__ import annotations

import platform
import shutil
from collections import Counter
from pathlib import Path
from typing import AbstractSet, Any

import numpy as np

from edgekd.core.errors import ExportError
from edgekd.exporters._util import converter_error
from edgekd.core.quiet import quiet
from edgekd.exporters.pixels import pixel_overrides
from edgekd.exporters.layer_error import SCOPES, kept_tensors, onnx_layer_errors, onnx_layer_nodes, pick_samples
from edgekd.device.runtimes import open_model
from edgekd.exporters.parity import run_file

INPUT_NAME = "input"
OUTPUT_NAME = "logits"

# Ops onnxruntime's CPU EP runs in int8 when a DequantizeLinear feeds them and a QuantizeLinear takes
# their output (its QDQ fusions: QLinearConv, QGemm, QLinearMatMul, QLinearAdd/Mul, QLinearSigmoid,
# QLinearGlobalAveragePool, ...; Relu and Clip fold into the QuantizeLinear before them). Measured on
# the zoo with onnxruntime 1.32 (its optimized graph): every Conv, Gemm, Add, Mul and GlobalAveragePool
# fused; HardSwish and HardSigmoid have no int8 kernel there and run in float between DQ and Q, and so
# does ReduceMean, which is why onnx-int8 quantizes a copy with each spatial mean as a GlobalAveragePool.
INT8_KERNEL_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Sigmoid", "LeakyRelu",
                             "GlobalAveragePool", "AveragePool", "MaxPool", "Softmax", "Concat", "Relu", "Clip"})
# Ops that only move values: onnxruntime drops the DQ/Q pair around them and moves the int8 values (the
# Flatten after a head's pooling); float only where the value they move is float.
INT8_MOVE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"})
POOL_TOLERANCE = 1e-4                   # |Δ logits| / max |logits| of the pooling rewrite: summation order only
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def export_onnx(ctx, src, out: Path) -> dict:
    """fp32 ONNX, one self-contained file, dynamic batch dimension, simplified and checked."""
    cached = src.cache.get("onnx")
    if cached is None:
        cached = ctx.workdir / f"{src.role}.fp32.onnx"
        info = _export_fp32(ctx, src, cached)
        src.cache["onnx"] = cached
        src.cache["onnx_info"] = info
    shutil.copyfile(src.cache["onnx"], out)
    return dict(src.cache["onnx_info"])


def _export_fp32(ctx, src, path: Path) -> dict:
    import onnx

    if src.kind == "onnx":
        model = onnx.load(str(src.onnx_path))
        info: dict[str, Any] = {"source": "brought ONNX file"}
    else:
        model, info = _torch_to_onnx(ctx, src, path)
    model = _simplify(model, info)
    try:   # a graph check of our own product, not a run (parity runs it through runtimes/)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ExportError(f"the {src.role} ONNX model fails onnx.checker: {str(exc).splitlines()[0][:300]}") from None
    onnx.save_model(model, str(path), save_as_external_data=False)
    info["opset"] = check_opset(model, ctx.opset, src.role, "onnx")
    return info


def check_opset(model, wanted: int | None, role: str, fmt: str) -> int | None:
    """The file's ONNX opset; it must be the one asked for (converters fall back silently)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if wanted is not None and opset != int(wanted):
        raise ExportError(f"the {role} {fmt} model has ONNX opset {opset}, not the requested {wanted}",
                          hint="the converter could not produce that opset; try the default --opset")
    return opset


def _torch_to_onnx(ctx, src, path: Path):
    import onnx
    import torch

    kwargs: dict[str, Any] = dict(dynamo=True, external_data=False, input_names=[INPUT_NAME],
                                  output_names=[OUTPUT_NAME], verbose=False, optimize=True)
    if ctx.opset is not None:
        kwargs["opset_version"] = int(ctx.opset)
    if src.program is not None:  # a brought .pt2: export the program itself, with the shapes it was made with
        subject, args = src.program, (src.example(1),)
    else:  # batch dimension dynamic: the device may run any batch size
        subject, args = src.module, (src.example(2),)
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=1 << 16)},)
    try:
        with quiet() as captured:
            torch.onnx.export(subject, args, str(path), **kwargs)
    except Exception as exc:  # the exporter raises many kinds; name the op
        raise converter_error("torch.onnx (dynamo)", src.role, "onnx", exc, captured.text, src.module,
                              src.example(1)) from None
    info = {"dynamic_batch": "dynamic_shapes" in kwargs}
    extra_files = [p.name for p in path.parent.iterdir() if p.name.startswith(path.name) and p != path]
    if extra_files:  # external_data=False must give one self-contained file
        raise ExportError(f"the ONNX exporter wrote separate data files {extra_files}; expected one file")
    return onnx.load(str(path)), info


def _simplify(model, info: dict):
    import onnxsim

    try:
        with quiet():
            simplified, ok = onnxsim.simplify(model)
    except Exception as exc:
        raise ExportError(f"onnxsim could not simplify the model: {str(exc).splitlines()[0][:300]}") from None
    if not ok:
        raise ExportError("onnxsim could not validate the simplified model against the original")
    info["nodes_before_simplify"] = len(model.graph.node)
    info["nodes"] = len(simplified.graph.node)
    _carry_scopes(model, simplified)
    return simplified


def _carry_scopes(before, after) -> None:
    """onnxsim rebuilds the nodes without their metadata; put the exporter's module paths back, matched
    by output tensor name (onnxsim keeps those), so the layer report and --keep-float name layers by
    torch module as for TFLite. Only the module path: the stack traces would ship the exporting
    machine's file paths in the model."""
    scopes = {out: prop.value for node in before.graph.node for prop in node.metadata_props
              if prop.key == SCOPES for out in node.output}
    for node in after.graph.node:
        value = next((scopes[out] for out in node.output if out in scopes), None)
        if value is not None and not any(prop.key == SCOPES for prop in node.metadata_props):
            node.metadata_props.add(key=SCOPES, value=value)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a numpy array, each batch sliced when asked
    for (not a copy of the whole set up front). onnxruntime's MinMax calibration adds ReduceMin/Max
    outputs to the graph, so what it keeps per batch is two numbers per tensor, not the activations:
    measured for ResNet-18 at 224 px, peak RSS is the same for 64 and 256 samples (1.7-1.8 GB, the
    session running one batch of 32) apart from the samples themselves."""

    def __init__(self, x: np.ndarray, name: str, batch: int):
        self._x, self._name, self._batch = x, name, batch
        self._starts = iter(range(0, len(x), batch))

    def get_next(self):
        i = next(self._starts, None)
        return None if i is None else {self._name: np.ascontiguousarray(self._x[i:i + self._batch])}


def int8_activations(choice: str | None) -> tuple[str, str]:
    """(u8 | s8, why): --int8-activations, or for auto (None) the exporting machine's CPU. x86's int8
    kernels (VPMADDUBSW, and VNNI's VPDPBUSD) multiply uint8 by int8: u8 activations ran ResNet-18 at
    224 px 1.77x faster than s8 here. Arm's dot-product SDOT multiplies int8 by int8."""
    if choice in ("u8", "s8"):
        return choice, "--int8-activations " + choice
    machine = platform.machine().lower()
    if machine in X86:
        return "u8", (f"auto: exported on {machine}, where onnxruntime's int8 kernels take uint8 activations "
                      "(u8s8); for an Arm device with dot-product instructions export with --int8-activations s8")
    return "s8", (f"auto: exported on {machine or 'an unknown CPU'}, not x86, where int8 x int8 kernels "
                  "(Arm SDOT) are the fast ones; for an x86 device export with --int8-activations u8")


def pooling_rewritten(fp32: Path, samples: np.ndarray, role: str) -> tuple[Path, int]:
    """The fp32 file onnx-int8 quantizes, and how many means became pools: ``fp32`` itself, or beside it
    a copy with every spatial ReduceMean as a GlobalAveragePool, which onnxruntime runs in int8
    (QLinearGlobalAveragePool) where a ReduceMean runs in float. The exported fp32 file keeps its graph.
    The copy must give the same logits on ``samples`` in onnxruntime, or the export stops."""
    import onnx

    model = onnx.load(str(fp32))
    count = rewrite_spatial_means(model)
    if not count:
        return fp32, 0
    path = fp32.with_name(f"{fp32.stem}.pooled.onnx")
    onnx.save_model(model, str(path), save_as_external_data=False)
    before, after = (run_file(p, samples)[0] for p in (fp32, path))
    drift = float(np.abs(after - before).max()) / max(float(np.abs(before).max()), 1e-6)
    if not drift <= POOL_TOLERANCE:
        raise ExportError(f"the {role} onnx-int8 model: rewriting {count} ReduceMean as GlobalAveragePool "
                          f"changed the fp32 logits by {drift:.2g} of their size (> {POOL_TOLERANCE:g})",
                          hint="a bug in edgekd's rewrite; --debug and report it")
    return path, count


def rewrite_spatial_means(model) -> int:
    """Every ReduceMean over the spatial axes of an NCHW tensor becomes a GlobalAveragePool (same node
    name, output and module path), followed by a Flatten where the mean dropped the axes; returns how
    many. A mean over other axes stays."""
    from onnx import helper

    graph = model.graph
    init, ranks = {t.name: t for t in graph.initializer}, _ranks(model)
    nodes, means = [], []
    for node in graph.node:
        if not _spatial_mean(node, init, ranks):
            nodes.append(node)
            continue
        means.append(node)
        keep = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        pooled = node.output[0] if keep else f"{node.output[0]}_pooled"
        made = [helper.make_node("GlobalAveragePool", [node.input[0]], [pooled], name=node.name)]
        if not keep:    # (N, C, 1, 1) -> (N, C): the shape ReduceMean(keepdims=0) gave
            made.append(helper.make_node("Flatten", [pooled], [node.output[0]], name=f"{node.name}_flatten", axis=1))
        for new in made:
            new.metadata_props.extend(node.metadata_props)
        nodes.extend(made)
    if means:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {name for node in nodes for name in node.input}
        axes = {name for node in means for name in node.input[1:]}
        for tensor in [t for t in graph.initializer if t.name in axes and t.name not in used]:
            graph.initializer.remove(tensor)     # the means' axes, read by nothing now
    return len(means)


def _ranks(model) -> dict[str, int]:
    """The rank of each tensor whose shape onnx's shape inference knows."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(model).graph
    return {v.name: len(v.type.tensor_type.shape.dim) for v in (*graph.input, *graph.value_info, *graph.output)
            if v.type.tensor_type.HasField("shape")}


def _spatial_mean(node, init: dict, ranks: dict) -> bool:
    """A ReduceMean over axes 2 and 3 (H, W) of a 4-D tensor: a GlobalAveragePool."""
    from onnx import numpy_helper

    if node.op_type != "ReduceMean" or ranks.get(node.input[0]) != 4:
        return False
    if len(node.input) > 1 and node.input[1]:      # opset 18+: the axes are an input
        axes = numpy_helper.to_array(init[node.input[1]]).tolist() if node.input[1] in init else None
    else:                                           # before: an attribute; none means every axis
        axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
    return axes is not None and sorted(int(a) % 4 for a in axes) == [2, 3]


def export_onnx_int8(ctx, src, out: Path) -> dict:
    """int8 QDQ ONNX: per-channel symmetric int8 weights, uint8 or int8 activations (u8 on x86, see
    int8_activations) calibrated on training samples; input and output stay float (QuantizeLinear/
    DequantizeLinear inside)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if "onnx" not in src.cache:
        export_onnx(ctx, src, ctx.workdir / f"{src.role}.onnx.tmp")
    fp32, pools = pooling_rewritten(src.cache["onnx"], pick_samples(ctx.calibration), src.role)
    kept = kept_tensors(ctx.keep_float, onnx_layer_nodes(fp32), "onnx-int8", src.role) if ctx.keep_float else {}
    excluded = [node for nodes in kept.values() for node in nodes]
    fp32_model = open_model(fp32, threads=1, providers=["cpu"])
    name = fp32_model.input.name
    batch = 1 if fp32_model.fixed_batch else 32     # a fixed-batch file (from a .pt2) is calibrated one at a time
    activations, why = int8_activations(ctx.int8_activations)
    try:
        with quiet() as captured:
            quantize_static(str(fp32), str(out), _Reader(ctx.calibration, name, batch),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8 if activations == "u8" else QuantType.QInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded,
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                           **pixel_overrides(fp32, src.pixels)})
    except Exception as exc:
        raise converter_error("onnxruntime.quantization", src.role, "onnx-int8", exc, captured.text) from None
    model = onnx.load(str(out))   # the product's graph is checked here; parity runs it (runtimes/)
    float_ops = check_onnx_int8(model, src.role, set(excluded))
    layers = onnx_layer_errors(fp32, out, pick_samples(ctx.calibration), ctx.workdir)  # int8 vs fp32 per layer
    return {"opset": check_opset(model, ctx.opset, src.role, "onnx-int8"),
            "quant_format": "QDQ", "per_channel": True, "weights": "int8 symmetric",
            "activations": f"{'uint8' if activations == 'u8' else 'int8'} static", "activation_type": activations,
            "activation_choice": why, "float_ops": float_ops,
            "io": "uint8 pixels in (NHWC, --input uint8), float32 out" if src.pixels else "float32",
            "full_integer": False, "kept_float": list(kept), "layer_error": layers,   # float input and output
            "pools_rewritten": pools}


def check_onnx_int8(model, role: str, kept: AbstractSet[str] = frozenset()) -> dict:
    """Every weight of a Conv/Gemm/MatMul is int8 behind a DequantizeLinear, every op onnxruntime has an
    int8 kernel for sits between DequantizeLinear and QuantizeLinear (uint8 or int8 activations), but
    the ``kept`` nodes (--keep-float), float by request; a spatial ReduceMean counts as the
    GlobalAveragePool it is. Returns the ops left in float, by type: those without an int8 kernel, kept,
    or outside the quantized region (a Flatten or Reshape between DQ and Q moves int8 values)."""
    graph = model.graph
    init, producers, consumers = _index(graph)
    ranks = _ranks(model)
    float_weights, islands, quantized = [], [], 0
    float_ops: Counter = Counter()
    for node in graph.node:
        if node.op_type in QDQ_OPS:
            continue
        label = node.name or node.op_type
        if node.name in kept or _moves_kept_values(node, kept, producers):
            float_ops[node.op_type] += 1
            continue
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            if _int8_weight(node.input[1], init, producers):
                quantized += 1
            else:
                float_weights.append(f"{label} ({node.input[1]})")
        kind = _float_kind(node, init, producers, consumers, ranks)
        if kind == "island":
            islands.append((node.op_type, label))
        elif kind == "float":
            float_ops[node.op_type] += 1
    if float_weights or not quantized:
        raise ExportError(f"the {role} onnx-int8 model is not int8: float weights in "
                          f"{', '.join(float_weights) or 'every layer'}")
    if islands:
        kinds = ", ".join(f"{n} {op}" for op, n in sorted(Counter(op for op, _ in islands).items()))
        raise ExportError(f"the {role} onnx-int8 model leaves op(s) in float that onnxruntime runs in int8: {kinds} "
                          f"({', '.join(label for _, label in islands[:3])}, ...)",
                          hint="the quantizer skipped them; --debug and report it")
    return dict(sorted(float_ops.items()))


def _moves_kept_values(node, kept: AbstractSet[str], producers: dict) -> bool:
    """A pooling or reshape reading a kept (float) node's output directly: onnxruntime's quantizer gives such
    an op its input's grid, and a kept node's output has none, so it stays float with the kept layer."""
    return node.op_type in ("MaxPool", *INT8_MOVE_OPS) and any(
        getattr(producers.get(name), "name", None) in kept for name in node.input)


def _float_kind(node, init: dict, producers: dict, consumers: dict, ranks: dict) -> str | None:
    """"island": float where onnxruntime has an int8 kernel (a spatial ReduceMean is a GlobalAveragePool);
    "float": no int8 kernel, float between DQ and Q; None: int8."""
    wrapped = _between_qdq(node, init, producers, consumers)
    if _spatial_mean(node, init, ranks) or (node.op_type in INT8_KERNEL_OPS and not wrapped):
        return "island"
    if node.op_type in INT8_KERNEL_OPS or (node.op_type in INT8_MOVE_OPS and wrapped):
        return None
    return "float"


def _index(graph) -> tuple[dict, dict, dict]:
    """(initializers, the node producing each tensor, the nodes reading each tensor) by name."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return {t.name: t for t in graph.initializer}, {o: n for n in graph.node for o in n.output}, consumers


def _int8_weight(name: str, init: dict, producers: dict) -> bool:
    from onnx import TensorProto

    dq = producers.get(name)
    return dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in init \
        and init[dq.input[0]].data_type == TensorProto.INT8


def _between_qdq(node, init: dict, producers: dict, consumers: dict) -> bool:
    """Each non-constant input comes from a DequantizeLinear and each output goes to QuantizeLinear only."""
    inputs = [n for n in node.input if n and n not in init]
    fed = all(getattr(producers.get(n), "op_type", None) == "DequantizeLinear" for n in inputs)
    taken = all(consumers.get(o) and all(c.op_type == "QuantizeLinear" for c in consumers[o]) for o in node.output)
    return fed and taken
