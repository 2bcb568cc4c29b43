"""A bundle is a closed, verified folder: every name stays inside it, every file bench reads is
listed and hashed first (models, eval data, no ONNX external data), no bench output lands on a file
of it, a baseline of another bundle is refused, and what bench writes is strict JSON.

Hostile bundles are copies of the shared ``demo_bundle`` with their manifest.json edited (and
re-hashed where a rule, not the hash, must be what refuses them).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error, run_cli
from edgekd.device.bench import gate
from edgekd.device.bench.run import run_bench
from edgekd.device.bench.target import resolve_target
from edgekd.device.bench.outputs import write_bench_outputs
from edgekd.core.bundle import file_digest, read_manifest, verify
from edgekd.device.runtimes.onnx_external import refuse_external_data
from edgekd.core.errors import BundleError, ConfigError

FAST = dict(threads=[1], runs=5, min_seconds=0, warmup=0, warmup_seconds=0)
FAST_CLI = ["--threads", "1", "--runs", "5", "--min-seconds", "0", "--warmup", "0", "--warmup-seconds", "0"]


def copy_bundle(demo_bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(demo_bundle, dst, ignore=shutil.ignore_patterns("bench.json"))
    return dst


def edit_manifest(bundle: Path, edit) -> dict:
    doc = json.loads((bundle / "manifest.json").read_text())
    edit(doc)
    (bundle / "manifest.json").write_text(json.dumps(doc))
    return doc


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def first_onnx(doc: dict) -> dict:
    return next(m for m in doc["models"] if m["file"].endswith(".onnx"))


# -- names stay inside the bundle ----------------------------------------------------------------

def _outside_model(kind: str):
    """A model entry naming a real, correctly hashed file outside the bundle."""
    def edit(bundle: Path, doc: dict) -> None:
        m = first_onnx(doc)
        evil = bundle.parent / "outside" / "evil.onnx"
        evil.parent.mkdir(exist_ok=True)
        shutil.copyfile(bundle / m["file"], evil)
        name = {"parent": "../outside/evil.onnx", "absolute": str(evil)}[kind]
        doc["files"][name] = file_digest(evil)
        m["file"] = name
    return edit


def _passwd(bundle: Path, doc: dict) -> None:
    doc["files"]["../../../etc/passwd"] = file_digest(Path("/etc/passwd"))
    first_onnx(doc)["file"] = "../../../etc/passwd"


def _outside_eval(bundle: Path, doc: dict) -> None:
    shutil.copyfile(bundle / "eval.npz", bundle.parent / "eval.npz")
    doc["files"]["../eval.npz"] = file_digest(bundle.parent / "eval.npz")
    doc["eval"]["file"] = "../eval.npz"


def _renamed(name: str):
    def edit(bundle: Path, doc: dict) -> None:
        m = first_onnx(doc)
        doc["files"][name] = doc["files"].pop(m["file"])
        m["file"] = name
    return edit


@pytest.mark.parametrize("edit, fragment", [
    pytest.param(_outside_model("parent"), "'..' part", id="parent-folder"),
    pytest.param(_outside_model("absolute"), "absolute path", id="absolute"),
    pytest.param(_passwd, "'..' part", id="etc-passwd"),
    pytest.param(_outside_eval, "'../eval.npz' has a '..' part", id="eval-outside"),
    pytest.param(_renamed("..\\student.onnx"), "backslash", id="backslash"),
    pytest.param(_renamed("./student.onnx"), "'.' part", id="dot-part"),
    pytest.param(_renamed("C:student.onnx"), "absolute path", id="windows-drive"),
])
def test_every_name_in_the_manifest_stays_inside_the_bundle(demo_bundle, tmp_path, edit, fragment):
    bundle = copy_bundle(demo_bundle, tmp_path)
    edit_manifest(bundle, lambda doc: edit(bundle, doc))
    with pytest.raises(BundleError, match=re.escape(fragment)):
        resolve_target(bundle)


def test_a_symlinked_bundle_file_is_refused_even_with_the_right_hash(demo_bundle, tmp_path):
    """No symlinks at all: export writes none, and a link's target is whatever the device has there."""
    bundle = copy_bundle(demo_bundle, tmp_path)
    name = first_onnx(read_manifest(bundle).manifest)["file"]
    outside = tmp_path / "outside.onnx"
    os.replace(bundle / name, outside)
    os.symlink(outside, bundle / name)
    with pytest.raises(BundleError, match=f"'{name}' is a symlink"):
        verify(read_manifest(bundle))


