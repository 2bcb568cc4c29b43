"""Per-op time of a TFLite file, measured op by op: LiteRT's Python interpreter has no op profiler, so
each op of the main graph is cut out into a one-op model (its tensors, weights and quantization as in
the file) and timed alone in the same runtime, with the same threads and the default XNNPACK delegate.

What this measures and what it does not: an op's own kernel time plus one interpreter call. The call is measured apart, on a one-op model that does almost
nothing (RELU on one float: ~0.4 µs here), and :mod:`.tflite_profile` reports each op's time with and
without it.
Fusions XNNPACK makes across ops (a PAD into the convolution after it) and the cost of switching between
the delegate and the built-in kernels are not in any op's time, so the ops' sum exceeds the whole file's
p50 by about the call overhead times the op count. Found this way (issue 28): a 1-channel stem
convolution becomes an int8 DEPTHWISE_CONV_2D with depth multiplier 8 that took 30 µs where its fp32
form took 4.4 µs. Needs ai-edge-litert's flatbuffer tools (``ai_edge_litert.tools``); without them
:func:`op_times` returns None.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


class Tools(NamedTuple):
    """ai-edge-litert's flatbuffer reader, its schema's object API, and flatbuffers' builder."""
    fb: Any
    schema: Any
    builder: Any

def tools() -> Tools | None:
    """None where ai-edge-litert's tools are not installed (tflite-runtime, tensorflow.lite)."""
    try:
        import flatbuffers  # type: ignore[import-untyped]
        from ai_edge_litert import schema_py_generated
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:
        return None
    return Tools(flatbuffer_utils, schema_py_generated, flatbuffers.Builder)


def _has_data(model, tensor) -> bool:
    buffer = model.buffers[tensor.buffer] if 0 <= tensor.buffer < len(model.buffers) else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def _cuttable(op, schema) -> bool:
    """Ops that stand alone: no nested graphs (CALL, IF, WHILE, CALL_ONCE carry subgraph indices, as
    StableHLO ops' second options may), no intermediates."""
    options = schema.BuiltinOptions
    nested = {options.CallOptions, options.IfOptions, options.WhileOptions, options.CallOnceOptions}
    return not op.intermediates and op.builtinOptionsType not in nested and not op.builtinOptions2Type


def one_op_model(model, index: int, tools: Tools) -> bytes:
    """The flatbuffer of op ``index`` alone: its tensors renumbered, its weights the only buffers, its
    operator code the only one, the non-constant inputs as the graph's inputs and its outputs as the
    graph's outputs."""
    schema = tools.schema
    graph, op = model.subgraphs[0], model.subgraphs[0].operators[index]
    used = list(dict.fromkeys(t for t in [*op.inputs, *op.outputs] if t >= 0))
    remap = {t: i for i, t in enumerate(used)}
    buffers, tensors = [schema.BufferT()], []       # buffer 0 is the empty one, by convention
    for t in used:
        tensor = copy.copy(graph.tensors[t])
        if _has_data(model, tensor):
            buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
        tensors.append(tensor)
    cut = copy.copy(op)
    cut.opcodeIndex = 0
    cut.inputs = [remap[t] if t >= 0 else -1 for t in op.inputs]
    cut.outputs = [remap[t] for t in op.outputs if t >= 0]
    sub = schema.SubGraphT()
    sub.tensors, sub.operators = tensors, [cut]
    sub.inputs = list(dict.fromkeys(remap[t] for t in op.inputs if t >= 0 and not _has_data(model, graph.tensors[t])))
    sub.outputs = list(cut.outputs)
    alone = schema.ModelT()
    alone.version, alone.operatorCodes = model.version, [model.operatorCodes[op.opcodeIndex]]
    alone.subgraphs, alone.buffers = [sub], buffers
    return _pack(alone, tools)


def call_model(tools: Tools) -> bytes:
    """A one-op model that does almost nothing, RELU on one float: what an interpreter call costs."""
    schema = tools.schema
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.RELU
    tensors = []
    for name in (b"x", b"y"):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [1], schema.TensorType.FLOAT32, 0, name
        tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    sub = schema.SubGraphT()
    sub.tensors, sub.operators, sub.inputs, sub.outputs = tensors, [op], [0], [1]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [sub], [schema.BufferT()]
    return _pack(model, tools)


def _pack(model, tools: Tools) -> bytes:
    builder = tools.builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def time_alone(interpreter_class, content: bytes, threads: int | None, runs: int, warmup: int) -> float:
    """p50 ms of one invoke of a one-op model, on zero inputs."""
    interp = interpreter_class(model_content=content, num_threads=threads)
    interp.allocate_tensors()
    for detail in interp.get_input_details():
        interp.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    for _ in range(warmup):
        interp.invoke()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter_ns()
        interp.invoke()
        times[i] = time.perf_counter_ns() - start
    return float(np.median(times)) / 1e6


def _readable(content: bytes, tools: Tools) -> bool:
    """Whether the tools can read the file as objects without harm: they copy every buffer stored after
    the flatbuffer (offset > 1, files over 2 GB) once per such buffer, used or not, so a small crafted
    file could take gigabytes. Those files are not cut into ops."""
    try:
        model = tools.schema.Model.GetRootAs(content, 0)
        return all(model.Buffers(i).Offset() <= 1 for i in range(model.BuffersLength()))
    except Exception:        # flatbuffers raises what the damaged bytes make it raise
        return False


def _name(model, op, tools: Tools) -> tuple[str, str]:
    """(the op's name, as the interpreter lists it: a custom op by its own code; its first output's name)."""
    code = model.operatorCodes[op.opcodeIndex]
    name = tools.fb.opcode_to_name(model, op.opcodeIndex) or "?"
    if name == "CUSTOM" and code.customCode:
        name = code.customCode.decode("utf-8", "replace")
    outputs = [t for t in op.outputs if t >= 0]
    output = model.subgraphs[0].tensors[outputs[0]].name if outputs else b""
    return name, output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output or "")


def op_times(path: Path, interpreter_class, threads: int | None = 1, runs: int = 200,
             warmup: int = 20) -> tuple[list[dict], float] | None:
    """(one entry per op of the main graph, in graph order: index, op, output (the tensor it writes, named
    by the converter: a module path for litert-torch files) and ms (None where the op cannot stand alone
    or does not run alone: e.g. a RESHAPE to a shape computed in the graph gets zeros); the ms of one call
    of :func:`call_model`). None without the flatbuffer tools or where they cannot read the file."""
    found = tools()
    content = Path(path).read_bytes()
    if found is None or not _readable(content, found):
        return None
    try:
        model = found.fb.read_model_from_bytearray(bytearray(content))
        ops = model.subgraphs[0].operators or []
        named = [_name(model, op, found) for op in ops]
    except (IndexError, ValueError, KeyError, TypeError, AttributeError):   # damaged tables: no op times
        return None
    call = time_alone(interpreter_class, call_model(found), threads, runs, warmup)
    out = []
    for index, (op, (name, output)) in enumerate(zip(ops, named)):
        entry = {"index": index, "op": name, "output": output, "ms": None}
        if _cuttable(op, found.schema):
            try:
                entry["ms"] = time_alone(interpreter_class, one_op_model(model, index, found), threads, runs, warmup)
            except (ValueError, RuntimeError, IndexError, KeyError, TypeError, OverflowError):
                pass       # the interpreter refused the op alone (its message says why): untimed
        out.append(entry)
    return out, call
