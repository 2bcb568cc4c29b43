"""Each document's reader check is derived from its declared shape (edgekd/core/schema/fields.py):
a wrong field type and a missing required field are one error of the document's kind, naming the
field, for every document; a field added to a shape is checked with no other change."""
from __future__ import annotations

import copy
import json

import pytest

from edgekd.core.errors import BundleError, ConfigError, EdgeKDError, ModelError
from edgekd.core.schema import SCHEMA_VERSION, TRAINED_ROLES, bench, cv, export, manifest, model, sweep
from edgekd.core.schema.fields import Invalid, check_shape

STATS = {"mean": 0.9, "std": 0.01, "min": 0.88, "max": 0.92}


def _split(name: str) -> dict:
    return {"split": name, "train_samples": 8, "student_samples": 8, "eval_samples": 2,
            **{role: {"accuracy": 0.9, "trained": True} for role in TRAINED_ROLES}}


CV = {"schema_version": SCHEMA_VERSION, "config": {},
      "data": {"source": "digits", "classes": 2, "labels": ["a", "b"], "input_shape": [1, 8, 8], "image": None,
               "cv_samples": 10, "test_samples": 5},
      "models": {role: {"arch": "mlp", "parameters": 10, "macs": None} for role in TRAINED_ROLES},
      "folds": [_split("fold1")], "cv": {role: STATS for role in (*TRAINED_ROLES, "distillation_gain")},
      "test": {role: 0.9 for role in TRAINED_ROLES}, "final": _split("final"), "samples_per_second": {},
      "seconds": 1.5, "world_size": 1, "device": "cpu"}
BENCH = {"schema": bench.SCHEMA, "schema_version": SCHEMA_VERSION, "models": [
    {"file": "m.onnx", "bytes": 10, "accuracy": None, "measurements": [
        {"threads": 1, "batch": 8, "skipped": "fixed batch"},
        {"threads": 1, "batch": 1, "latency_ms": {"p50": 0.5}, "memory": {"rss_peak_inference": 1 << 20}}]}]}
EXPORT = {"schema_version": SCHEMA_VERSION, "edgekd_version": "0", "created_utc": "now", "run": "r", "bundle": "b",
          "eval": {}, "calibration": None, "tolerance": {}, "seconds": 1.0, "models": [
              {"file": "m.onnx", "role": "student", "format": "onnx", "precision": "fp32", "runtime": "onnxruntime",
               "bytes": 10, "parameters": 5, "macs": None, "weight_bytes": 20, "seconds": 0.1, "parity": {},
               "details": {}, "input": {}, "output": {}}]}
MANIFEST = {"schema_version": SCHEMA_VERSION, "eval": {"file": "eval.npz"},
            "models": [{"file": "m.onnx", "role": "student", "format": "onnx"}],
            "files": {name: {"sha256": "0" * 64, "bytes": 10} for name in ("m.onnx", "eval.npz")}}
SWEEP = {"schema": sweep.SCHEMA, "schema_version": SCHEMA_VERSION, "edgekd_version": "0", "created_utc": "now",
         "teacher": "cnn", "data": "digits", "device": "here", "remote": None, "bench_settings": {}, "students": [],
         "candidates": [], "fronts": {}, "budget": False,
         "pick": {"by": "fastest", "candidate": None, "student": None, "file": None}, "seconds": 1.0, "outputs": {}}
MODEL = {"arch": "mlp", "input": {"shape": [1, 8, 8]}, "num_classes": 2}

# document: (reader, a valid document, its error kind, a wrong type (path, value, fragment), a missing field
# (path, fragment)); a path is the keys and indices down to the field
DOCUMENTS = {
    "cv.json": (cv.from_json, CV, ModelError, (("final", "student", "accuracy"), "high", "must be a number"),
                (("data", "labels"), "data has no 'labels'")),
    "bench.json": (bench.from_json, BENCH, ConfigError,
                   (("models", 0, "measurements", 1, "latency_ms", "p50"), "fast", "p50 must be a number > 0"),
                   (("models", 0, "file"), "models[0] has no 'file'")),
    "export.json": (export.ExportReport.from_json, EXPORT, BundleError,
                    (("models", 0, "details", "full_integer"), "yes", "details.full_integer must be true or false"),
                    (("models", 0, "weight_bytes"), "models[0] has no 'weight_bytes'")),
    "manifest.json": (manifest.Manifest.from_json, MANIFEST, BundleError,
                      (("models", 0, "kept_float"), "conv", "kept_float must be a list of strings or null"),
                      (("models", 0, "role"), "models[0] has no 'role'")),
    "sweep.json": (sweep.from_json, SWEEP, ConfigError,
                   (("pick", "candidate"), "0", "pick.candidate must be a whole number or null"),
                   (("candidates",), "has no 'candidates'")),
    "model.json": (model.from_json, MODEL, ModelError, (("input", "shape"), [1, 0], "must be a list of whole numbers > 0"),
                   (("num_classes",), "has no 'num_classes'")),
}