def test_a_symlinked_manifest_is_refused(demo_bundle, tmp_path):
    bundle = copy_bundle(demo_bundle, tmp_path)
    os.replace(bundle / "manifest.json", tmp_path / "manifest.json")
    os.symlink(tmp_path / "manifest.json", bundle / "manifest.json")
    with pytest.raises(BundleError, match="is a symlink"):
        read_manifest(bundle)


def test_eval_data_must_be_listed_so_its_hash_is_checked(demo_bundle, tmp_path):
    """Unlisted, eval.npz (the accuracy a CI gate reads) could be swapped without a hash mismatch."""
    bundle = copy_bundle(demo_bundle, tmp_path)
    edit_manifest(bundle, lambda doc: doc["files"].pop(doc["eval"]["file"]))
    with pytest.raises(BundleError, match="eval.file 'eval.npz' is not listed"):
        resolve_target(bundle)


# -- ONNX external data --------------------------------------------------------------------------

@pytest.mark.parametrize("listed", [True, False], ids=["data-listed", "data-unlisted"])
def test_onnx_external_data_is_refused(demo_bundle, tmp_path, listed):
    """Its data file would be read by onnxruntime past the manifest; export writes self-contained files."""
    import onnx

    bundle = copy_bundle(demo_bundle, tmp_path)
    doc = read_manifest(bundle).manifest
    name = first_onnx(doc)["file"]
    model = onnx.load(str(bundle / name))
    onnx.save_model(model, str(bundle / name), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=name + ".data", size_threshold=0)
    assert (bundle / (name + ".data")).is_file()

    def rehash(doc):
        doc["files"][name] = file_digest(bundle / name)
        if listed:
            doc["files"][name + ".data"] = file_digest(bundle / (name + ".data"))
    edit_manifest(bundle, rehash)
    with pytest.raises(BundleError, match=f"'{name}' keeps tensors in separate data files"):
        resolve_target(bundle)


