"""edgekd export: every format of the zoo's mlp and cnn at several input shapes, run in the
real runtimes (onnxruntime, the LiteRT interpreter) against PyTorch; the bundle and its
manifest; int8 size; and each bad input as one clear error with nothing left behind."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")
pytest.importorskip("onnxruntime")

from conftest import assert_user_error, run_cli, run_cli_here  # noqa: E402
from edgekd.core.bundle import read_manifest, verify  # noqa: E402
from edgekd.core.errors import ConfigError, ExportError  # noqa: E402
from edgekd.exporters.formats import FORMATS  # noqa: E402

ALL_FORMATS = FORMATS.names()           # a new row of the table is exported and checked by these tests
MODEL_KEYS = {"file", "role", "format", "precision", "runtime", "input", "output", "parameters", "macs",
              "reference_accuracy", "full_integer", "kept_float"}
MANIFEST_KEYS = {"schema_version", "edgekd_version", "created_utc", "labels", "preprocessing", "eval",
                 "calibration", "models", "files"}


# --- a run folder, written the way edgekd distill writes it ------------------------------------------

def _data(shape, classes, n, seed):
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(1234).normal(0, 1, (classes, *shape)).astype(np.float32)
    y = np.arange(n) % classes
    x = prototypes[y] + 0.6 * rng.normal(0, 1, (n, *shape)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.int64)


def _train(arch, shape, classes, x, y, steps=40, seed=0):
    from edgekd.train.models import build

    torch.manual_seed(seed)
    model = build(arch, shape, classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model.eval()


def make_run(root: Path, student: str, shape=(1, 8, 8), teacher: str | None = None, classes: int = 4,
             n_train: int = 128, n_eval: int = 48, n_calibration: int = 64) -> Path:
    """A small run folder: student/ (+ teacher/), eval.npz (held out), calibration.npz (training)."""
    from edgekd.train.modelfile import save_model
    from edgekd.train.models import count_macs, count_parameters

    shape = tuple(shape)
    root.mkdir(parents=True, exist_ok=True)
    x_train, y_train = _data(shape, classes, n_train, seed=1)
    x_eval, y_eval = _data(shape, classes, n_eval, seed=2)
    labels = [f"class{i}" for i in range(classes)]
    layout = "NCHW" if len(shape) == 3 else "NF"  # what edgekd distill writes
    # fit_standardize's shape (per channel, or per feature) with identity statistics: the data is made
    # already standardised, as distill's eval.npz and calibration.npz are
    preprocessing = {"type": "standardize", "axis": "channel" if len(shape) == 3 else "feature",
                     "mean": [0.0] * shape[0], "std": [1.0] * shape[0]}
    for role, arch in (("student", student), ("teacher", teacher)):
        if arch is None:
            continue
        model = _train(arch, shape, classes, x_train, y_train)
        with torch.no_grad():
            accuracy = float((model(torch.from_numpy(x_eval)).argmax(1).numpy() == y_eval).mean())
        save_model(root / role, model, {
            "role": role, "arch": arch, "input": {"shape": list(shape), "layout": layout, "dtype": "float32"},
            "num_classes": classes, "labels": labels,
            "preprocessing": preprocessing,
            "parameters": count_parameters(model), "macs": count_macs(model, shape),
            "metrics": {"test_accuracy": accuracy}})
    np.savez(root / "eval.npz", x=x_eval, y=y_eval, labels=np.array(labels))
    np.savez(root / "calibration.npz", x=x_train[:n_calibration], y=y_train[:n_calibration])
    (root / "config.toml").write_text("# test run\n")
    return root


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def temp_leftovers() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("edgekd-export-")}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A tiny digits-sized run with a student and a teacher (read-only; copy it to change it)."""
    return make_run(tmp_path_factory.mktemp("export") / "run", "cnn:width=4,depth=2", (1, 8, 8),
                    teacher="cnn:width=8,depth=2", classes=10, n_train=200, n_eval=60, n_calibration=100)


