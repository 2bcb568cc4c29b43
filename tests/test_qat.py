"""Quantization-aware distillation (``edgekd distill --qat-epochs N``, edgekd/train/distill/qat.py): real
training on digits with tiny epochs, the run's student exported as full int8, and the refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import edgekd
from edgekd.train.modelfile import load_model
from edgekd.train.config import load_config
from edgekd.train.distill import run_experiment
from edgekd.train.distill.losses import build_loss
from edgekd.train.distill.qat import check_student, copy_back, prepare, quantization_aware_distill
from edgekd.train.distill.inference import predict_logits
from edgekd.train.distill.train import FitSettings, KDTarget
from edgekd.core.errors import ModelError
from edgekd.exporters.tflite import check_tflite

from conftest import TINY, assert_user_error, run_cli_here


def _trained(demo_run):
    """The demo run's student and teacher, and its calibration samples as tensors."""
    student, _ = load_model(demo_run / "student")
    teacher, _ = load_model(demo_run / "teacher")
    with np.load(demo_run / "calibration.npz") as data:
        x, y = torch.from_numpy(data["x"][:256]), torch.from_numpy(data["y"][:256])
    return student, teacher, x, y


def test_qat_student_of_an_onnx_teacher_exports_full_int8(demo_run, tmp_path):
    """A brought ONNX teacher gives only logits, which is all QAT needs; the run's student (the
    QAT-trained one) exports to a tflite-int8 file that passes the strict dtype check."""
    teacher, _ = load_model(demo_run / "teacher")
    onnx_teacher = tmp_path / "teacher.onnx"
    torch.onnx.export(teacher, (torch.zeros(2, 1, 8, 8),), str(onnx_teacher), dynamo=True, external_data=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    run = tmp_path / "run"
    options = dict(TINY, folds=1, student_epochs=2, teacher_from=str(onnx_teacher), qat_epochs=1, out=str(run))
    summary = run_experiment(load_config(None, **options))
    qat = summary["final"]["student"]["qat"]
    assert qat["epochs"] == 1 and len(qat["history"]) == 1
    assert summary["test"]["student"] == qat["accuracy_after"]      # the run's student is the QAT one
    assert "QAT range" in qat["export"]
    assert json.loads((run / "cv.json").read_text())["final"]["student"]["qat"]["accuracy_before"] == \
        qat["accuracy_before"]
    assert "quantization-aware distillation, 1 epochs" in (run / "train.log").read_text()
    bundle = tmp_path / "bundle"
    edgekd.export(run, out=bundle, formats=["tflite-int8"], roles=["student"])
    check_tflite(bundle / "student.int8.tflite", "int8", "student")
    _assert_file_has_the_trained_grids(run, bundle)


def _assert_file_has_the_trained_grids(run, bundle):
    """The int8 file computes on the grids QAT trained: each conv block's output tensor has the scale and
    zero point of its QAT range (export.json counts them), not a calibrated one."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    from edgekd.exporters._util import fb_text
    from edgekd.exporters.layer_error import writer_module

    trained = json.loads((run / "student" / "model.json").read_text())["quantization"]["activations"]
    by_module = {entry["module"]: entry for entry in trained}
    assert "features.2" in by_module and by_module["features.2"]["min"] == 0.0   # after the ReLU: as in TFLite
    details = json.loads((bundle / "export.json").read_text())["models"][0]["details"]
    assert details["qat_ranges"]["tensors_from_qat"] >= 2 and "QAT-trained ranges" in details["activations"]
    graph = fb.read_model_from_bytearray(bytearray((bundle / "student.int8.tflite").read_bytes())).subgraphs[0]
    written = {index for op in graph.operators for index in op.outputs}     # activations, not weights
    checked = 0
    for index, tensor in enumerate(graph.tensors):
        entry = by_module.get(writer_module(fb_text(tensor.name)) or "?")
        if index not in written or entry is None or tensor.quantization is None:
            continue
        scale = (entry["max"] - entry["min"]) / 255
        assert tensor.quantization.scale[0] == pytest.approx(scale, rel=1e-4)
        assert tensor.quantization.zeroPoint[0] == round(-128 - entry["min"] / scale)
        checked += 1
    assert checked >= 2


@pytest.mark.slow
def test_qat_quantizes_after_relu6_as_tflite_does():
    """TFLite fuses ReLU6 into the conv before it and keeps int8 only after it: the QAT graph's
    activation quantizers sit after each ReLU6 (hardtanh), not on the BatchNorm output it reads."""
    from edgekd.train.distill.qat import observed_modules
    from edgekd.train.models import build

    model = build("mobilenetv2:width=0.25", (1, 8, 8), 10)
    observed = list(observed_modules(prepare(model, torch.zeros(2, 1, 8, 8))).values())
    relu6 = [name for name, m in model.named_modules() if isinstance(m, torch.nn.ReLU6)]
    assert sorted(path for path, op in observed if op == "aten.hardtanh.default") == sorted(relu6)
    batchnorm_outputs = {path for path, op in observed if op == "aten.batch_norm.default"}
    assert not {name.rsplit(".", 1)[0] + ".1" for name in relu6} & batchnorm_outputs
    assert observed[0] == ("(input)", "x")


@pytest.mark.parametrize("quantization,fragment", [
    ("ranges", "must be"),
    ({"source": "qat", "activations": [{"module": "a", "op": "b", "min": 1.0, "max": 0.5}]}, "min below its max"),
    ({"source": "qat", "activations": [{"module": "a", "op": "b", "min": 0, "max": float("inf")}]}, "finite"),
    ({"source": "other", "activations": []}, "must be"),
], ids=["not-an-object", "empty-range", "infinite", "unknown-source"])
def test_damaged_qat_ranges_in_model_json_are_refused(quantization, fragment):
    from edgekd.exporters.qat_ranges import trained_ranges

    with pytest.raises(ModelError, match=fragment):
        trained_ranges({"quantization": quantization}, "model.json")
    assert trained_ranges({}, "model.json") is None


def test_qat_changes_the_weights(demo_run):
    student, teacher, x, y = _trained(demo_run)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    kd = KDTarget(build_loss("kd"), outputs={"logits": predict_logits(teacher, x)})
    settings = FitSettings(epochs=1, batch_size=64, lr=0.01, weight_decay=0.0, seed=0, validation=(x, y))
    record, ranges = quantization_aware_distill(student, (x, y), settings, kd, epochs=1)
    after = student.state_dict()
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert "features.0.weight" in changed and "classifier.weight" in changed
    assert "features.1.running_var" in changed          # BatchNorm trained in the QAT graph came back too
    assert 0.0 <= record["fake_quant_accuracy"] <= 1.0 and record["lr"] == pytest.approx(0.001)
    assert {entry["module"] for entry in ranges} >= {"(input)", "features.2", "features.6"}


def test_float_student_computes_what_the_qat_graph_does_without_fake_quant(demo_run):
    """The copy back is right for conv+BatchNorm: PT2E simulates their fold, so the float module
    with the graph's trained tensors equals the graph with its fake quantization turned off."""
    from torchao.quantization.pt2e import disable_fake_quant

    student, _, x, _ = _trained(demo_run)
    prepared = prepare(student, x[:2])
    prepared.train()
    with torch.no_grad():
        for name, tensor in prepared.named_parameters():
            tensor.mul_(1.1)                # trained: other weights than the student's
        prepared(x)                         # and other BatchNorm statistics
    copy_back(prepared, student)
    prepared.apply(disable_fake_quant)
    prepared.eval()
    with torch.no_grad():
        torch.testing.assert_close(prepared(x[:64]), student(x[:64]), rtol=1e-4, atol=1e-4)


def test_a_student_pt2e_cannot_prepare_is_refused_before_training():
    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1) if x.sum() > 0 else -x.flatten(1)

    with pytest.raises(ModelError, match="cannot be prepared for quantization-aware training"):
        check_student(DataDependent(), "mine.py:net", (1, 8, 8))


@pytest.mark.parametrize("args,fragment", [
    (["--qat-epochs", "-1"], "qat epochs must be at least 0"),
    (["--student", "student.onnx", "--qat-epochs", "2"], "'student.onnx' is a model file"),
], ids=["negative", "onnx-student"])
def test_impossible_qat_is_one_error_line(tmp_path, args, fragment):
    result = run_cli_here("distill", *args, "--out", tmp_path / "run")
    assert_user_error(result, fragment)
    assert not (tmp_path / "run").exists()
