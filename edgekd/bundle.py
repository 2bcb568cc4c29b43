"""The bundle: what ``export`` writes and ``bench`` reads on the device. Torch-free.

``manifest.json`` lists every file with its sha256 and size; ``verify`` refuses a
bundle whose files differ from it, so a device never benchmarks a tampered or
half-copied model. Schema (version 1)::

    {"schema_version": 1, "edgekd_version": "…", "created_utc": "…",
     "labels": [...], "preprocessing": {...},
     "eval": {"file": "eval.npz", "samples": N},
     "calibration": {"samples": 256, "source": "…", "stratified": true, "seed": 0},
     "models": [{"file": "student.int8.tflite", "role": "student",
                 "format": "tflite-int8", "precision": "int8", "runtime": "tflite",
                 "input": {"shape": [1, 1, 8, 8], "layout": "NCHW", "dtype": "int8",
                           "scale": 0.05, "zero_point": -3},
                 "output": {"shape": [1, 10], "dtype": "int8", "scale": …, "zero_point": …},
                 "parameters": 842, "macs": 12345, "reference_accuracy": 0.93}, …],
     "files": {"student.int8.tflite": {"sha256": "…", "bytes": 1234}, …}}

A bundle is a closed folder. ``read_manifest`` refuses a manifest that is not strict JSON (NaN,
Infinity, a repeated key), too large or too deeply nested, or breaks the schema: every name in
``files``, ``models[].file`` and ``eval.file`` is a plain relative path inside the folder, and every
model and the eval data are listed in ``files``. ``verify`` then hashes every listed file, which
must be a plain file: no symlinks at all (the exporter never writes one, and a link's target
depends on the machine it is copied to, so it is not the file that was hashed where the bundle was
made). ONNX models must be self-contained (:func:`refuse_external_data`).
"""
from __future__ import annotations

import hashlib
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np

from .errors import BundleError, ConfigError
from .schema.jsonfile import check_version, read_json

MANIFEST = "manifest.json"
EVAL_FILE = "eval.npz"
#: a real manifest is a few kB with a handful of models, nested 5 levels deep
MAX_MANIFEST_BYTES = 1 << 20
MAX_MODELS = 64
NO_SYMLINKS = "a bundle holds plain files only (export never writes symlinks)"


def file_digest(path: Path) -> dict:
    """sha256 and size of one file, read in chunks (models can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def digest_files(bundle_dir: Path, names: list[str]) -> dict:
    return {name: file_digest(bundle_dir / name) for name in names}


@dataclass
class Bundle:
    root: Path
    manifest: dict

    @property
    def models(self) -> list[dict]:
        return self.manifest["models"]

    def model(self, role: str, fmt: str) -> dict | None:
        return next((m for m in self.models if m["role"] == role and m["format"] == fmt), None)

    def path(self, name: str) -> Path:
        return self.root / name

    def load_eval(self) -> tuple[np.ndarray, np.ndarray]:
        return load_eval_npz(self.root / self.manifest["eval"]["file"])


def load_eval_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(x float32, y int64) from an eval.npz; never unpickles."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise BundleError(f"'{path}' is a single .npy array, not an .npz archive of x and y")
        with data:
            if "x" not in data or "y" not in data:
                raise BundleError(f"'{path}' has no arrays 'x' and 'y'",
                                  hint=f"it holds: {', '.join(data.files) or 'nothing'}")
            return data["x"].astype(np.float32), _class_indices(data["y"], path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise BundleError(f"cannot read '{path}': {exc}") from None


def _class_indices(y: np.ndarray, path: Path) -> np.ndarray:
    """y as int64; labels that are not whole numbers ≥ 0 would be truncated into wrong classes."""
    whole = y.dtype.kind in "iu" or (y.dtype.kind == "f" and bool(np.all(np.isfinite(y) & (y == np.round(y)))))
    if not whole or (y.size and y.min() < 0):
        raise BundleError(f"'{path}': y must hold class indices (whole numbers >= 0), got dtype {y.dtype}"
                          + (f", minimum {y.min()}" if whole else ""))
    return y.astype(np.int64)


def read_manifest(bundle_dir: str | Path) -> Bundle:
    """The bundle's manifest, validated: every rule of the module docstring, or one BundleError."""
    root = Path(bundle_dir)
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"bundle folder '{root}' not found",
                          hint="create one with: edgekd export RUN_DIR --out BUNDLE_DIR")
    if path.is_symlink():
        raise BundleError(f"'{path}' is a symlink; {NO_SYMLINKS}")
    if not path.is_file():
        raise BundleError(f"'{root}' is not a bundle: no {MANIFEST}")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"'{path}' is larger than {MAX_MANIFEST_BYTES // 1024} kB; a manifest is a few kB",
                          hint="export the bundle again")
    manifest = read_json(path, "manifest", BundleError)
    _check_manifest(manifest, path)
    return Bundle(root, manifest)


def _check_manifest(manifest: dict, path: Path) -> None:
    check_version(manifest, f"'{path}'", "manifest", BundleError)
    for key in ("models", "files", "eval"):
        if key not in manifest:
            raise BundleError(f"'{path}' lacks '{key}'")
    files = _check_files(manifest["files"], path)
    _check_models(manifest["models"], files, path)
    ev = manifest["eval"]
    if not isinstance(ev, dict):
        raise BundleError(f"'{path}': eval must be an object with a 'file', got {type(ev).__name__}")
    _listed(_plain_name(ev.get("file"), "eval.file", path), "eval.file", files, path)
    labels = manifest.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(s, str) for s in labels)):
        raise BundleError(f"'{path}': labels must be a list of strings or null")