def test_the_external_data_scan_agrees_with_onnx_on_nested_tensors(tmp_path):
    """A tensor in a Constant node inside an If branch (a subgraph attribute) is found too."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    const = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones(64, np.float32), "w"))
    branch = helper.make_graph([const], "branch", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [64])])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=branch)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])])
    model = helper.make_model(graph)
    onnx.save_model(model, str(tmp_path / "inline.onnx"))
    refuse_external_data(tmp_path / "inline.onnx", "inline.onnx")          # self-contained: fine
    tensor = model.graph.node[0].attribute[0].g.node[0].attribute[0].t       # then_branch's Constant value
    (tmp_path / "ext.data").write_bytes(tensor.raw_data)
    onnx.external_data_helper.set_external_data(tensor, "ext.data", offset=0, length=len(tensor.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    onnx.save_model(model, str(tmp_path / "ext.onnx"))
    with pytest.raises(BundleError, match=r"separate data files \(ext.data\)"):   # the file it names, too
        refuse_external_data(tmp_path / "ext.onnx", "ext.onnx")


# -- malformed manifests -------------------------------------------------------------------------

def _nested(depth: int) -> str:
    return '{"schema_version": 1, "x": ' + "[" * depth + "]" * depth + "}"


def _second_onnx_like_first(doc):
    m = dict(first_onnx(doc), file="copy.onnx")
    doc["files"]["copy.onnx"] = doc["files"][first_onnx(doc)["file"]]
    doc["models"].append(m)


@pytest.mark.parametrize("edit, fragment", [
    pytest.param(lambda d: d.update(schema_version=True), "schema_version must be a whole number", id="version-true"),
    pytest.param(lambda d: d.update(schema_version=0), "schema_version must be a whole number", id="version-zero"),
    pytest.param(lambda d: d.update(schema_version="1"), "schema_version must be a whole number", id="version-str"),
    pytest.param(lambda d: d.update(files=list(d["files"])), "files must be an object", id="files-list"),
    pytest.param(lambda d: d["files"]["eval.npz"].__delitem__("sha256"), r"files\['eval.npz'\] has no 'sha256'",
                 id="no-sha256"),
    pytest.param(lambda d: d["files"]["eval.npz"].update(sha256="x" * 64), "64 lowercase hex", id="sha256-not-hex"),
    pytest.param(lambda d: d["files"]["eval.npz"].update(bytes="12"), r"\.bytes must be a whole", id="bytes-str"),
    pytest.param(lambda d: d["files"].update({"": d["files"]["eval.npz"]}), "non-empty file name", id="empty-name"),
    pytest.param(lambda d: d["models"].__setitem__(0, "student.onnx"), r"models\[0\] must be an object",
                 id="model-string"),
    pytest.param(lambda d: d["models"][0].update(file=5), r"models\[0\].file must be a non-empty", id="file-int"),
    pytest.param(lambda d: d["models"][0].update(input="1x64"), r"models\[0\].input must be an object",
                 id="input-string"),
    pytest.param(lambda d: d.update(models=[]), "lists no models", id="no-models"),
    pytest.param(lambda d: d.update(models=d["models"] * 100), "at most 64", id="too-many-models"),
    pytest.param(lambda d: d["models"].append(dict(d["models"][0])), "duplicate model entry", id="duplicate-file"),
    pytest.param(_second_onnx_like_first, "duplicate model entry", id="duplicate-role-format"),
    pytest.param(lambda d: d.update(eval="eval.npz"), "eval must be an object", id="eval-string"),
    pytest.param(lambda d: d["eval"].__delitem__("file"), "eval has no 'file'", id="eval-no-file"),
    pytest.param(lambda d: d["eval"].update(file=""), "eval.file must be a non-empty", id="eval-empty-file"),
    pytest.param(lambda d: d.update(labels="0123"), "labels must be a list", id="labels-string"),
    pytest.param(lambda d: json.dumps(d).replace('"samples": ', '"samples": NaN, "x": ', 1), "NaN is not",
                 id="nan"),
    pytest.param(lambda d: json.dumps(d).replace('"samples": ', '"samples": -Infinity, "x": ', 1),
                 "-Infinity is not", id="infinity"),
    pytest.param(lambda d: json.dumps(d).replace('"samples": ', '"samples": 1e999, "x": ', 1), "not finite",
                 id="float-overflow"),
    pytest.param(lambda d: json.dumps(d).replace('"samples": ', '"samples": 1, "samples": ', 1),
                 "'samples' appears twice", id="repeated-key"),
    pytest.param(lambda d: _nested(100_000), "nested too deeply", id="recursion"),
    pytest.param(lambda d: _nested(40), "more than 32 levels", id="deep"),
    pytest.param(lambda d: json.dumps({**d, "pad": "x" * (1 << 20)}), "larger than 1024 kB", id="huge"),
])
def test_a_malformed_manifest_is_one_bundle_error_naming_the_field(demo_bundle, tmp_path, edit, fragment):
    (tmp_path / "b").mkdir()
    doc = json.loads((demo_bundle / "manifest.json").read_text())
    doc = edit(doc) or doc
    (tmp_path / "b" / "manifest.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(BundleError, match=fragment):
        read_manifest(tmp_path / "b")


def test_the_exported_manifest_passes_every_rule(demo_bundle):
    verify(read_manifest(demo_bundle))
    assert resolve_target(demo_bundle)["target"]["eval"]["sha256"] == file_digest(demo_bundle / "eval.npz")["sha256"]


# -- outputs never land on a bundle file ---------------------------------------------------------

def _link_to_manifest(bundle: Path) -> Path:
    link = bundle.parent / "innocent.json"
    os.symlink(bundle / "manifest.json", link)
    return link


OUTPUT_TARGETS = {"manifest": lambda b: b / "manifest.json", "eval": lambda b: b / "eval.npz",
                  "model": lambda b: b / first_onnx(read_manifest(b).manifest)["file"], "folder": lambda b: b,
                  "symlink": _link_to_manifest}


@pytest.mark.parametrize("option", ["out", "markdown", "plot"])
@pytest.mark.parametrize("where", ["manifest", "eval", "model", "folder", "symlink"])
def test_a_bench_output_into_the_bundle_is_refused_before_measuring(demo_bundle, tmp_path, option, where):
    bundle = copy_bundle(demo_bundle, tmp_path)
    out = OUTPUT_TARGETS[where](bundle)
    before, calls = snapshot(bundle), []
    with pytest.raises(ConfigError, match="which this bench reads"):
        run_bench(bundle, **{option: out}, progress=lambda *a: calls.append(a), **FAST)
    assert calls == [] and snapshot(bundle) == before


@pytest.mark.parametrize("option", ["junit", "save_baseline", "step_summary"])
@pytest.mark.parametrize("where", ["manifest", "model", "symlink"])
def test_a_gate_output_into_the_bundle_is_refused_before_measuring(demo_bundle, tmp_path, option, where):
    bundle = copy_bundle(demo_bundle, tmp_path)
    out = OUTPUT_TARGETS[where](bundle)
    before, calls = snapshot(bundle), []
    with pytest.raises(ConfigError, match="which this bench reads"):
        gate.bench_and_check(bundle, budget=None, **{option: out}, progress=lambda *a: calls.append(a),
                             out=tmp_path / "bench.json", **FAST)
    assert calls == [] and snapshot(bundle) == before


def test_the_gate_refuses_to_write_into_the_bundle_of_a_finished_bench(bench_result, tmp_path):
    """gate.write_gate_outputs itself refuses, whoever calls it after a bench."""
    result, bundle = bench_result
    before = snapshot(bundle)
    with pytest.raises(ConfigError, match="which this bench reads"):
        gate.write_gate_outputs(gate.GateReport(), result, save_baseline=bundle / "manifest.json")
    assert snapshot(bundle) == before


# -- a baseline of another bundle ----------------------------------------------------------------

@pytest.fixture(scope="module")
def bench_result(demo_bundle, tmp_path_factory) -> tuple[dict, Path]:
    """One real bench of a copy of the demo bundle: (bench.json document, the bundle)."""
    bundle = copy_bundle(demo_bundle, tmp_path_factory.mktemp("safety"))
    return run_bench(bundle, out=bundle.parent / "base.json", **FAST), bundle


def _other_eval(bundle: Path, doc: dict) -> None:
    with np.load(bundle / "eval.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["y"] = np.roll(arrays["y"], 1)                   # same size and shape: only the digest tells
    np.savez(bundle / "eval.npz", **arrays)
    doc["files"]["eval.npz"] = file_digest(bundle / "eval.npz")


def _swapped_roles(bundle: Path, doc: dict) -> None:
    roles = {m["file"]: m["role"] for m in doc["models"]}
    by_role = {("student", "onnx"): "teacher", ("teacher", "onnx"): "student"}
    for m in doc["models"]:
        m["role"] = by_role.get((m["role"], m["format"]), m["role"])
    assert roles != {m["file"]: m["role"] for m in doc["models"]}


@pytest.mark.parametrize("edit, fragment", [
    pytest.param(_other_eval, "its eval data differs (sha256", id="eval-digest"),
    pytest.param(lambda b, d: d.update(labels=[f"class {i}" for i in range(len(d["labels"]))]),
                 "its labels differ", id="labels"),
    pytest.param(_swapped_roles, "(onnx) there and a", id="roles"),
])
def test_a_baseline_of_another_bundle_is_refused_before_measuring(bench_result, tmp_path, edit, fragment):
    _, bundle = bench_result
    other = copy_bundle(bundle, tmp_path)
    edit_manifest(other, lambda doc: edit(other, doc))
    calls = []
    with pytest.raises(ConfigError, match=re.escape("the baseline is a bench of another bundle: ") + ".*"
                       + re.escape(fragment)):
        gate.bench_and_check(other, baseline=bundle.parent / "base.json", progress=lambda *a: calls.append(a),
                             out=tmp_path / "bench.json", **FAST)
    assert calls == []


def test_a_baseline_of_the_same_bundle_compares_and_an_old_one_gets_a_note(bench_result):
    result, _ = bench_result
    assert gate.check(result, baseline=result).checks           # same bundle: compared, no refusal
    old = json.loads(json.dumps(result))
    del old["target"]["eval"]["sha256"]                         # written before eval digests existed
    report_ = gate.check(result, baseline=old)
    assert report_.checks and any("no digest of its eval data" in n for n in report_.notes)


# -- strict JSON and budgets that can never pass -------------------------------------------------

def _strict(path: Path) -> dict:
    def refuse(text):
        raise AssertionError(f"{text} in {path}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_bench_json_and_a_saved_baseline_are_strict_json(bench_result, tmp_path):
    result, _ = bench_result
    doc = json.loads(json.dumps(result))
    doc["models"][0]["accuracy"] = float("nan")
    doc["comparisons"] = [{"speedup": float("inf")}]
    write_bench_outputs(doc, out=tmp_path / "bench.json")
    gate.write_gate_outputs(gate.GateReport(), doc, save_baseline=tmp_path / "baseline.json")
    for path in (tmp_path / "bench.json", tmp_path / "baseline.json"):
        saved = _strict(path)
        assert saved["models"][0]["accuracy"] is None and saved["comparisons"] == [{"speedup": None}]


def test_a_baseline_holding_nan_is_refused(bench_result, tmp_path):
    result, _ = bench_result
    (tmp_path / "nan.json").write_text(json.dumps(result).replace('"accuracy": ', '"accuracy": NaN, "x": ', 1))
    with pytest.raises(ConfigError, match="NaN is not a number"):
        gate.load_baseline(tmp_path / "nan.json")


@pytest.mark.parametrize("section, key, bad, edge, fragment", [
    ("student", "min_accuracy_percent", 1000, 100, "min_accuracy_percent must be at most 100"),
    ("student", "max_accuracy_drop_vs_teacher_points", 101, 100, "must be at most 100"),
    ("baseline", "max_accuracy_drop_points", 150, 0, "max_accuracy_drop_points must be at most 100"),
    ("student", "max_p50_ms", 0, 0.001, "max_p50_ms must be > 0"),
    ("teacher", "max_bytes", 0, 1, "max_bytes must be > 0"),
    ("student", "max_peak_memory_mib", 0.0, 0.5, "can never pass"),
])
def test_a_budget_limit_that_can_never_pass_or_means_nothing_is_refused(section, key, bad, edge, fragment):
    with pytest.raises(ConfigError, match=fragment):
        gate.validate_budget({section: {key: bad}})
    gate.validate_budget({section: {key: edge}})            # the edge of the range is a fine limit


# -- the CLI contract ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["model-outside", "out-into-bundle", "impossible-budget"])
def test_cli_refuses_with_one_error_line(demo_bundle, tmp_path, case):
    bundle = copy_bundle(demo_bundle, tmp_path)
    args, fragment = ["bench", bundle, *FAST_CLI], {
        "model-outside": "'..' part", "out-into-bundle": "which this bench reads",
        "impossible-budget": "min_accuracy_percent must be at most 100"}[case]
    if case == "model-outside":
        edit_manifest(bundle, lambda doc: _outside_model("parent")(bundle, doc))
    elif case == "out-into-bundle":
        args += ["--out", bundle / "manifest.json"]
    else:
        (tmp_path / "b.toml").write_text("[student]\nmin_accuracy_percent = 1000\n")
        args += ["--budget", tmp_path / "b.toml"]
    before = snapshot(bundle)
    assert_user_error(run_cli(*args), fragment)
    assert snapshot(bundle) == before
