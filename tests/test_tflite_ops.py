"""TFLite per-op times (runtimes.tflite_ops): each op cut out into a one-op model that computes what the
op computes in the whole file, timed in LiteRT, and flagged where XNNPACK does not take it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.device.runtimes.tflite import import_interpreter
from edgekd.device.runtimes.tflite_ops import one_op_model, op_times, tools
from edgekd.exporters import tflite
from edgekd.exporters.run import ExportContext
from edgekd.exporters.source import Source

SHAPE = (1, 8, 8)


class Tiny(nn.Module):
    """A conv block with hard-swish (int8 HARD_SWISH is not delegated) and a classifier; the 1-channel
    convolution becomes a DEPTHWISE_CONV_2D with depth multiplier 8 (litert-torch)."""

    def __init__(self):
        super().__init__()
        self.conv, self.act = nn.Conv2d(1, 8, 3, padding=1), nn.Hardswish()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """fp32, and int8 with the HARD_SWISH op kept as litert-torch writes it (no int8-friendly form)."""
    torch.manual_seed(0)
    work = tmp_path_factory.mktemp("tflite_ops")
    x = np.random.default_rng(0).normal(0, 1, (16, *SHAPE)).astype(np.float32)
    source = Source("student", work, {"input": {"shape": list(SHAPE)}}, "torch", module=Tiny().eval())
    context = ExportContext(work, None, x)
    tflite.export_tflite(context, source, work / "fp32.tflite")
    patch = pytest.MonkeyPatch()
    patch.setattr(tflite, "int8_friendly", lambda module, samples, role: (module, {"hardswish": 0}))
    try:
        tflite.export_tflite_int8(context, source, work / "int8.tflite")
    finally:
        patch.undo()
    return {"fp32": work / "fp32.tflite", "int8": work / "int8.tflite"}


def test_every_op_is_timed_and_the_int8_hard_swish_is_named_undelegated(files):
    from edgekd.device.runtimes import open_model

    Interpreter = import_interpreter()[0]
    (fp32, call), (int8, _) = (op_times(files[k], Interpreter, threads=1, runs=20, warmup=2) for k in ("fp32", "int8"))
    assert all(op["ms"] > 0 for op in fp32 + int8) and call > 0
    assert {op["op"] for op in int8} >= {"DEPTHWISE_CONV_2D", "HARD_SWISH", "MEAN", "FULLY_CONNECTED"}
    assert [op["index"] for op in int8] == list(range(len(int8)))
    rt = open_model(files["int8"], threads=1)
    profile = rt.profile(rt.prepare(rt.random_input(1)), runs=20, warmup=2)
    assert [n["op"] for n in profile["nodes"] if not n["delegated"]] == ["HARD_SWISH"]
    assert profile["runs"] == 20 and len(profile["nodes"]) == len(int8)


def test_a_one_op_model_computes_what_the_op_computes_in_the_whole_file(files):
    """The last op cut out alone, fed the whole file's tensor before it, gives the file's output."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    Interpreter = import_interpreter()[0]
    model = fb.read_model_from_bytearray(bytearray(files["fp32"].read_bytes()))
    last = len(model.subgraphs[0].operators) - 1
    whole = Interpreter(model_path=str(files["fp32"]), experimental_preserve_all_tensors=True)
    whole.allocate_tensors()
    whole.set_tensor(whole.get_input_details()[0]["index"], np.random.default_rng(1).normal(0, 1, (1, *SHAPE)).astype(np.float32))
    whole.invoke()
    op = model.subgraphs[0].operators[last]
    alone = Interpreter(model_content=one_op_model(model, last, tools()))
    alone.allocate_tensors()
    feed = next(t for t in op.inputs if t >= 0 and not model.buffers[model.subgraphs[0].tensors[t].buffer].data)
    alone.set_tensor(alone.get_input_details()[0]["index"], whole.get_tensor(feed))
    alone.invoke()
    np.testing.assert_allclose(alone.get_tensor(alone.get_output_details()[0]["index"]),
                               whole.get_tensor(whole.get_output_details()[0]["index"]), rtol=1e-6, atol=1e-6)


# --- files a user (or an attacker) can hand to bench --profile, built op by op ------------------------
def _crafted(ops: list[tuple[int, list[int], list[int]]], tensors: list[tuple[bytes, list[int], int]],
             inputs: list[int], outputs: list[int], buffers=None, metadata=None, options=None,
             signature: list[int] | None = None) -> bytes:
    """A flatbuffer of ``ops`` (builtin code, inputs, outputs) over ``tensors`` (name, shape, type)."""
    from edgekd.device.runtimes.tflite_ops import _pack

    found = tools()
    S = found.schema
    codes, operators = [], []
    for index, (builtin, ins, outs) in enumerate(ops):
        code = S.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode = builtin, min(builtin, 127)
        codes.append(code)
        op = S.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = index, ins, outs
        if options and index in options:
            op.builtinOptionsType, op.builtinOptions = options[index]
        operators.append(op)
    made = []
    for name, shape, kind in tensors:
        t = S.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, kind, 0
        t.shapeSignature = signature          # -1: a dynamic dimension
        made.append(t)
    sub = S.SubGraphT()
    sub.tensors, sub.operators, sub.inputs, sub.outputs = made, operators, inputs, outputs
    model = S.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, codes, [sub]
    model.buffers, model.metadata = buffers or [S.BufferT()], metadata
    return _pack(model, found)


