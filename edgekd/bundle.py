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
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BundleError

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
EVAL_FILE = "eval.npz"


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
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data or "y" not in data:
                raise BundleError(f"'{path}' has no arrays 'x' and 'y'",
                                  hint=f"it holds: {', '.join(data.files) or 'nothing'}")
            return data["x"].astype(np.float32), _class_indices(data["y"], path)
    except (OSError, ValueError, EOFError) as exc:
        raise BundleError(f"cannot read '{path}': {exc}") from None


def _class_indices(y: np.ndarray, path: Path) -> np.ndarray:
    """y as int64; labels that are not whole numbers ≥ 0 would be truncated into wrong classes."""
    whole = y.dtype.kind in "iu" or (y.dtype.kind == "f" and bool(np.all(np.isfinite(y) & (y == np.round(y)))))
    if not whole or (y.size and y.min() < 0):
        raise BundleError(f"'{path}': y must hold class indices (whole numbers >= 0), got dtype {y.dtype}"
                          + (f", minimum {y.min()}" if whole else ""))
    return y.astype(np.int64)


def read_manifest(bundle_dir: str | Path) -> Bundle:
    root = Path(bundle_dir)
    path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"bundle folder '{root}' not found",
                          hint="create one with: edgekd export RUN_DIR --out BUNDLE_DIR")
    if not path.is_file():
        raise BundleError(f"'{root}' is not a bundle: no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"'{path}' is not valid JSON: {exc}") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int):
        raise BundleError(f"'{path}' has no schema_version")
    if version > SCHEMA_VERSION:
        raise BundleError(f"'{path}' has schema version {version}; this edgekd reads up to {SCHEMA_VERSION}",
                          hint="upgrade edgekd on this device")
    for key in ("models", "files", "eval"):
        if key not in manifest:
            raise BundleError(f"'{path}' lacks '{key}'")
    return Bundle(root, manifest)


def verify(bundle: Bundle) -> None:
    """Every listed file exists with the manifest's size and sha256."""
    for name, expected in bundle.manifest["files"].items():
        path = bundle.root / name
        if not path.is_file():
            raise BundleError(f"bundle file '{name}' is missing from '{bundle.root}'")
        actual = file_digest(path)
        if actual != {"sha256": expected["sha256"], "bytes": expected["bytes"]}:
            raise BundleError(f"'{name}' does not match the manifest (sha256 or size differs)",
                              hint="the file was modified or copied incompletely; export the bundle again")