# --- every format, every shape ------------------------------------------------------------------------

CASES = [
    ("mlp:hidden=16", (1, 8, 8)),
    ("mlp:hidden=16", (1, 28, 28)),
    ("mlp:hidden=16", (3, 32, 32)),
    ("mlp:hidden=16", (30,)),
    ("cnn:width=4,depth=2", (1, 8, 8)),
    ("cnn:width=4,depth=2", (1, 28, 28)),
    ("cnn:width=4,depth=2", (3, 32, 32)),
]


@pytest.mark.slow
@pytest.mark.parametrize("arch,shape", CASES, ids=[f"{a.split(':')[0]}-{'x'.join(map(str, s))}" for a, s in CASES])
def test_every_format_matches_pytorch_in_its_runtime(tmp_path, arch, shape):
    from ai_edge_litert.interpreter import Interpreter
    import onnxruntime as ort

    from edgekd.exporters import export_run

    run = make_run(tmp_path / "run", arch, shape)
    report = export_run(run, formats=ALL_FORMATS, roles=("student",), calibration_samples=32)
    bundle = run / "bundle"
    names = {"student.onnx", "student.int8.onnx", "student.tflite", "student.fp16.tflite", "student.int8.tflite"}
    assert set(os.listdir(bundle)) == names | {"eval.npz", "export.json", "manifest.json"}

    rows = {row["format"]: row for row in report["models"]}
    for fmt in ("onnx", "tflite"):  # fp32: the export itself fails above 1e-4
        assert rows[fmt]["parity"]["max_abs_diff"] <= 1e-4
        assert rows[fmt]["parity"]["top1_agreement"] == 1.0
    assert rows["tflite-fp16"]["parity"]["max_abs_diff"] < 0.05
    for fmt in ("onnx-int8", "tflite-int8"):
        assert rows[fmt]["parity"]["top1_agreement"] >= 0.8, rows[fmt]["parity"]
        assert abs(rows[fmt]["parity"]["accuracy_delta"]) <= 0.15
    for row in report["models"]:
        assert row["bytes"] == (bundle / row["file"]).stat().st_size and row["seconds"] >= 0
        assert row["parity"]["samples"] == 48

    # full-integer int8 TFLite, NCHW input kept, checked independently of the exporter
    interp = Interpreter(model_path=str(bundle / "student.int8.tflite"))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert list(inp["shape"]) == [1, *shape] and inp["quantization"][0] > 0
    assert not any(d["dtype"] in (np.float32, np.float16) for d in interp.get_tensor_details())
    fp32 = Interpreter(model_path=str(bundle / "student.tflite"))
    assert list(fp32.get_input_details()[0]["shape"]) == [1, *shape]

    # one self-contained ONNX file with a dynamic batch dimension
    assert not list(bundle.glob("*.data"))
    session = ort.InferenceSession(str(bundle / "student.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {session.get_inputs()[0].name: np.zeros((3, *shape), np.float32)})[0].shape == (3, 4)

    manifest = read_manifest(bundle)
    verify(manifest)
    assert set(manifest.manifest) == MANIFEST_KEYS
    assert set(manifest.manifest["files"]) == names | {"eval.npz", "export.json"}
    assert manifest.manifest["eval"] == {"file": "eval.npz", "samples": 48}
    assert manifest.manifest["calibration"]["samples"] == 32 and manifest.manifest["calibration"]["stratified"]
    for entry in manifest.models:
        assert set(entry) == MODEL_KEYS
        assert entry["input"]["shape"] == [1, *shape] and entry["output"]["shape"] == [1, 4]
        assert entry["input"]["layout"] == ("NCHW" if len(shape) == 3 else "NF")
    int8 = manifest.model("student", "tflite-int8")
    assert int8["precision"] == "int8" and int8["input"]["dtype"] == "int8" and int8["input"]["scale"] > 0
    assert int8["output"]["dtype"] == "int8" and isinstance(int8["output"]["zero_point"], int)


def test_default_int8_bundle_from_the_command_line(base_run, tmp_path):
    from click.testing import CliRunner

    from edgekd.app.cli import cli

    run = shutil.copytree(base_run, tmp_path / "run")
    result = CliRunner().invoke(cli, ["export", str(run), "--int8"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    bundle = run / "bundle"
    assert set(os.listdir(bundle)) == {"student.onnx", "student.int8.tflite", "teacher.onnx", "eval.npz",
                                       "export.json", "manifest.json"}
    for name in ("student.onnx", "student.int8.tflite", "teacher.onnx", "KB"):
        assert name in result.output
    report = json.loads((bundle / "export.json").read_text())
    student = {r["format"]: r for r in report["models"] if r["role"] == "student"}
    assert student["onnx"]["vs_teacher"]["file"] == "teacher.onnx"
    assert student["onnx"]["vs_teacher"]["size_ratio"] < 1
    assert student["tflite-int8"]["weight_bytes"] == student["tflite-int8"]["parameters"]
    manifest = read_manifest(bundle)
    verify(manifest)
    teacher = manifest.model("teacher", "onnx")
    assert teacher["reference_accuracy"] == json.loads((run / "teacher" / "model.json").read_text())[
        "metrics"]["test_accuracy"]
    assert manifest.manifest["labels"] == [str(i) for i in range(10)] or len(manifest.manifest["labels"]) == 10

    # --json, --out, --opset, --no-int8
    out = tmp_path / "elsewhere" / "b"
    result = CliRunner().invoke(cli, ["export", str(run), "--no-int8", "--out", str(out), "--opset", "18",
                                      "--roles", "student", "--json", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [m["file"] for m in data["models"]] == ["student.onnx"] and data["calibration"] is None
    import onnx

    opsets = {o.domain: o.version for o in onnx.load(str(out / "student.onnx")).opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == 18


@pytest.mark.parametrize("opset", [18, 27])
def test_opset_is_the_one_written(tmp_path, base_run, opset):
    import onnx

    from edgekd.exporters import export_run

    run = shutil.copytree(base_run, tmp_path / "run")
    report = export_run(run, formats=["onnx", "onnx-int8"], roles=["student"], opset=opset, calibration_samples=16)
    for row in report["models"]:
        opsets = {o.domain: o.version for o in onnx.load(str(run / "bundle" / row["file"])).opset_import}
        assert opsets.get("", opsets.get("ai.onnx")) == opset == row["details"]["opset"], (row["file"], opsets)


@pytest.mark.parametrize("opset", [7, 17, 28])
def test_opset_the_exporter_cannot_honour_is_refused(tmp_path, base_run, opset):
    """torch's dynamo exporter silently wrote opset 18 for these; now they fail before any work."""
    _bad(tmp_path, base_run, lambda run: None, ["--opset", opset], "use an opset from 18 to 27")


def test_a_file_its_runtime_cannot_run_fails_the_export(tmp_path):
    """opset 28's int8 ops made onnxruntime raise its own error: a traceback, not an export error."""
    from edgekd.exporters import get_format
    from edgekd.exporters.run import _run_in_runtime

    bad = tmp_path / "student.int8.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ExportError, match="onnxruntime cannot run student.int8.onnx"):
        _run_in_runtime(get_format("onnx-int8"), bad, np.zeros((2, 4), np.float32))


def test_tabular_layout_is_named_as_distill_names_it(tmp_path):
    from edgekd.exporters.source import Source

    def layout(shape, given=None):
        spec = {"input": {"shape": shape, **({"layout": given} if given else {})}}
        return Source("student", tmp_path, spec, "torch").layout

    assert layout([30]) == layout([30], "NF") == layout([30], "NC") == "NF"  # "NC": runs of older exporters
    assert layout([1, 8, 8]) == layout([1, 8, 8], "NCHW") == "NCHW"


@pytest.mark.slow
def test_int8_tflite_is_under_030x_fp32_for_a_100k_parameter_model(tmp_path):
    from edgekd.exporters import export_run

    run = make_run(tmp_path / "run", "mlp:hidden=64", (3, 32, 32), n_train=96, n_eval=24, n_calibration=32)
    report = export_run(run, formats=["tflite", "tflite-int8"], roles=["student"], calibration_samples=16)
    rows = {r["format"]: r for r in report["models"]}
    assert rows["tflite"]["parameters"] >= 100_000
    ratio = rows["tflite-int8"]["bytes"] / rows["tflite"]["bytes"]
    assert ratio <= 0.30, (rows["tflite-int8"]["bytes"], rows["tflite"]["bytes"])


# --- bad inputs: one error line, exit 2, nothing left behind (through the CLI's entry point, in this process)

def _bad(tmp_path, base_run, mutate, args, fragment):
    run = shutil.copytree(base_run, tmp_path / "run")
    mutate(run)
    before, temps = listing(tmp_path), temp_leftovers()
    result = run_cli_here("export", run, *args)
    assert_user_error(result, fragment)
    assert listing(tmp_path) == before
    assert temp_leftovers() <= temps
    return result


def test_missing_run_folder(tmp_path):
    result = run_cli("export", tmp_path / "nope")           # a real process: the contract as a user meets it
    assert_user_error(result, "not found")
    assert not (tmp_path / "nope").exists() and os.listdir(tmp_path) == []


def test_run_without_student(tmp_path, base_run):
    _bad(tmp_path, base_run, lambda run: shutil.rmtree(run / "student"), [], "no student model")


def test_corrupt_safetensors(tmp_path, base_run):
    def corrupt(run):
        path = run / "student" / "model.safetensors"
        path.write_bytes(path.read_bytes()[:40] + b"\x00garbage")

    _bad(tmp_path, base_run, corrupt, [], "not a readable safetensors")


def test_corrupt_pt2(tmp_path, base_run):
    def corrupt(run):
        spec = json.loads((run / "student" / "model.json").read_text())
        (run / "student" / "model.json").write_text(json.dumps({**spec, "format": "pt2"}))
        (run / "student" / "model.pt2").write_bytes(b"not a zip archive")

    _bad(tmp_path, base_run, corrupt, [], "cannot load torch.export program")


def test_model_json_not_matching_weights(tmp_path, base_run):
    def mismatch(run):
        spec_path = run / "student" / "model.json"
        spec = json.loads(spec_path.read_text())
        spec["arch"] = "cnn:width=6,depth=2"
        spec_path.write_text(json.dumps(spec))

    _bad(tmp_path, base_run, mismatch, [], "does not match the architecture")


def test_unknown_format_suggests_the_closest(tmp_path, base_run):
    result = _bad(tmp_path, base_run, lambda run: None, ["--formats", "onnx,tflite-int9"], "unknown export format")
    assert "did you mean 'tflite-int8'" in result.stderr and "tflite-fp16" in result.stderr


def test_existing_bundle_needs_force(tmp_path, base_run):
    def existing(run):
        (run / "bundle").mkdir()
        (run / "bundle" / "keep.txt").write_text("mine")

    _bad(tmp_path, base_run, existing, [], "already exists")
    assert (tmp_path / "run" / "bundle" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("out", [".", "student", "student/x", "eval.npz", ".."], ids=lambda o: o)
def test_bundle_cannot_replace_the_run_or_its_models(tmp_path, base_run, out):
    """--force once deleted the run (or its student) that the bundle was being exported from."""
    result = _bad(tmp_path, base_run, lambda run: None, ["--out", tmp_path / "run" / out, "--force"],
                  "would replace")
    assert "it is exported from" in result.stderr


def test_bundle_inside_the_run_replaces_only_an_earlier_bundle(tmp_path, base_run):
    """... or an empty folder, never a folder of the user's (issue 25 item 6: --force replaced any)."""
    from edgekd.core.errors import EdgeKDError
    from edgekd.exporters import export_run

    run = shutil.copytree(base_run, tmp_path / "run")
    (run / "bundle").mkdir()
    (run / "bundle" / "old.txt").write_text("mine")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "bundle" not in p.parts}
    with pytest.raises(EdgeKDError, match="is not an edgekd bundle folder"):
        export_run(run, formats=["onnx"], roles=["student"], force=True)
    assert os.listdir(run / "bundle") == ["old.txt"] and (run / "bundle" / "old.txt").read_text() == "mine"
    (run / "bundle" / "old.txt").unlink()
    export_run(run, formats=["onnx"], roles=["student"], force=True)        # an empty folder
    (run / "bundle" / "old.txt").write_text("put into the earlier bundle by hand")
    export_run(run, formats=["onnx"], roles=["student"], force=True)
    assert sorted(os.listdir(run / "bundle")) == ["eval.npz", "export.json", "manifest.json", "student.onnx"]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "bundle" not in p.parts} == before


def test_parity_failure_fails_the_export_and_leaves_nothing(tmp_path, base_run, monkeypatch):
    from edgekd.exporters import export_run
    from edgekd.exporters import run as export_module

    real = export_module.run_file

    def off_by_a_bit(path, x):
        logits, ins, outs = real(path, x)
        return logits + 1e-3, ins, outs

    # the runtime's answer made a little wrong where the export reads it (a fault, not a stand-in)
    monkeypatch.setattr(export_module, "run_file", off_by_a_bit)
    run = shutil.copytree(base_run, tmp_path / "run")
    before, temps = listing(tmp_path), temp_leftovers()
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_run(run, formats=["onnx"], roles=["student"])
    assert listing(tmp_path) == before and temp_leftovers() <= temps


def test_int8_check_rejects_a_float_model(tmp_path, base_run):
    """litert-torch without quant_config silently emits float: the dtype check must catch it."""
    from edgekd.exporters import export_run
    from edgekd.exporters.tflite import check_tflite

    run = shutil.copytree(base_run, tmp_path / "run")
    export_run(run, formats=["tflite"], roles=["student"])
    with pytest.raises(ExportError, match="not a int8 TFLite model"):
        check_tflite(run / "bundle" / "student.tflite", "int8", "student")
    with pytest.raises(ExportError, match="not a fp16 TFLite model"):
        check_tflite(run / "bundle" / "student.tflite", "fp16", "student")


@pytest.mark.slow
def test_converter_failure_names_the_op_and_layer(tmp_path):
    from edgekd.exporters import ExportContext
    from edgekd.exporters.onnx import export_onnx
    from edgekd.exporters.source import Source
    from edgekd.exporters.tflite import export_tflite

    class Bessel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return torch.special.bessel_j0(self.fc(x))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Bessel()
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.block(x))

    spec = {"arch": "custom", "input": {"shape": [4]}, "num_classes": 2}
    src = Source("student", tmp_path, spec, "torch", module=Net().eval())
    for exporter, tool in ((export_tflite, "litert-torch"), (export_onnx, "torch.onnx")):
        with pytest.raises(ExportError) as info:
            exporter(ExportContext(tmp_path, None, None), src, tmp_path / "x.out")
        message = info.value.message
        assert tool in message and "bessel_j0" in message and "in layer block (Bessel)" in message, message
    assert not (tmp_path / "x.out").exists()


@pytest.mark.slow
def test_an_op_without_an_int8_kernel_is_named_with_its_layer(tmp_path):
    """LiteRT has no int8 SIN: the quantizer leaves it float, and the export says which op and where."""
    from edgekd.exporters import ExportContext
    from edgekd.exporters.source import Source
    from edgekd.exporters.tflite import export_tflite_int8

    class Wave(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Linear(4 * 64, 10)

        def forward(self, x):
            return self.head(torch.sin(self.conv(x)).flatten(1))

    src = Source("student", tmp_path, {"input": {"shape": [1, 8, 8]}}, "torch", module=Wave().eval())
    calibration = np.random.default_rng(0).normal(size=(16, 1, 8, 8)).astype(np.float32)
    with pytest.raises(ExportError, match=r"not full-integer: ops left in float32: SIN \(writes '.*Wave"):
        export_tflite_int8(ExportContext(tmp_path, None, calibration), src, tmp_path / "student.int8.tflite")


def test_brought_onnx_and_pt2_teachers(tmp_path, base_run):
    from edgekd.train.modelfile import load_model
    from edgekd.exporters import export_run

    run = shutil.copytree(base_run, tmp_path / "run")
    teacher, spec = load_model(run / "teacher")
    example = torch.zeros(1, 1, 8, 8)

    # a .pt2 program (fixed batch 1): ONNX and TFLite from its module
    pt2 = tmp_path / "pt2"
    pt2.mkdir()
    torch.export.save(torch.export.export(teacher, (example,)), str(pt2 / "model.pt2"))
    shutil.rmtree(run / "teacher")
    shutil.copytree(pt2, run / "teacher")
    (run / "teacher" / "model.json").write_text(json.dumps({**spec, "format": "pt2"}))
    report = export_run(run, formats=["onnx", "tflite"], roles=["teacher"], out=tmp_path / "b1")
    assert [r["parity"]["max_abs_diff"] <= 1e-4 for r in report["models"]] == [True, True]

    # an ONNX file: copied, simplified, checked against itself in onnxruntime; no TFLite from it
    shutil.rmtree(run / "teacher")
    (run / "teacher").mkdir()
    torch.onnx.export(teacher, (example,), str(run / "teacher" / "model.onnx"), dynamo=True, external_data=False)
    (run / "teacher" / "model.json").write_text(json.dumps({**spec, "format": "onnx"}))
    report = export_run(run, out=tmp_path / "b2", calibration_samples=16)
    assert {r["file"] for r in report["models"]} == {"student.onnx", "student.int8.tflite", "teacher.onnx"}
    assert read_manifest(tmp_path / "b2").model("teacher", "onnx")["parameters"] == spec["parameters"]
    result = run_cli_here("export", run, "--formats", "tflite", "--out", tmp_path / "b3")
    assert_user_error(result, "brought ONNX model")
    assert not (tmp_path / "b3").exists()


def test_calibration_is_stratified_by_class():
    from edgekd.exporters.source import stratified_indices

    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    index = stratified_indices(y, 20, seed=0)
    assert len(index) == len(set(index)) == 20
    assert np.bincount(y[index]).tolist() == [12, 6, 2]
    assert len(stratified_indices(y, 500)) == 100
    rare = np.array([0] * 98 + [1, 2])
    assert np.bincount(rare[stratified_indices(rare, 10)]).tolist() == [8, 1, 1]  # every class at least once


@pytest.mark.parametrize("samples", [0, -1, 2.5, True])
def test_calibration_samples_are_refused_by_the_options_as_a_config_error(base_run, tmp_path, samples):
    """One check of --calibration-samples (ExportOptions'), also on the Python API's path, on a real run."""
    import edgekd

    with pytest.raises(ConfigError, match="calibration samples must be at least 1 and at most"):
        edgekd.export(base_run, out=tmp_path / "bundle", formats=["tflite-int8"], calibration_samples=samples)
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("labelled", [True, False])
def test_calibration_info_says_stratified_only_with_labels(tmp_path, labelled):
    """A calibration file without labels is sampled at random: the manifest must not claim strata."""
    from edgekd.exporters.source import load_calibration

    x = np.random.default_rng(0).normal(size=(40, 1, 4, 4)).astype(np.float32)
    labels = {"y": np.arange(40) % 4} if labelled else {}
    np.savez(tmp_path / "calibration.npz", x=x, **labels)
    chosen, info = load_calibration(tmp_path, (1, 4, 4), 8)
    assert len(chosen) == info["samples"] == 8
    assert info["stratified"] is labelled
    assert ("per_class" in info) is labelled
    if labelled:
        assert info["per_class"] == {"0": 2, "1": 2, "2": 2, "3": 2}