def _profile(tmp_path, content: bytes) -> dict:
    from edgekd.device.runtimes import open_model

    path = tmp_path / "crafted.tflite"
    path.write_bytes(content)
    rt = open_model(path, threads=1)
    return {"file": path.name, "profile": {**rt.profile(rt.prepare(rt.random_input(1)), runs=5, warmup=1),
                                           "threads": 1, "batch": 1, "p50_ms": 0.001}}


def test_an_op_that_cannot_run_alone_is_left_untimed_and_odd_names_print_as_text(tmp_path):
    """SHAPE → RESHAPE: alone, the RESHAPE gets a zero shape and fails; the profile still comes back, and a
    tensor name with rich markup and escape codes prints as plain text (terminal and markdown)."""
    import io

    from rich.console import Console

    from edgekd.app.render.bench import _profile_table
    from edgekd.device.bench.profile_text import profile_markdown

    S = tools().schema
    shape = S.ShapeOptionsT()
    shape.outType = S.TensorType.INT32
    content = _crafted([(S.BuiltinOperator.SHAPE, [0], [1]), (S.BuiltinOperator.RESHAPE, [0, 1], [2])],
                       [(b"x", [1, 4], S.TensorType.FLOAT32), (b"s[/]\x1b[31m\nhi", [2], S.TensorType.INT32),
                        (b"y", [1, 4], S.TensorType.FLOAT32)], [0], [2],
                       options={0: (S.BuiltinOptions.ShapeOptions, shape)})
    m = _profile(tmp_path, content)
    timed = {n["op"]: n["ms"] for n in m["profile"]["nodes"]}
    assert m["profile"]["method"] == "one-op-models" and timed["SHAPE"] > 0 and timed["RESHAPE"] is None
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(_profile_table(m))
    assert "s[/]" in out.getvalue() and "\x1b" not in out.getvalue()
    assert not any("\x1b" in line or line.endswith("hi |") for line in profile_markdown({"models": [m]}))


@pytest.mark.parametrize("damage", ["metadata past the buffers", "buffers stored after the flatbuffer"])
def test_a_file_the_tools_cannot_read_safely_gets_the_delegation_profile(tmp_path, damage):
    """LiteRT loads both; ai-edge-litert's reader would raise (a metadata entry naming buffer 99) or copy
    each of 2,000 outside buffers (quadratic memory). The profile falls back to delegation, untimed."""
    S = tools().schema
    metadata, buffers = None, None
    if damage == "metadata past the buffers":
        entry = S.MetadataT()
        entry.name, entry.buffer = b"x", 99
        metadata = [entry]
    else:
        buffers = [S.BufferT()]
        for _ in range(2000):
            far = S.BufferT()
            far.offset, far.size = 1 << 20, 1 << 40
            buffers.append(far)
    content = _crafted([(S.BuiltinOperator.RELU, [0], [1])], [(b"x", [1, 4], S.TensorType.FLOAT32),
                                                               (b"y", [1, 4], S.TensorType.FLOAT32)],
                       [0], [1], buffers=buffers, metadata=metadata)
    assert _profile(tmp_path, content)["profile"]["method"] == "delegation"


def test_at_another_batch_than_the_files_the_profile_is_the_delegation_walk(tmp_path):
    """A cut-out op keeps the file's shapes, so at batch 2 of a file saved at batch 1 (its batch dynamic)
    nothing is timed; the ops are still listed."""
    from edgekd.device.runtimes import open_model

    S = tools().schema
    content = _crafted([(S.BuiltinOperator.RELU, [0], [1])], [(b"x", [1, 4], S.TensorType.FLOAT32),
                                                               (b"y", [1, 4], S.TensorType.FLOAT32)], [0], [1],
                       signature=[-1, 4])
    path = tmp_path / "dynamic.tflite"
    path.write_bytes(content)
    rt = open_model(path, threads=1)
    profile = rt.profile(rt.prepare(rt.random_input(2)), runs=5, warmup=1)
    assert profile["method"] == "delegation" and profile["nodes"] == [] and rt.batch == 2
    assert [(r["op"], r["count"]) for r in profile["ops"]] == [("RELU", 1)]
    assert rt.profile(rt.prepare(rt.random_input(1)), runs=5, warmup=1)["method"] == "one-op-models"
