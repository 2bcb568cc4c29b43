"""Loading a brought model never runs code from it or reads beside it (issue 10).

Each hostile archive is a real ``torch.export.save`` of a tiny module with one entry rewritten
so that ``torch.export.load`` would run a payload that creates a marker file; plain torch is
first shown to run it, then edgekd must refuse (or defuse) it untouched.
"""
from __future__ import annotations

import io
import json
import os
import pathlib
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import assert_user_error, run_cli_here
from torch import nn

from edgekd.checkpoint import load_program, read_spec
from edgekd.distill.teachers import load_teacher
from edgekd.errors import ModelError
from edgekd.exporters.source import load_source


class Touch:
    """Unpickling this creates ``marker``: the stand-in for an ``os.system`` payload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _saved(path: Path) -> Path:
    """A real .pt2 of a plain module (torch.export.save's defaults)."""
    torch.manual_seed(0)
    torch.export.save(torch.export.export(nn.Linear(4, 3).eval(), (torch.zeros(1, 4),)), str(path))
    return path


def _torch_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _pickled_weight(name: str, data: bytes, marker: Path) -> bytes:
    if name.endswith("_weights_config.json"):
        config = json.loads(data)
        config["config"]["weight"]["use_pickle"] = True
        return json.dumps(config).encode()
    return _torch_pickle(Touch(marker)) if name.endswith("data/weights/weight_0") else data


def _pickled_constant(name: str, data: bytes, marker: Path) -> bytes:
    if name.endswith("_constants_config.json"):
        meta = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}
        return json.dumps({"config": {"hidden": meta}}).encode()
    return data


def _pickled_sample_inputs(name: str, data: bytes, marker: Path) -> bytes:
    # not loadable with weights_only=True, so torch retries with weights_only=False
    return _torch_pickle(Touch(marker)) if "data/sample_inputs/" in name else data


def _sympy_expression(name: str, data: bytes, marker: Path) -> bytes:
    if not name.endswith("models/model.json"):
        return data
    code = {"as_expr": {"expr_str": f"__import__('pathlib').Path({str(marker)!r}).touch()", "hint": {"as_int": 4}}}
    return data.decode().replace('{"as_int": 4}', json.dumps(code), 1).encode()


PAYLOADS = {"weight": _pickled_weight, "constant": _pickled_constant,
            "sample_inputs": _pickled_sample_inputs, "sympy": _sympy_expression}


def _hostile(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """(the hostile .pt2, the marker its payload would create)."""
    marker = tmp_path / "MARKER"
    source = zipfile.ZipFile(_saved(tmp_path / "plain.pt2"))
    path = tmp_path / "evil.pt2"
    with source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for name in source.namelist():
            target.writestr(name, PAYLOADS[kind](name, source.read(name), marker))
        if kind == "constant":
            target.writestr("plain/data/constants/opaque_obj_0", pickle.dumps(Touch(marker)))
    return path, marker


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_plain_torch_export_load_runs_the_payload(tmp_path, kind):
    """Sanity: each payload is real, torch.export.load runs it (here: the payload only touches a file)."""
    path, marker = _hostile(tmp_path, kind)
    try:
        torch.export.load(str(path))
    except Exception:           # some payloads run before a later step of the load fails
        pass
    assert marker.exists()


@pytest.mark.parametrize("kind,fragment", [
    ("weight", "holds an entry that would be unpickled (data/weights/weight_0)"),
    ("constant", "holds an entry that would be unpickled (data/constants/opaque_obj_0)"),
    ("sympy", "holds a shape expression that sympy would evaluate as code"),
])
def test_load_program_refuses_what_torch_would_run(tmp_path, kind, fragment):
    path, marker = _hostile(tmp_path, kind)
    with pytest.raises(ModelError) as info:
        load_program(path, ".pt2 teacher")
    assert fragment in info.value.message and "edgekd never unpickles" in info.value.message
    assert not marker.exists()


def test_sample_inputs_are_never_unpickled(tmp_path):
    """torch.export.save always pickles the sample inputs: they are dropped, the program still runs."""
    path, marker = _hostile(tmp_path, "sample_inputs")
    program = load_program(path, ".pt2 teacher")
    reference = load_program(tmp_path / "plain.pt2", ".pt2 teacher")
    x = torch.randn(1, 4)
    assert torch.equal(program.module()(x), reference.module()(x))
    assert program.example_inputs is None and not marker.exists()


@pytest.mark.parametrize("entry,fragment", [
    ("data/aotinductor/model/model.so", "compiled code that torch would load"),
    ("data/weights/model.pt", "an entry that would be unpickled"),
    ("serialized_state_dict.pt", "an entry that would be unpickled"),
])
def test_entries_a_plain_save_never_writes_are_refused(tmp_path, entry, fragment):
    """AOTInductor libraries (dlopen-ed by torch) and legacy pickled state dicts."""
    path = _saved(tmp_path / "plain.pt2")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(f"plain/{entry}", b"\x7fELF or a pickle")
    with pytest.raises(ModelError) as info:
        load_program(path, ".pt2 teacher")
    assert f"{fragment} (plain/{entry})" in info.value.message


def test_compressed_entries_are_refused(tmp_path):
    """torch.export.save stores entries; a deflated one could expand to any size in memory."""
    source = zipfile.ZipFile(_saved(tmp_path / "plain.pt2"))
    path = tmp_path / "deflated.pt2"
    with source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
    with pytest.raises(ModelError, match="holds a compressed entry"):
        load_program(path, ".pt2 teacher")


def test_distill_teacher_from_a_hostile_pt2(tmp_path):
    path, marker = _hostile(tmp_path, "weight")
    before = sorted(os.listdir(tmp_path))
    result = run_cli_here("distill", "--teacher-from", path, "--out", tmp_path / "run", cwd=tmp_path)
    assert_user_error(result, "would be unpickled")
    assert not marker.exists() and sorted(os.listdir(tmp_path)) == before


def test_export_of_a_run_whose_teacher_is_a_hostile_pt2(tmp_path, demo_run):
    path, marker = _hostile(tmp_path, "weight")
    run = shutil.copytree(demo_run, tmp_path / "run")
    spec = json.loads((run / "teacher" / "model.json").read_text())
    shutil.rmtree(run / "teacher")
    (run / "teacher").mkdir()
    shutil.copyfile(path, run / "teacher" / "model.pt2")
    (run / "teacher" / "model.json").write_text(json.dumps({**spec, "format": "pt2"}))
    before = sorted(os.listdir(run))
    result = run_cli_here("export", run, cwd=tmp_path)
    assert_user_error(result, "would be unpickled")
    assert not marker.exists() and sorted(os.listdir(run)) == before


# --- ONNX: one self-contained file --------------------------------------------------------------

def _onnx_with_external_weight(path: Path, location: str) -> Path:
    """A MatMul classifier whose weight lies in ``location`` (relative to the model's folder)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.ones((64, 10), np.float32)
    (path.parent / location).parent.mkdir(parents=True, exist_ok=True)
    weight.tofile(path.parent / location)
    tensor = numpy_helper.from_array(weight, "W")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(weight.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["flat"]),
                               helper.make_node("MatMul", ["flat", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              [tensor, numpy_helper.from_array(np.array([1, 64], np.int64), "shape")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("location", ["weights.bin", "../outside/weights.bin"], ids=["beside", "outside"])
def test_brought_onnx_teacher_with_external_data_is_refused(tmp_path, location):
    """Beside the model it would be lost (only the .onnx is copied into the run); outside its
    folder onnxruntime refuses it already, with an error that does not say why edgekd cannot use it."""
    path = _onnx_with_external_weight(tmp_path / "teacher" / "model.onnx", location)
    with pytest.raises(ModelError) as info:
        load_teacher(str(path))
    assert f"keeps tensors in separate data files ({location})" in info.value.message


def test_run_whose_onnx_teacher_has_external_data_is_refused(tmp_path, demo_run):
    run = shutil.copytree(demo_run, tmp_path / "run")
    spec = json.loads((run / "teacher" / "model.json").read_text())
    shutil.rmtree(run / "teacher")
    _onnx_with_external_weight(run / "teacher" / "model.onnx", "weights.bin")
    (run / "teacher" / "model.json").write_text(json.dumps({**spec, "format": "onnx"}))
    with pytest.raises(ModelError) as info:
        load_source(run, "teacher")
    assert "keeps tensors in separate data files (weights.bin)" in info.value.message


@pytest.mark.parametrize("text", ["[" * 100_000, '{"arch": ' + "1" * 5000 + "}"], ids=["deep", "long-integer"])
def test_model_json_that_json_cannot_parse_is_a_model_error(tmp_path, text):
    """json.loads raises RecursionError and a plain ValueError here, not JSONDecodeError."""
    (tmp_path / "model.json").write_text(text)
    with pytest.raises(ModelError, match="is not valid JSON"):
        read_spec(tmp_path)


@pytest.mark.parametrize("text", ["9**9**9**9", "-" * 200_000 + "1", "10" * 20 + "+s0"])
def test_shape_expressions_that_would_hang_sympify_are_refused(text):
    from edgekd.checkpoint import _harmless_expression

    assert not _harmless_expression(text)
    assert _harmless_expression("s0*2 + 1")


def test_a_call_target_torch_cannot_even_look_up_is_not_an_operator():
    from edgekd.checkpoint import _torch_operator

    assert not _torch_operator("torch.classes.foo.bar")      # getattr raises RuntimeError there
    assert _torch_operator("torch.ops.aten.relu.default")
