"""What ``edgekd bench`` measures: a verified bundle's models or one model file, and the eval data
checked against them before any child process runs. Torch-free."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgekd.core.errors import BundleError, ConfigError, DataError
from edgekd.core import bundle as bundle_mod
from edgekd.core.bundle import BENCH_REPORT
from edgekd.core.preprocess import checked_statistics, eight_bit
from edgekd.core.schema.manifest import takes_pixels
from edgekd.device.runtimes import SUFFIXES, canonical_runtime, runtime_for, runtime_row
from edgekd.device.runtimes.base import check_sample_shape


def default_out(target: Path, kind: str) -> Path:
    return target / BENCH_REPORT if kind == "bundle" else target.with_name(target.name + ".bench.json")


def resolve_target(target: str | os.PathLike, data=None, runtime: str | None = None) -> dict:
    """What to bench: the verified bundle's models (sha256 checked first) or one model file."""
    path = Path(target)
    want = canonical_runtime(runtime) if runtime else None
    if not path.exists():
        hint = bundle_mod.missing_bundle_hint(path) if not path.suffix else None
        files = "/".join(SUFFIXES)
        raise BundleError(f"'{path}' not found (expected a bundle folder or a {files} file)", hint=hint)
    if path.is_dir():
        bundle = bundle_mod.read_manifest(path)
        bundle_mod.verify(bundle)                      # sha256 of every file, before anything runs
        files = bundle.manifest["files"]             # read_manifest: lists every model and the eval data
        models, inputs = [], {}
        for m in bundle.models:
            rt = runtime_for(m["file"], m.get("runtime"))
            if want and rt != want:
                continue
            runtime_row(rt).check_file(path / m["file"], m["file"])    # e.g. ONNX external data
            inputs[m["file"]] = _eval_shape(m)
            models.append({"file": m["file"], "path": str(path / m["file"]), "role": m.get("role", "model"),
                           "format": m.get("format"), "precision": m.get("precision"), "runtime": rt,
                           "bytes": files[m["file"]]["bytes"], "sha256": files[m["file"]]["sha256"],
                           "parameters": m.get("parameters"), "macs": m.get("macs"),
                           "reference_accuracy": m.get("reference_accuracy"),
                           # --input uint8: the statistics that give the eval samples' pixels back (worker)
                           "pixels": _pixel_statistics(bundle.manifest, m) if takes_pixels(m) else None})
        if not models:
            raise ConfigError(f"the bundle has no model for runtime '{runtime}'" if want
                              else "the bundle lists no models")
        eval_path = Path(data) if data else path / bundle.manifest["eval"]["file"]
        info = {"kind": "bundle", "path": str(path), "manifest_schema_version": bundle.manifest["schema_version"],
                "labels": bundle.manifest.get("labels"), "created_utc": bundle.manifest.get("created_utc"),
                "edgekd_version": bundle.manifest.get("edgekd_version")}
    else:
        rt = runtime_for(path, runtime)
        digest = bundle_mod.file_digest(path)
        models = [{"file": path.name, "path": str(path), "role": "model", "format": None, "precision": None,
                   "runtime": rt, **digest, "parameters": None, "macs": None, "reference_accuracy": None}]
        eval_path = Path(data) if data else None
        info, inputs = {"kind": "model", "path": str(path)}, {}     # the child checks the file's own input
    if eval_path is not None:
        if not eval_path.is_file():
            raise DataError(f"eval data '{eval_path}' not found")
        x, y = bundle_mod.load_eval_npz(eval_path)    # readable, has x and y — before any child runs
        labels = info.get("labels")
        check_eval(x, y, eval_path, inputs, len(labels) if isinstance(labels, list) else None)
        # the digest lets the gate tell a baseline measured on other eval data
        info["eval"] = {"file": str(eval_path), "samples": int(len(x)), "sample_shape": list(x.shape[1:]),
                        "sha256": bundle_mod.file_digest(eval_path)["sha256"]}
    # the eval labels stay with the target: the lost classes pair two files' predictions sample by sample
    return {"target": info, "models": models, "eval_path": str(eval_path) if eval_path else None,
            "eval_y": y.tolist() if eval_path is not None else None}


def _pixel_statistics(manifest: dict, m: dict) -> dict:
    """The statistics that give a pixel-input file's eval samples their pixels back, checked here: the
    worker would otherwise meet a hostile manifest's values in numpy, as a traceback."""
    shape = (m.get("input") or {}).get("shape")
    channels = shape[-1] if isinstance(shape, list) and len(shape) == 4 and isinstance(shape[-1], int) else 0
    pre = checked_statistics(manifest.get("preprocessing"), channels, True, f"'{m['file']}'")
    if not eight_bit(pre):
        raise BundleError(f"'{m['file']}' takes pixels, but the manifest's preprocessing is not of 8-bit images",
                          hint="export the bundle again")
    return pre


def _eval_shape(m: dict):
    """The shape of the eval samples a model takes, batch first: its manifest's, or for a file that takes
    pixels (NHWC) that of the standardised NCHW samples the worker turns into its pixels."""
    shape = (m.get("input") or {}).get("shape")
    if takes_pixels(m) and isinstance(shape, list) and len(shape) == 4:
        return [shape[0], shape[3], shape[1], shape[2]]
    return shape


def check_eval(x, y, where: Path, inputs: dict, classes: int | None = None) -> None:
    """x: a batch of finite samples that fit each model's input shape (``inputs``: file → the
    manifest's shape, batch first); y: one class index per sample, below ``classes`` when known
    (a label no model can predict, or a NaN input, would be scored as a silent miss)."""
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"'{where}': x must be a non-empty batch of samples, got shape {x.shape}",
                        hint="x is (samples, ...) like the model's input, y is (samples,)")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"'{where}': y must hold one class index per sample, shape ({len(x)},), "
                        f"got shape {y.shape}", hint="y is (samples,) of whole numbers")
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))      # one pass over the eval data
    if bad:
        raise DataError(f"'{where}': x holds {bad} values that are not "
                        "finite (NaN, infinity, or beyond float32's range)", hint="eval data must be preprocessed, finite numbers")
    check_classes(y, classes, where)

    for file, want in inputs.items():
        if isinstance(want, list) and want:
            check_sample_shape(x.shape[1:], want, file, f"'{where}'")


def check_classes(y, classes: int | None, where) -> None:
    """Every label names one of the model's ``classes`` (None: not known here)."""
    if classes is not None and len(y) and int(y.max()) >= classes:
        raise DataError(f"'{where}': y holds class {int(y.max())}, but the model has {classes} classes "
                        f"(0 to {classes - 1})", hint="is this eval data for another model or label set?")


