"""``manifest.json``: what ``export`` writes into a bundle and ``bench`` reads on the device.
Torch-free and numpy-free. Schema (version 1)::

    {"schema_version": 1, "edgekd_version": "…", "created_utc": "…",
     "labels": [...], "preprocessing": {...},
     "eval": {"file": "eval.npz", "samples": N},
     "calibration": {"samples": 256, "source": "…", "stratified": true, "seed": 0},
     "models": [{"file": "student.int8.tflite", "role": "student",
                 "format": "tflite-int8", "precision": "int8", "runtime": "tflite",
                 "input": {"shape": [1, 1, 8, 8], "layout": "NCHW", "dtype": "int8",
                           "scale": 0.05, "zero_point": -3},
                 "output": {"shape": [1, 10], "dtype": "int8", "scale": …, "zero_point": …},
                 "parameters": 842, "macs": 12345, "reference_accuracy": 0.93,
                 "full_integer": true, "kept_float": []}, …],
     "files": {"student.int8.tflite": {"sha256": "…", "bytes": 1234}, …}}

A model's ``input`` says what the file takes. Without ``values`` (any other value reads the same):
the samples standardised with ``preprocessing`` (``(x − mean) / std``), in the model's ``layout`` (NCHW for
images), quantized with ``scale``/``zero_point`` where the dtype is an integer one, as eval.npz holds them.
With ``"values": "pixels"`` (``export --input uint8``): the raw 0..255 pixels of an image after the
recorded image transform (``preprocessing.image``: resize, crop, colour), ``"layout": "NHWC"``,
``"dtype": "uint8"`` (the tensor's own type; ``scale`` 1 and ``zero_point`` 0 where it is quantized): the
standardisation is inside the model. ``edgekd.core.preprocess.to_pixels`` turns eval.npz's samples into
those pixels (exactly: they were made from 8-bit images)::

    "input": {"shape": [1, 8, 8, 1], "layout": "NHWC", "dtype": "uint8", "scale": 1.0, "zero_point": 0,
              "values": "pixels"}

The dataclasses and TypedDicts below are the document's shape, declared once: ``Manifest.from_json``
checks it (``fields.check_document``: the fields without a default are required, every field holds
its declared type and rule), then what is not a type, with one BundleError naming the field: every
name in ``files``, ``models[].file`` and ``eval.file`` is a plain relative path inside the bundle
folder; every model and the eval data are listed in ``files`` (so their sha256 is checked before
anything reads them); one to 64 models, each file and each (role, format) once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import PureWindowsPath
from typing import Annotated, Any, TypedDict

from edgekd.core.errors import BundleError
from edgekd.core.rules import Check
from edgekd.core.schema.fields import WHOLE, Count, check_document
from edgekd.core.schema.jsonfile import Serialized

MANIFEST = "manifest.json"
EVAL_FILE = "eval.npz"
MAX_MODELS = 64
#: a model entry's ``input.values`` for a file that takes raw pixels (see above); absent: standardised values
PIXELS = "pixels"


def takes_pixels(entry: dict[str, Any]) -> bool:
    """Whether a manifest model entry (as JSON) takes raw pixels: ``input.values`` is PIXELS."""
    spec = entry.get("input")
    return isinstance(spec, dict) and spec.get("values") == PIXELS

FILE_NAME = Check("a non-empty file name", lambda v: isinstance(v, str) and v != "")
SHA256 = Check("64 lowercase hex digits", lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) is not None)
SIZE = Check("a whole number >= 0", lambda v: WHOLE.test(v) and v >= 0)


class FileEntry(TypedDict):
    sha256: Annotated[str, SHA256]
    bytes: Annotated[int, SIZE]


class _EvalFile(TypedDict):
    file: Annotated[str, FILE_NAME]


class EvalData(_EvalFile, total=False):
    samples: Count


@dataclass(frozen=True)
class ModelEntry:
    """One model file of the bundle; ``input``/``output`` hold shape, dtype and int8 scale/zero point."""
    file: Annotated[str, FILE_NAME]
    role: str
    format: str
    precision: str | None = None
    runtime: str | None = None
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    parameters: int | None = None
    macs: int | None = None
    reference_accuracy: float | None = None      # PyTorch's on the held-out split
    # int8 files: false where --keep-float left layers (kept_float, as named by export.json's
    # layer_error) in float or the input/output is float (onnx-int8); null for float files
    full_integer: bool | None = None
    kept_float: list[str] | None = None


# keyword-only, so that an optional field (a default of None) can stand before a required one and the
# written document keeps its order of keys
@dataclass(frozen=True, kw_only=True)
class Manifest(Serialized):
    schema_version: int
    edgekd_version: str | None = None
    created_utc: str | None = None
    labels: list[str] | None = None
    preprocessing: dict[str, Any] | None = None
    eval: EvalData
    calibration: dict[str, Any] | None = None  # None: no calibrated format in the bundle
    models: list[ModelEntry]
    files: dict[str, FileEntry]                # every file but the manifest

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str) -> "Manifest":
        """The manifest in ``doc`` (parsed by ``jsonfile``); ``where`` names the file in errors."""
        check_document(doc, cls, where, "manifest", BundleError)
        files: dict[str, FileEntry] = doc["files"]
        for name in files:
            _plain_name(name, "a name in files", where)
        models = _check_models(doc["models"], files, where)
        _listed(_plain_name(doc["eval"]["file"], "eval.file", where), "eval.file", files, where)
        return cls(**{**{f.name: doc[f.name] for f in fields(cls) if f.name in doc}, "models": models})


def _check_models(models: list[dict[str, Any]], files: dict[str, FileEntry], where: str) -> list[ModelEntry]:
    """The entries (their fields already checked): one to MAX_MODELS, each listed in ``files``, none twice."""
    if not models:
        raise BundleError(f"{where}: models must be a non-empty list: the manifest lists no models")
    if len(models) > MAX_MODELS:
        raise BundleError(f"{where} lists {len(models)} models; a bundle holds at most {MAX_MODELS}")
    entries: list[ModelEntry] = []
    for i, m in enumerate(models):
        at = f"models[{i}].file"
        _listed(_plain_name(m["file"], at, where), at, files, where)
        entry = ModelEntry(**{f.name: m[f.name] for f in fields(ModelEntry) if f.name in m})
        if any(entry.file == e.file or (entry.role, entry.format) == (e.role, e.format) for e in entries):
            raise BundleError(f"{where}: models[{i}] is a duplicate model entry (file '{entry.file}', role "
                              f"'{entry.role}', format '{entry.format}'): each file and each (role, format) "
                              "appears once")
        entries.append(entry)
    return entries


def _plain_name(name: str, field: str, where: str) -> str:
    """A relative POSIX path that stays inside the bundle: no absolute path or drive, no '..',
    no backslash (a separator on Windows), no empty or '.' part, no control character."""
    problem = None
    if not FILE_NAME.test(name):          # a key of files: a string, but maybe ""
        raise BundleError(f"{where}: {field} must be {FILE_NAME.rule}, got {name!r}")
    if name.startswith("/") or PureWindowsPath(name).drive:
        problem = "is an absolute path; a bundle names its files relative to its folder"
    elif "\\" in name or any(ord(c) < 32 for c in name):
        problem = "holds a backslash or a control character"
    elif ".." in name.split("/"):
        problem = "has a '..' part: it would leave the bundle folder"
    elif any(part in ("", ".") for part in name.split("/")):
        problem = "has an empty or '.' part; write each name one way only"
    elif name == MANIFEST:
        problem = "is the manifest itself"
    if problem:
        raise BundleError(f"{where}: {field} '{name}' {problem}", hint="export the bundle again")
    return name


def _listed(name: str, field: str, files: dict[str, FileEntry], where: str) -> str:
    if name not in files:
        raise BundleError(f"{where}: {field} '{name}' is not listed in the manifest's files, so its "
                          "sha256 cannot be checked", hint="export the bundle again")
    return name
