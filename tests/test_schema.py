"""The documents between stages have one schema module each (edgekd/core/schema/): what export and
distill write passes their readers' checks, the README documents exactly the fields the modules
define, and the schema modules stay free of torch and numpy."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from readme_doc import readme_objects

from edgekd.core.errors import BundleError, ModelError
from edgekd.core.schema import cv, export, manifest
from edgekd.core.schema.jsonfile import read_json



def readme_keys(section: str, entries: str = "models[]") -> tuple[set[str], set[str]]:
    """(top-level keys, keys of one ``entries`` object) of the jsonc example under ``### `section```."""
    objects = readme_objects(section)
    return objects[""][0], objects[entries][0]


def names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("section, document, entry", [
    ("manifest.json", manifest.Manifest, manifest.ModelEntry),
    ("export.json", export.ExportReport, export.ExportedFile),
])
def test_the_readme_documents_exactly_the_fields_of_the_schema(section, document, entry):
    top, models = readme_keys(section)
    assert top == names(document)
    assert models == names(entry)


def test_the_readme_documents_exactly_the_keys_of_cv_json():
    top, fold = readme_keys("cv.json", entries="folds[]")
    assert top == set(cv.Document.__annotations__)
    assert fold == set(cv.Split.__annotations__)
    assert readme_keys("cv.json", entries="data")[1] == set(cv.Data.__annotations__)


def test_the_readme_key_reader_sees_a_missing_and_an_extra_key():
    """The check above could pass vacuously if the reader found nothing: it finds what is there."""
    top, models = readme_keys("manifest.json")
    assert {"schema_version", "files", "models"} <= top and {"file", "reference_accuracy"} <= models
    assert "sha256" not in top and "zero_point" not in models       # nested deeper: not an entry's key


def test_what_export_writes_passes_its_readers(demo_bundle):
    doc = read_json(demo_bundle / export.EXPORT_REPORT, "export report", BundleError)
    report = export.ExportReport.from_json(doc, "export.json")
    assert report.as_dict() == doc                                  # every field written is a field read
    written = json.loads((demo_bundle / manifest.MANIFEST).read_text())
    assert manifest.Manifest.from_json(written, "manifest.json").as_dict() == written


def test_what_distill_writes_passes_its_reader(demo_run):
    doc = read_json(demo_run / cv.CV_FILE, "cv.json", ModelError)
    assert cv.from_json(doc, "cv.json") == doc


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.update(schema_version=2), "schema version 2"),
    (lambda d: d.pop("models"), "has no 'models'"),
    (lambda d: d["models"][0].update(bytes="12"), "models[0].bytes must be a whole number"),
    (lambda d: d["models"][0].update(bytes=True), "models[0].bytes must be a whole number"),
    (lambda d: d["models"][0].pop("parity"), "models[0] has no 'parity'"),
    (lambda d: d.update(calibration=[]), "calibration must be an object or null"),
])
def test_a_damaged_export_report_is_one_bundle_error(demo_bundle, edit, fragment):
    doc = json.loads((demo_bundle / export.EXPORT_REPORT).read_text())
    edit(doc)
    with pytest.raises(BundleError) as info:
        export.ExportReport.from_json(doc, "export.json")
    assert fragment in info.value.message


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.update(schema_version=0), "schema_version must be a whole number"),
    (lambda d: d.pop("final"), "has no 'final'"),
    (lambda d: d.update(folds=[]), "at least one fold"),
    (lambda d: d["cv"]["student"].update(mean="0.9"), "cv.student.mean must be a number"),
    (lambda d: d["folds"][0]["simple"].pop("accuracy"), "folds[0].simple has no 'accuracy'"),
    (lambda d: d["test"].pop("teacher"), "test has no 'teacher'"),
])
def test_a_damaged_cv_document_is_one_model_error(demo_run, edit, fragment):
    doc = json.loads((demo_run / cv.CV_FILE).read_text())
    edit(doc)
    with pytest.raises(ModelError) as info:
        cv.from_json(doc, "cv.json")
    assert fragment in info.value.message


def test_the_schema_modules_and_the_bundle_reader_import_neither_torch_nor_numpy():
    code = ("import sys; import edgekd.core.schema.manifest, edgekd.core.schema.export, edgekd.core.schema.cv; "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'schema'; "
            "import edgekd.core.bundle; assert 'torch' not in sys.modules, 'bundle'")
    subprocess.run([sys.executable, "-c", code], check=True)