def _check_files(files, path: Path) -> dict:
    if not isinstance(files, dict):
        raise BundleError(f"'{path}': files must be an object of file name -> {{sha256, bytes}}, "
                          f"got {type(files).__name__}")
    for name, entry in files.items():
        at = f"files['{name}']"
        _plain_name(name, "a name in files", path)
        if not isinstance(entry, dict):
            raise BundleError(f"'{path}': {at} must be an object with sha256 and bytes")
        digest, size = entry.get("sha256"), entry.get("bytes")
        if not (isinstance(digest, str) and re.fullmatch("[0-9a-f]{64}", digest)):
            raise BundleError(f"'{path}': {at}.sha256 must be 64 lowercase hex digits, got {digest!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BundleError(f"'{path}': {at}.bytes must be a whole number >= 0, got {size!r}")
    return files


def _check_models(models, files: dict, path: Path) -> None:
    if not isinstance(models, list) or not models:
        raise BundleError(f"'{path}': models must be a non-empty list: the manifest lists no models")
    if len(models) > MAX_MODELS:
        raise BundleError(f"'{path}' lists {len(models)} models; a bundle holds at most {MAX_MODELS}")
    seen_files, seen_kinds = set(), set()
    for i, m in enumerate(models):
        at = f"models[{i}]"
        if not isinstance(m, dict):
            raise BundleError(f"'{path}': {at} must be an object (file, role, format, …), got {m!r}")
        name = _listed(_plain_name(m.get("file"), f"{at}.file", path), f"{at}.file", files, path)
        for key, kinds, what in (("role", str, "a string"), ("format", str, "a string"),
                                 ("runtime", (str, type(None)), "a string or null"),
                                 ("precision", (str, type(None)), "a string or null"),
                                 ("input", (dict, type(None)), "an object or null"),
                                 ("output", (dict, type(None)), "an object or null")):
            if not isinstance(m.get(key), kinds):
                raise BundleError(f"'{path}': {at}.{key} must be {what}, got {m.get(key)!r}")
        if name in seen_files or (m["role"], m["format"]) in seen_kinds:
            raise BundleError(f"'{path}': {at} is a duplicate model entry (file '{name}', role "
                              f"'{m['role']}', format '{m['format']}'): each file and each (role, format) "
                              "appears once")
        seen_files.add(name)
        seen_kinds.add((m["role"], m["format"]))


def _plain_name(name, field: str, path: Path) -> str:
    """A relative POSIX path that stays inside the bundle: no absolute path or drive, no '..',
    no backslash (a separator on Windows), no empty or '.' part, no control character."""
    if not isinstance(name, str) or not name:
        raise BundleError(f"'{path}': {field} must be a non-empty file name, got {name!r}")
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
        raise BundleError(f"'{path}': {field} '{name}' {problem}", hint="export the bundle again")
    return name


def _listed(name: str, field: str, files: dict, path: Path) -> str:
    if name not in files:
        raise BundleError(f"'{path}': {field} '{name}' is not listed in the manifest's files, so its "
                          "sha256 cannot be checked", hint="export the bundle again")
    return name


def verify(bundle: Bundle) -> None:
    """Every listed file is a plain file (no symlink on the way) inside the bundle, with the
    manifest's size and sha256. Called before anything reads a bundle file."""
    real_root = bundle.root.resolve()
    for name, expected in bundle.manifest["files"].items():
        path = bundle.root / name
        if not os.path.lexists(path):
            raise BundleError(f"bundle file '{name}' is missing from '{bundle.root}'")
        try:
            real = path.resolve()
        except (RuntimeError, OSError):     # a symlink loop
            real = None
        if real != real_root.joinpath(*name.split("/")):
            raise BundleError(f"bundle file '{name}' is a symlink or lies in a symlinked folder; {NO_SYMLINKS}")
        if not path.is_file():
            raise BundleError(f"bundle file '{name}' in '{bundle.root}' is not a file")
        actual = file_digest(path)
        if actual != {"sha256": expected["sha256"], "bytes": expected["bytes"]}:
            raise BundleError(f"'{name}' does not match the manifest (sha256 or size differs)",
                              hint="the file was modified or copied incompletely; export the bundle again")


# -- outputs -----------------------------------------------------------------------------------

def refuse_overwriting_inputs(target: str | os.PathLike, outputs: dict, data=None) -> None:
    """No output may be a file bench reads: the bundle folder, its manifest and listed files (or
    the single model file), and the eval data. Compared by file identity, so a symlink or a hard
    link to one of them is refused too. ``outputs``: option name → path (None: not written)."""
    if not any(outputs.values()):
        return
    target = Path(target)
    inputs = [target]
    if target.is_dir():
        bundle = read_manifest(target)
        inputs += [target / MANIFEST, *(target / name for name in bundle.manifest["files"])]
    if data is not None:
        inputs.append(Path(data))
    ids = {_identity(p): p for p in inputs if p.exists()}
    for option, out in outputs.items():
        if out and Path(out).exists() and _identity(Path(out)) in ids:
            hit = ids[_identity(Path(out))]
            what = "the bundle folder" if hit == target and target.is_dir() else f"'{hit}'"
            raise ConfigError(f"{option} '{out}' is {what}, which this bench reads: an output may never "
                              "replace a file of the bundle (or the model or eval data) it measures",
                              hint="write it outside the bundle, e.g. --out bench.json")


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino
