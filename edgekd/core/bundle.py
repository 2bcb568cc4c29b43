"""The bundle: what ``export`` writes and ``bench`` reads on the device. Torch-free.

``manifest.json`` (schema: :mod:`edgekd.core.schema.manifest`) lists every file with its sha256 and
size; ``verify`` refuses a bundle whose files differ from it, so a device never benchmarks a
tampered or half-copied model.

A bundle is a closed folder. ``read_manifest`` refuses a manifest that is not strict JSON (NaN,
Infinity, a repeated key), too large or too deeply nested, or breaks the schema (names that
leave the folder, models or eval data not listed in ``files``). ``verify`` then hashes every
listed file, which must be a plain file: no symlinks at all (the exporter never writes one, and a
link's target depends on the machine it is copied to, so it is not the file that was hashed where
the bundle was made). ONNX models must be self-contained (``runtimes.onnx_external``).
"""
from __future__ import annotations

import hashlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.core.errors import BundleError, ConfigError
from edgekd.core.npzfile import read_arrays
from edgekd.core.schema.cv import CV_FILE
from edgekd.core.schema.jsonfile import read_json
from edgekd.core.schema.manifest import MANIFEST, Manifest

#: a real manifest is a few kB with a handful of models, nested 5 levels deep
MAX_MANIFEST_BYTES = 1 << 20
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
    document: Manifest

    @property
    def manifest(self) -> dict:
        """The manifest as JSON (what bench reports and tests compare)."""
        return self.document.as_dict()

    @property
    def models(self) -> list[dict]:
        return self.manifest["models"]

    def model(self, role: str, fmt: str) -> dict | None:
        return next((m for m in self.models if m["role"] == role and m["format"] == fmt), None)


def load_eval_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(x float32, y int64) from an eval.npz; never unpickles."""
    arrays = read_arrays(path, ("x", "y"), BundleError, "save it with np.savez(path, x=..., y=...)")
    if arrays["x"].dtype.kind not in "biuf":
        raise BundleError(f"'{path}': x must hold numbers, got dtype {arrays['x'].dtype}",
                          hint="save the preprocessed samples as a numeric array")
    with np.errstate(over="ignore"):     # beyond float32 becomes inf: check_eval's one error, no warning
        return arrays["x"].astype(np.float32), _class_indices(arrays["y"], path)


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
        raise BundleError(f"bundle folder '{root}' not found", hint=missing_bundle_hint(root))
    if path.is_symlink():
        raise BundleError(f"'{path}' is a symlink; {NO_SYMLINKS}")
    if not path.is_file():
        raise BundleError(f"'{root}' is not a bundle: no {MANIFEST}", hint=_bundle_hint(root))
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"'{path}' is larger than {MAX_MANIFEST_BYTES // 1024} kB; a manifest is a few kB",
                          hint="export the bundle again")
    return Bundle(root, Manifest.from_json(read_json(path, "manifest", BundleError, MAX_MANIFEST_BYTES), f"'{path}'"))


def missing_bundle_hint(root: Path) -> str:
    """How to make the missing bundle ``root``: export the run folder it would sit in (distill's run,
    ``root`` its default bundle folder or another --out), else some run into it."""
    run = root.parent
    if (run / CV_FILE).is_file():
        out = "" if root.name == "bundle" else f" --out {shlex.quote(str(root))}"
        return f"the run '{run}' is not exported yet: edgekd export {shlex.quote(str(run))}{out}"
    return f"create it with: edgekd export RUN_DIR --out {shlex.quote(str(root))}"


def _bundle_hint(root: Path) -> str | None:
    """Where the bundle likely is when ``root`` is a run folder (distill's, with export's default bundle
    inside it, or not exported yet)."""
    if (root / "bundle" / MANIFEST).is_file():
        return f"did you mean '{root / 'bundle'}'? (the bundle export wrote into this run folder)"
    if (root / CV_FILE).is_file():
        return f"'{root}' is a run folder: export it first (edgekd export {shlex.quote(str(root))}), then use its bundle"
    return None


def verify(bundle: Bundle) -> None:
    """Every listed file is a plain file (no symlink on the way) inside the bundle, with the
    manifest's size and sha256. Called before anything reads a bundle file."""
    real_root = bundle.root.resolve()
    for name, expected in bundle.document.files.items():
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

#: the one file bench may write into the bundle it measures: its report, the default of its --out
BENCH_REPORT = "bench.json"


def refuse_overwriting_inputs(targets: list, outputs: dict, data=None, report: str | None = None) -> None:
    """No output may land in a bundle bench reads: ``targets[0]``, the one measured, or another (the
    old bundle of ``--against``), anywhere in its folder (paths resolved, so neither ``..`` nor a
    symlinked folder leads in). The one exception is the measured bundle's own ``bench.json`` as the
    option ``report`` (bench's --out, whose default it is). Nor may an output be a file bench reads:
    a listed file, a single model file or the eval data, compared by file identity, so a symlink or
    a hard link to one is refused too. ``outputs``: option name → path (None: not written)."""
    written = {option: Path(out) for option, out in outputs.items() if out}
    if not written:
        return
    targets = [Path(t) for t in targets]
    own_report = os.path.realpath(targets[0] / BENCH_REPORT)
    for option, out in written.items():
        where = os.path.realpath(out)
        for target in targets:
            folder = os.path.realpath(target)
            inside = target.is_dir() and os.path.commonpath([where, folder]) == folder
            if inside and not (target == targets[0] and option == report and where == own_report):
                raise _refusal(option, out, f"in the bundle '{target}'")
    inputs = [path for target in targets for path in read_files(target)] + ([Path(data)] if data else [])
    ids = {_identity(p): p for p in inputs if p.exists()}
    for option, out in written.items():
        if out.exists() and _identity(out) in ids:
            raise _refusal(option, out, f"'{ids[_identity(out)]}'")


def read_files(target: Path) -> list[Path]:
    """What bench reads of a target: the single model file, or the bundle's manifest and listed files."""
    if not target.is_dir():
        return [target]
    return [target / MANIFEST, *(target / name for name in read_manifest(target).document.files)]


def _refusal(option: str, out: Path, where: str) -> ConfigError:
    return ConfigError(f"{option} '{out}' is {where}, which this bench reads: an output may never land in "
                       "a bundle (or on the model or eval data) it measures",
                       hint=f"write it outside the bundle, e.g. {option} {out.name or 'bench.json'}")


def _identity(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino
