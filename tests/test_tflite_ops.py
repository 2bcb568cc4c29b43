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
    Interpreter = import_interpreter()[0]
    (fp32, call), (int8, _) = (op_times(files[k], Interpreter, threads=1, runs=20, warmup=2) for k in ("fp32", "int8"))
    assert all(op["ms"] > 0 for op in fp32 + int8) and call > 0
    assert [op["op"] for op in fp32 if not op["delegated"]] == []
    assert [op["op"] for op in int8 if not op["delegated"]] == ["HARD_SWISH"]
    assert {op["op"] for op in int8} >= {"DEPTHWISE_CONV_2D", "HARD_SWISH", "MEAN", "FULLY_CONNECTED"}
    assert [op["index"] for op in int8] == list(range(len(int8)))


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