def _at(doc: dict, path: tuple) -> tuple:
    """(the object holding the field, the field's key)."""
    for key in path[:-1]:
        doc = doc[key]
    return doc, path[-1]


def _refused(name: str, doc: dict) -> EdgeKDError:
    read, _, error, _, _ = DOCUMENTS[name]
    with pytest.raises(error) as info:
        read(doc, name)
    return info.value


@pytest.mark.parametrize("name", DOCUMENTS)
def test_the_valid_document_passes_its_reader(name):
    read, doc, *_ = DOCUMENTS[name]
    read(copy.deepcopy(doc), name)          # the cases below fail for the field they break, not another


@pytest.mark.parametrize("name", DOCUMENTS)
def test_a_wrong_field_type_is_one_error_naming_the_field(name):
    _, doc, _, (path, value, fragment), _ = DOCUMENTS[name]
    doc = copy.deepcopy(doc)
    holder, key = _at(doc, path)
    holder[key] = value
    assert fragment in _refused(name, doc).message


@pytest.mark.parametrize("name", DOCUMENTS)
def test_a_missing_required_field_is_one_error_naming_it(name):
    _, doc, _, _, (path, fragment) = DOCUMENTS[name]
    doc = copy.deepcopy(doc)
    holder, key = _at(doc, path)
    del holder[key]
    assert fragment in _refused(name, doc).message


@pytest.mark.parametrize("module", [cv, sweep, model, bench])
def test_to_json_is_the_files_text_and_reads_back(module):
    name = {cv: "cv.json", sweep: "sweep.json", model: "model.json", bench: "bench.json"}[module]
    doc = copy.deepcopy(DOCUMENTS[name][1])
    text = module.to_json(doc)
    assert isinstance(text, str) and json.loads(text) == doc


def test_a_writer_of_a_damaged_document_fails_before_writing():
    with pytest.raises(ModelError, match="cv.json being written: seconds must be a number"):
        cv.to_json({**CV, "seconds": "long"})


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.update(edgekd_version=1), "edgekd_version must be a string or null, got 1"),
    (lambda d: d.update(created_utc=[]), "created_utc must be a string or null"),
    (lambda d: d.update(preprocessing="none"), "preprocessing must be an object or null"),
    (lambda d: d.update(calibration=[]), "calibration must be an object or null"),
    (lambda d: d["eval"].update(samples=0), "eval.samples must be a whole number > 0"),
    (lambda d: d["files"]["m.onnx"].update(sha256="A" * 64), "files['m.onnx'].sha256 must be 64 lowercase hex"),
    (lambda d: d["files"]["m.onnx"].update(sha256="0" * 63), "files['m.onnx'].sha256 must be 64 lowercase hex"),
    (lambda d: d["files"]["eval.npz"].update(bytes=-1), "files['eval.npz'].bytes must be a whole number >= 0"),
    (lambda d: d["files"]["eval.npz"].update(bytes=True), "files['eval.npz'].bytes must be a whole number >= 0"),
    (lambda d: d["files"]["eval.npz"].pop("bytes"), "files['eval.npz'] has no 'bytes'"),
], ids=["edgekd_version", "created_utc", "preprocessing", "calibration", "eval-samples", "sha256-upper",
        "sha256-short", "bytes-negative", "bytes-bool", "no-bytes"])
def test_every_field_of_the_manifest_is_checked_as_declared(edit, fragment):
    """The fields the manifest's reader once passed through unchecked, and the file table's rules."""
    doc = copy.deepcopy(MANIFEST)
    edit(doc)
    assert fragment in _refused("manifest.json", doc).message


def test_a_manifest_may_leave_out_its_optional_fields_and_zero_bytes_is_a_size():
    doc = copy.deepcopy(MANIFEST)
    doc["files"]["eval.npz"]["bytes"] = 0
    read = manifest.Manifest.from_json(doc, "manifest.json")
    assert read.edgekd_version is None and read.calibration is None and read.files["eval.npz"]["bytes"] == 0


def test_a_field_added_to_a_shape_is_checked_with_no_other_change():
    class WithNote(model.ModelDoc, total=False):
        note: str                                   # the one line a new field takes

    check_shape({**MODEL, "note": "fine"}, WithNote, "model.json", "")
    with pytest.raises(Invalid, match="note must be a string, got 5"):
        check_shape({**MODEL, "note": 5}, WithNote, "model.json", "")


def test_the_sweep_reads_a_students_cv_json_through_its_reader(tmp_path):
    """A damaged cv.json in a sweep's student run is one error naming the field, not a KeyError."""
    from edgekd.app.sweep.run import _row

    (tmp_path / cv.CV_FILE).write_text(json.dumps({k: v for k, v in CV.items() if k != "test"}))
    with pytest.raises(ModelError, match="has no 'test'"):
        _row("0-mlp", "mlp", tmp_path)
