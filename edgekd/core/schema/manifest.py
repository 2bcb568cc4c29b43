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

``Manifest.from_json`` refuses a document that breaks the schema, with one BundleError naming the
field: each model entry's fields hold the types :class:`ModelEntry` declares (the entries' fields
without a default are required); every name in ``files``, ``models[].file`` and ``eval.file`` is a plain relative path inside
the bundle folder, and every model and the eval data are listed in ``files`` (so their sha256 is
checked before anything reads them).
"""
from __future__ import annotations

import re
import typing
from dataclasses import dataclass, fields
from pathlib import PureWindowsPath
from typing import Any, Callable

from edgekd.core.errors import BundleError
from edgekd.core.schema.fields import Invalid, check_shape, check_value
from edgekd.core.schema.jsonfile import Serialized, check_version

MANIFEST = "manifest.json"
EVAL_FILE = "eval.npz"
MAX_MODELS = 64
REQUIRED = ("models", "files", "eval")


@dataclass(frozen=True)
class ModelEntry:
    """One model file of the bundle; ``input``/``output`` hold shape, dtype and int8 scale/zero point."""
    file: str
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


@dataclass(frozen=True)
class Manifest(Serialized):
    schema_version: int
    edgekd_version: str | None
    created_utc: str | None
    labels: list[str] | None
    preprocessing: dict[str, Any] | None
    eval: dict[str, Any]                      # {"file": …, "samples": …}
    calibration: dict[str, Any] | None        # None: no calibrated format in the bundle
    models: list[ModelEntry]
    files: dict[str, dict[str, Any]]          # name -> {"sha256", "bytes"}; every file but the manifest

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str) -> "Manifest":
        """The manifest in ``doc`` (parsed by ``jsonfile``); ``where`` names the file in errors."""
        version = check_version(doc, where, "manifest", BundleError)
        for key in REQUIRED:
            if key not in doc:
                raise BundleError(f"{where} lacks '{key}'")
        files = _check_files(doc["files"], where)
        models = _check_models(doc["models"], files, where)
        ev = doc["eval"]
        if not isinstance(ev, dict):
            raise BundleError(f"{where}: eval must be an object with a 'file', got {type(ev).__name__}")
        _listed(_plain_name(ev.get("file"), "eval.file", where), "eval.file", files, where)
        labels = doc.get("labels")
        _checked(lambda: check_value(labels, typing.get_type_hints(cls)["labels"], "labels"), where)
        return cls(version, doc.get("edgekd_version"), doc.get("created_utc"), labels, doc.get("preprocessing"),
                   ev, doc.get("calibration"), models, files)


def _check_files(files: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(files, dict):
        raise BundleError(f"{where}: files must be an object of file name -> {{sha256, bytes}}, "
                          f"got {type(files).__name__}")
    for name, entry in files.items():
        at = f"files['{name}']"
        _plain_name(name, "a name in files", where)
        if not isinstance(entry, dict):
            raise BundleError(f"{where}: {at} must be an object with sha256 and bytes")
        digest, size = entry.get("sha256"), entry.get("bytes")
        if not (isinstance(digest, str) and re.fullmatch("[0-9a-f]{64}", digest)):
            raise BundleError(f"{where}: {at}.sha256 must be 64 lowercase hex digits, got {digest!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BundleError(f"{where}: {at}.bytes must be a whole number >= 0, got {size!r}")
    return files


def _check_models(models: Any, files: dict[str, Any], where: str) -> list[ModelEntry]:
    if not isinstance(models, list) or not models:
        raise BundleError(f"{where}: models must be a non-empty list: the manifest lists no models")
    if len(models) > MAX_MODELS:
        raise BundleError(f"{where} lists {len(models)} models; a bundle holds at most {MAX_MODELS}")
    entries: list[ModelEntry] = []
    for i, m in enumerate(models):
        entry = _check_entry(m, f"models[{i}]", files, where)
        if any(entry.file == e.file or (entry.role, entry.format) == (e.role, e.format) for e in entries):
            raise BundleError(f"{where}: models[{i}] is a duplicate model entry (file '{entry.file}', role "
                              f"'{entry.role}', format '{entry.format}'): each file and each (role, format) "
                              "appears once")
        entries.append(entry)
    return entries


def _check_entry(m: Any, at: str, files: dict[str, Any], where: str) -> ModelEntry:
    if not isinstance(m, dict):
        raise BundleError(f"{where}: {at} must be an object (file, role, format, …), got {m!r}")
    _listed(_plain_name(m.get("file"), f"{at}.file", where), f"{at}.file", files, where)
    _checked(lambda: check_shape(m, ModelEntry, at, f"{at}."), where)
    return ModelEntry(**{f.name: m[f.name] for f in fields(ModelEntry) if f.name in m})


def _checked(check: Callable[[], None], where: str) -> None:
    """A check of the fields' declared types: what it finds is one BundleError naming ``where``."""
    try:
        check()
    except Invalid as exc:
        raise BundleError(f"{where}: {exc}") from None


def _plain_name(name: Any, field: str, where: str) -> str:
    """A relative POSIX path that stays inside the bundle: no absolute path or drive, no '..',
    no backslash (a separator on Windows), no empty or '.' part, no control character."""
    if not isinstance(name, str) or not name:
        raise BundleError(f"{where}: {field} must be a non-empty file name, got {name!r}")
    problem = None
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


def _listed(name: str, field: str, files: dict[str, Any], where: str) -> str:
    if name not in files:
        raise BundleError(f"{where}: {field} '{name}' is not listed in the manifest's files, so its "
                          "sha256 cannot be checked", hint="export the bundle again")
    return name

