"""``model.json``: what rebuilds and uses one model of a run without the run. Torch-free.

A model folder holds ``model.safetensors`` (its weights; ``edgekd.train.modelfile`` reads and
writes the torch side) and this document::

    {"schema_version": 1, "role": "student", "arch": "cnn:width=8,depth=2",
     "format": "safetensors",            # or "onnx" / "pt2" for a brought teacher
     "input": {"shape": [1, 8, 8], "layout": "NCHW", "dtype": "float32"},
     "num_classes": 10, "labels": ["0", …],
     "preprocessing": {"type": "standardize", "axis": "channel", "mean": [...], "std": [...]},
     "parameters": 842, "macs": 12345, "metrics": {"test_accuracy": 0.93}}

The TypedDicts below are its shape, declared once; :func:`from_json`, every reader's check, is
derived from them (the keys every reader relies on are the required ones).
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, TypedDict

from edgekd.core.errors import ModelError
from edgekd.core.rules import Check
from edgekd.core.schema.fields import COUNT, Count, Invalid, check_shape
from edgekd.core.schema.jsonfile import json_text, read_json

MODEL_FILE = "model.json"
HINT = "the file is damaged or was edited; train or copy the model again"
#: a model spec (``edgekd.train.models``): a name and its options
Arch = Annotated[str, Check('a model spec string such as "cnn:width=8,depth=2"', lambda v: v != "")]
Shape = Annotated[list[int], Check("a list of whole numbers > 0", lambda v: v != [] and all(COUNT.test(d) for d in v))]


class _InputRelied(TypedDict):
    shape: Shape                    # one sample's, without the batch


class Input(_InputRelied, total=False):
    layout: str
    dtype: str


class _ModelRelied(TypedDict):
    arch: Arch
    input: Input
    num_classes: Count


class ModelDoc(_ModelRelied, total=False):
    schema_version: int
    role: str                       # teacher, student or simple
    format: str                     # safetensors; a brought teacher's onnx or pt2
    labels: list[str] | None        # one per class
    preprocessing: dict[str, Any]             # edgekd.core.preprocess's record
    parameters: int | None
    macs: int | None
    metrics: dict[str, Any]                   # test_accuracy, cv_accuracy_mean, cv_accuracy_std
    quantization: dict[str, Any]              # --qat-epochs: the trained int8 grids


def read(folder: Path) -> ModelDoc:
    """The model.json of ``folder``, strict JSON and checked (:func:`from_json`)."""
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"no {MODEL_FILE} in '{folder}'", hint="is this a model folder of an edgekd run?")
    return from_json(read_json(path, MODEL_FILE, ModelError), f"'{path}'")


def from_json(doc: dict[str, Any], where: str) -> ModelDoc:
    """The model.json document in ``doc``, checked against :class:`ModelDoc`; one ModelError naming
    the field otherwise."""
    try:
        check_shape(doc, ModelDoc, where, f"{where}: ")
        labels = doc.get("labels")
        if labels is not None and len(labels) != doc["num_classes"]:
            raise Invalid(f"{where}: labels must name each of the {doc['num_classes']} classes once, "
                          f"got {len(labels)} names")
    except Invalid as exc:
        raise ModelError(str(exc), hint=HINT) from None
    return typing.cast(ModelDoc, doc)


def to_json(doc: ModelDoc) -> str:
    """The file's text: checked by :func:`from_json` first (a writer's bug fails here)."""
    return json_text(from_json(dict(doc), f"the {MODEL_FILE} being written"))
