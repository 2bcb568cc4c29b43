"""The CLI's contract for bad and hostile input, over every command: exactly one ``error:`` line
(plus an optional ``hint:``), exit 2, no traceback, and nothing written or changed on disk.

Each case builds its files in a fresh working folder (copies of the shared real run and bundle,
edited), lists the folder (every path with its sha256), runs ``edgekd`` there and lists it again:
the two listings must be equal. Every case runs through the CLI's entry point in this process
(``run_cli_here``); a few, one per command and per kind of error, also in a real subprocess, as a
user starts it.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import types
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from conftest import assert_user_error, run_cli, run_cli_here


class Workspace:
    """The working folder of one case and the ways its cases make their files."""

    def __init__(self, root: Path, shared: Callable[[str], Path]):
        #: ``shared("demo_run")``: the session's fixture, built (a minute) only when a case copies it
        self.root, self._shared = root, shared
        #: a file outside the working folder that no case may open (a link out of a folder points here)
        self.private = root.parent / "private" / "secret.png"
        self.private.parent.mkdir(exist_ok=True)
        self.private.write_bytes(_png(8, 8))

    def bundle(self) -> Path:
        shutil.copytree(self._shared("demo_bundle"), self.root / "bundle")
        return self.root / "bundle"

    def run(self) -> Path:
        shutil.copytree(self._shared("demo_run"), self.root / "run")
        return self.root / "run"

    def image_bundle(self) -> Path:
        """A copy of the bundle of a run on image files (digits as PNG, 12×12 gray): predict's pictures."""
        shutil.copytree(self._shared("image_bundle"), self.root / "images")
        return self.root / "images"

    def picture(self, name: str, mode: str = "L") -> Path:
        """A 12×12 picture in ``mode`` (L, RGB, RGBA …) at ``name``."""
        from PIL import Image

        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new(mode, (12, 12)).save(path)
        return path

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def npz(self, name: str, **arrays) -> Path:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return self.write(name, buf.getvalue())

    def manifest(self, edit: Callable[[dict], object]) -> Path:
        """A bundle whose manifest.json ``edit`` changed (in place, or replaced by what it returns)."""
        bundle = self.bundle()
        doc = json.loads((bundle / "manifest.json").read_text())
        doc = edit(doc) or doc
        (bundle / "manifest.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
        return bundle

    def eval_npz(self, x=None, y=None) -> Path:
        """A copy of the bundle's eval data with x or y replaced."""
        bundle = self.bundle()
        with np.load(bundle / "eval.npz") as data:
            arrays = {"x": data["x"], "y": data["y"]}
        arrays["x"] = arrays["x"] if x is None else x(arrays["x"])
        arrays["y"] = arrays["y"] if y is None else y(arrays["y"])
        return self.npz("other-eval.npz", **arrays)


def listing(root: Path) -> dict[str, str]:
    """Every path under ``root`` → its sha256 (files), 'dir' or its link target."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[key] = "dir"
        else:
            out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@dataclass
class Case:
    id: str
    setup: Callable[[Workspace], list]     # makes the files, returns the command line
    fragment: str                           # a piece of the error line or hint


CASES: list[Case] = []


def case(id: str, fragment: str):
    def register(setup):
        CASES.append(Case(id, setup, fragment))
        return setup
    return register


def args(*items):
    """A case whose command line needs no files."""
    return lambda ws: list(items)


def _png(width: int, height: int) -> bytes:
    """A valid grayscale PNG of one colour: tiny on disk, ``width × height`` pixels when decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = zlib.compress(b"\0" * (width + 1) * height, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@functools.lru_cache(maxsize=1)
def _inflating_npz() -> bytes:
    """An npz of 11 MB whose x inflates to 2.5 GB of zeros (once per session: about 3 s)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False,
                                                          "shape": (9_765_625, 1, 8, 8)})
            for _ in range(40):
                member.write(bytes(62_500_000))
        archive.writestr("y.npy", _npy(np.zeros(1, np.int64)))
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _float32_header(shape: tuple[int, ...]) -> bytes:
    """An .npy header declaring float32 data of ``shape``, whatever follows it."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _bench_json_with_a_model_twice() -> str:
    model = {"file": "student.onnx", "bytes": 1000, "accuracy": 0.9, "measurements": []}
    return json.dumps({"schema": "edgekd.bench", "schema_version": 1, "models": [model, model]})


def _digits_npz(ws: Workspace, name: str = "d.npz", **extra) -> Path:
    rng = np.random.default_rng(0)
    return ws.npz(name, x=rng.random((60, 4, 4), dtype=np.float32), y=np.arange(60) % 3, **extra)


def _csv(ws: Workspace, text: str) -> list:
    ws.write("t.csv", text)
    return ["distill", "--data", "csv:t.csv", "--out", "out"]


def _distill(*options) -> Callable[[Workspace], list]:
    return args("distill", *options, "--out", "out")


# -- distill: options --------------------------------------------------------------------------

for _id, _options, _fragment in [
    ("unknown-source", ["--data", "imagenet"], "unknown data source"),
    ("source-argument", ["--data", "digits:foo"], "takes no argument"),
    ("label-column-not-csv", ["--label-column", "y"], "csv"),
    ("unknown-model", ["--student", "resnett"], "unknown"),
    ("unknown-model-number", ["--teacher", "resnet9"], "did you mean 'resnet8'"),
    ("unknown-model-option", ["--student", "cnn:widht=4"], "width"),
    ("model-option-not-int", ["--student", "cnn:width=abc"], "width"),
    ("repeated-model-option", ["--student", "cnn:width=4,width=9"], "width"),
    ("model-too-large", ["--teacher", "cnn:width=1000000000"], "large"),
    ("temperature-zero", ["--temperature", "0"], "temperature"),
    ("temperature-inf", ["--temperature", "inf"], "temperature"),
    ("alpha-above-one", ["--alpha", "2"], "alpha"),
    ("lr-nan", ["--lr", "nan"], "learning rate"),
    ("folds-zero", ["--folds", "0"], "folds"),
    ("folds-not-int", ["--folds", "abc"], "--folds"),
    ("student-fraction-zero", ["--student-fraction", "0"], "student fraction"),
    ("test-fraction-one", ["--test-fraction", "1"], "test fraction"),
    ("test-fraction-tiny", ["--test-fraction", "0.001"], "test"),
    ("seed-negative", ["--seed", "-1"], "seed"),
    ("batch-size-zero", ["--batch-size", "0"], "batch size"),
    ("epochs-zero", ["--teacher-epochs", "0"], "teacher epochs"),
    ("unknown-device", ["--device", "tpu"], "--device"),
    ("config-missing", ["--config", "missing.toml"], "not found"),
    ("config-is-folder", ["--config", "."], "directory"),
    ("teacher-from-missing", ["--teacher-from", "missing.onnx"], "not found"),
    ("image-size-zero", ["--image-size", "0"], "--image-size"),
    ("image-size-not-a-number", ["--image-size", "3,x"], "N or H,W"),
    ("channels-two", ["--channels", "2"], "--channels"),
    ("normalize-unknown", ["--normalize", "imagnet"], "did you mean 'imagenet'"),
    ("normalize-imagenet-gray", ["--normalize", "imagenet"], "RGB"),
    ("unknown-loss", ["--loss", "dkdd"], "did you mean 'dkd'"),
    ("unknown-loss-option", ["--loss", "dkd:betta=2"], "did you mean 'beta'"),
    ("loss-option-negative", ["--loss", "dkd:beta=-1"], "must be >= 0"),
    ("loss-option-not-key-value", ["--loss", "fitnet:100"], "dkd:beta=8"),
    ("unknown-optimizer", ["--optimizer", "adamm"], "did you mean 'adam"),
    ("feature-loss-with-qat", ["--loss", "fitnet", "--qat-epochs", "1"], "forward_features"),
]:
    CASES.append(Case(f"distill-{_id}", _distill(*_options), _fragment))


@case("distill-config-not-toml", "not valid toml")
def _(ws):
    ws.write("c.toml", "folds = = 3\n")
    return ["distill", "--config", "c.toml", "--out", "out"]


@case("distill-config-table", "table")
def _(ws):
    ws.write("c.toml", "[train]\nfolds = 3\n")
    return ["distill", "--config", "c.toml", "--out", "out"]


@case("distill-config-deeply-nested", "nested too deeply")
def _(ws):
    ws.write("c.toml", "a = " + _nested(5000) + "\n")
    return ["distill", "--config", "c.toml", "--out", "out"]


@case("distill-config-unknown-key", "fold")
def _(ws):
    ws.write("c.toml", "fold = 3\n")
    return ["distill", "--config", "c.toml", "--out", "out"]


@case("distill-config-wrong-type", "folds")
def _(ws):
    ws.write("c.toml", 'folds = "three"\n')
    return ["distill", "--config", "c.toml", "--out", "out"]


@case("distill-config-names-rmtree", "names python code to run as the student")
def _(ws):
    ws.write("victim/keep.txt", "mine\n")             # the listing shows it deleted, were rmtree called
    ws.write("c.toml", f'student = "shutil:rmtree:path={ws.root / "victim"}"\n')
    return ["distill", "--config", "c.toml", "--out", "out"]


@case("distill-config-names-file-factory", "names python code to run as the teacher")
def _(ws):
    ws.write("evil.py", "open('ran', 'w').close()\n\ndef make(num_classes):\n    pass\n")   # its import: a marker
    ws.write("c.toml", 'teacher = "evil.py:make"\n')
    return ["distill", "--config", "c.toml", "--out", "out"]


@case("distill-factory-reexports-rmtree", "(it comes from 'shutil')")
def _(ws):
    ws.write("victim/keep.txt", "mine\n")
    ws.write("net.py", "from shutil import rmtree as make  # noqa\n")
    return ["distill", "--student", f"net.py:make:path={ws.root / 'victim'}", "--out", "out"]


@case("distill-factory-sys-exit", "exit0.py' raised systemexit: 0")
def _(ws):
    ws.write("exit0.py", "import sys\n\ndef make(num_classes):\n    sys.exit(0)\n")
    return ["distill", "--student", "exit0.py:make", "--out", "out"]


@case("distill-factory-sys-exit-3", "exit3.py' raised systemexit: 3")
def _(ws):
    ws.write("exit3.py", "import sys\n\ndef make(num_classes):\n    sys.exit(3)\n")
    return ["distill", "--teacher", "exit3.py:make", "--out", "out"]


@case("distill-model-file-exits-on-import", "exits.py' fails to import: systemexit: 0")
def _(ws):
    ws.write("exits.py", "import sys\nsys.exit(0)\n")
    return ["distill", "--student", "exits.py:make", "--out", "out"]


@case("distill-feature-loss-with-onnx-teacher", "gives its logits only")
def _(ws):
    return ["distill", "--teacher-from", ws.bundle() / "teacher.onnx", "--loss", "fitnet", "--out", "out"]


@case("distill-augment-on-tabular-data", "tabular")
def _(ws):
    return _csv(ws, "a,b,label\n" + "".join(f"{i},{i % 3},{'xyz'[i % 3]}\n" for i in range(60))) + ["--augment", "flip"]


@case("distill-teacher-from-garbage-onnx", "onnx")
def _(ws):
    ws.write("t.onnx", os.urandom(256))
    return ["distill", "--teacher-from", "t.onnx", "--out", "out"]


@case("distill-teacher-from-pt2-from-file", "uses operator aten.from_file.default")
def _(ws):
    """A .pt2 whose graph overwrites a file through a shared mapping (the harness sees it changed)."""
    from test_pt2_safety import _program, _reproduction

    ws.write("outside/notes.txt", b"the user's own notes, not edgekd's to touch\n")
    _program(ws.root / "evil.pt2", _reproduction("write", ws.root / "outside"))
    return ["distill", "--teacher-from", "evil.pt2", "--out", "out"]


@case("distill-teacher-from-pt2-input-write", "to write in place to a graph input")
def _(ws):
    from test_pt2_safety import T, _node, _program

    _program(ws.root / "evil.pt2", [_node("aten.relu_.default", "evil", self=T("x"))])
    return ["distill", "--teacher-from", "evil.pt2", "--out", "out"]


# -- distill: data files -----------------------------------------------------------------------

@case("distill-npz-missing", "not found")
def _(ws):
    return ["distill", "--data", "npz:missing.npz", "--out", "out"]


@case("distill-npz-empty-file", "npz")
def _(ws):
    ws.write("d.npz", b"")
    return ["distill", "--data", "npz:d.npz", "--out", "out"]


@case("distill-npz-truncated", "npz")
def _(ws):
    data = _digits_npz(ws).read_bytes()
    ws.write("d.npz", data[: len(data) // 2])
    return ["distill", "--data", "npz:d.npz", "--out", "out"]


@case("distill-npz-object-y", "object")
def _(ws):
    ws.npz("d.npz", x=np.zeros((60, 4, 4), np.float32), y=np.array([1, "a"] * 30, dtype=object))
    return ["distill", "--data", "npz:d.npz", "--out", "out"]


@case("distill-npz-no-y", "'y'")
def _(ws):
    ws.npz("d.npz", x=np.zeros((60, 4, 4), np.float32))
    return ["distill", "--data", "npz:d.npz", "--out", "out"]


@case("distill-npz-x-test-other-shape", "x_test")
def _(ws):
    _digits_npz(ws, x_test=np.zeros((30, 5, 5), np.float32), y_test=np.arange(30) % 3)
    return ["distill", "--data", "npz:d.npz", "--out", "out"]


@case("distill-npz-labels-wrong-length", "label")
def _(ws):
    _digits_npz(ws, labels=np.array(["a", "b"]))
    return ["distill", "--data", "npz:d.npz", "--out", "out"]


@case("distill-npz-one-class", "class")
def _(ws):
    ws.npz("d.npz", x=np.zeros((60, 4, 4), np.float32), y=np.zeros(60, np.int64))
    return ["distill", "--data", "npz:d.npz", "--out", "out"]


@case("distill-npz-beyond-float32", "float32")
def _(ws):
    ws.npz("d.npz", x=np.full((60, 4, 4), 1e300), y=np.arange(60) % 3)     # float64: numpy warned twice on the cast
    return ["distill", "--data", "npz:d.npz", "--out", "out"]


@case("distill-npz-both-sides-beyond-float32", "float32")
def _(ws):
    ws.npz("d.npz", x=np.tile([1e300, -1e300], 480).reshape(60, 4, 4), y=np.arange(60) % 3)   # inf − inf: NaN
    return ["distill", "--data", "npz:d.npz", "--out", "out"]


@case("distill-npz-compressed-bomb", "inflate")
def _(ws):
    ws.write("d.npz", _inflating_npz())
    return ["distill", "--data", "npz:d.npz", "--out", "out"]


@case("distill-augment-tabular", "augment")
def _(ws):
    return _csv(ws, "a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(40))) + ["--augment"]


@case("distill-csv-duplicate-columns", "twice")
def _(ws):
    return _csv(ws, "a,a,label\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(40)))


@case("distill-csv-no-feature-column", "feature")
def _(ws):
    return _csv(ws, "label\n" + "".join(f"{i % 2}\n" for i in range(40)))


@case("distill-csv-non-numeric", "non-numeric")
def _(ws):
    return _csv(ws, "a,label\n" + "".join(f"x{i},{i % 2}\n" for i in range(40)))


@case("distill-csv-ragged-rows", "columns")
def _(ws):
    return _csv(ws, "a,b,label\n1,2,0\n3,1\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(40)))


@case("distill-folder-decompression-bomb", "decompression")
def _(ws):
    for label in ("a", "b"):
        for i in range(3):
            ws.write(f"img/{label}/{i}.png", _png(8, 8))
    ws.write("img/a/bomb.png", _png(20000, 20000))
    return ["distill", "--data", "folder:img", "--out", "out"]


@case("distill-folder-cache-unwritable", "--cache-dir")
def _(ws):
    for label in ("a", "b"):
        for i in range(3):
            ws.write(f"img/{label}/{i}.png", _png(8, 8))
    return ["distill", "--data", "folder:img", "--cache-dir", "/proc/edgekd-cache", "--out", "out"]


@case("distill-csv-image-size", "tabular")
def _(ws):
    return [*_csv(ws, "a,b,label\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(40))), "--image-size", "8"]


@case("distill-folder-one-class", "two class")
def _(ws):
    ws.write("img/a/0.png", _png(8, 8))
    return ["distill", "--data", "folder:img", "--out", "out"]


def _folder_8x8(ws: Workspace) -> list:
    for label in ("a", "b"):
        for i in range(3):
            ws.write(f"img/{label}/{i}.png", _png(8, 8))
    return ["distill", "--data", "folder:img", "--out", "out"]


@case("distill-folder-symlink-out", "img/a/link.png' is a link to")
def _(ws):
    command = _folder_8x8(ws)
    os.symlink(ws.private, ws.root / "img" / "a" / "link.png")      # beside the working folder, not in it
    return command


@case("distill-folder-class-symlink-out", "img/c' is a link to")
def _(ws):
    command = _folder_8x8(ws)
    os.symlink(ws.private.parent, ws.root / "img" / "c")
    return command


@case("distill-folder-link-to-etc-passwd", "outside the folder")
def _(ws):
    command = _folder_8x8(ws)
    os.symlink("/etc/passwd", ws.root / "img" / "b" / "x.png")
    return command


@case("distill-folder-wide-png", "16:1")
def _(ws):
    ws.write("img/a/wide.png", _png(20_000_000, 1))          # 19 kB; a MemoryError traceback
    return _folder_8x8(ws)


@case("distill-folder-long-png-image-size", "2,000,000×1 pixels")
def _(ws):
    ws.write("img/b/long.png", _png(2_000_000, 1))           # 2 kB; +400 MB resized to cover 8×8
    return [*_folder_8x8(ws), "--image-size", "8"]


@case("distill-folder-huge-first-image", "--image-size")
def _(ws):
    command = _folder_8x8(ws)
    ws.write("img/a/0.png", _png(9000, 9000))                # it set the size of every image
    return command


@case("distill-folder-huge-images", "at most 4096")
def _(ws):
    huge = _png(9000, 9000)
    for label in ("a", "b"):
        ws.write(f"img/{label}/0.png", huge)
    return ["distill", "--data", "folder:img", "--out", "out"]


@case("distill-folder-mixed-sizes", "--image-size 60,90")
def _(ws):
    ws.write("img/a/0.png", _png(90, 60))
    for label, i in (("a", 1), ("b", 0), ("b", 1)):
        ws.write(f"img/{label}/{i}.png", _png(40, 36))
    return ["distill", "--data", "folder:img", "--out", "out"]


@case("distill-idx-empty-folder", "idx")
def _(ws):
    (ws.root / "idx").mkdir()
    return ["distill", "--data", "idx:idx", "--out", "out"]


# -- distill: outputs --------------------------------------------------------------------------

for _id, _out, _fragment in [
    ("out-dot", ".", "name of its own"),
    ("out-unwritable-filesystem", "/proc/edgekd-run", "/proc"),
    ("out-name-too-long", "r" * 300, "too long"),
]:
    CASES.append(Case(f"distill-{_id}", args("distill", "--out", _out), _fragment))


@case("distill-out-exists", "already exists")
def _(ws):
    (ws.root / "out").mkdir()
    return ["distill", "--out", "out"]


@case("distill-out-is-file-with-force", "file")
def _(ws):
    ws.write("out", "not a folder")
    return ["distill", "--out", "out", "--force"]


@case("distill-force-onto-user-folder", "is not an edgekd run folder")
def _(ws):
    ws.write("out/thesis.tex", "years of work")
    ws.write("out/config.toml", "# my own tool's settings\n")     # one of a run's documents is not enough
    return ["distill", "--out", "out", "--force"]


@case("distill-force-onto-user-staging-folder", "is not an edgekd interrupted run")
def _(ws):
    ws.write(".out.partial/notes.txt", "mine")           # where a run is staged: --force cleared it unchecked
    return ["distill", "--out", "out", "--force"]


@case("distill-force-staging-folder-is-a-link", "is a link")
def _(ws):
    os.symlink(ws.private.parent, ws.root / ".out.partial")    # rmtree(ignore_errors) left it, mkdir wrote through
    return ["distill", "--out", "out", "--force"]


# -- export ------------------------------------------------------------------------------------

for _id, _options, _fragment in [
    ("unknown-format", ["--formats", "onnx,tflite-int9"], "tflite-int8"),
    ("unknown-role", ["--roles", "students"], "student"),
    ("opset-too-low", ["--opset", "5"], "opset"),
    ("opset-not-int", ["--opset", "x"], "--opset"),
    ("calibration-zero", ["--calibration-samples", "0"], "calibration"),
    ("out-overlaps-run", ["--out", "run", "--force"], "run"),
]:
    CASES.append(Case(f"export-{_id}", lambda ws, o=_options: ["export", ws.run(), *o], _fragment))


@case("export-run-missing", "not found")
def _(ws):
    return ["export", "missing-run"]


@case("export-run-is-file", "folder")
def _(ws):
    ws.write("run.txt", "x")
    return ["export", "run.txt"]


@case("export-model-json-damaged", "json")
def _(ws):
    run = ws.run()
    (run / "student" / "model.json").write_text("{not json")
    return ["export", run]


@case("export-model-json-too-large", "large")
def _(ws):
    run = ws.run()
    spec = json.loads((run / "student" / "model.json").read_text())
    spec["arch"] = "cnn:width=1000000000,depth=2"
    (run / "student" / "model.json").write_text(json.dumps(spec))
    return ["export", run]


@case("export-weights-truncated", "safetensors")
def _(ws):
    run = ws.run()
    weights = run / "student" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return ["export", run]


@case("export-bundle-exists", "already exists")
def _(ws):
    run = ws.run()
    (run / "bundle").mkdir()
    return ["export", run]


@case("export-force-onto-user-folder", "is not an edgekd bundle folder")
def _(ws):
    run = ws.run()
    ws.write("site/manifest.json", '{"name": "my web app"}')         # a web app has a manifest.json too
    ws.write("site/index.html", "<h1>mine</h1>")
    return ["export", run, "--out", "site", "--force"]


# -- bench: the bundle -------------------------------------------------------------------------

def _model_file(doc: dict, value) -> None:
    doc["models"][0]["file"] = value


def _drop_eval_listing(doc: dict) -> None:
    del doc["files"][doc["eval"]["file"]]


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


for _id, _edit, _fragment in [
    ("manifest-parent-path", lambda d: _model_file(d, "../outside/evil.onnx"), ".."),
    ("manifest-absolute-path", lambda d: _model_file(d, "/etc/passwd"), "absolute"),
    ("manifest-eval-outside", lambda d: d["eval"].update(file="../eval.npz"), ".."),
    ("manifest-eval-not-listed", _drop_eval_listing, "listed"),
    ("manifest-schema-true", lambda d: d.update(schema_version=True), "schema_version"),
    ("manifest-schema-zero", lambda d: d.update(schema_version=0), "schema_version"),
    ("manifest-schema-future", lambda d: d.update(schema_version=99), "schema version"),
    ("manifest-files-list", lambda d: d.update(files=list(d["files"])), "files"),
    ("manifest-entry-no-sha256", lambda d: next(iter(d["files"].values())).clear(), "sha256"),
    ("manifest-model-string", lambda d: d["models"].__setitem__(0, "student.onnx"), "model"),
    ("manifest-eval-string", lambda d: d.update(eval="eval.npz"), "eval"),
    ("manifest-duplicate-model", lambda d: d["models"].append(dict(d["models"][0])), "duplicate"),
    ("manifest-too-many-models", lambda d: d.update(models=d["models"] * 30), "models"),
    ("manifest-no-models", lambda d: d.update(models=[]), "no models"),
    ("manifest-nan", lambda d: json.dumps(d).replace('"samples": ', '"samples": NaN, "x": ', 1), "nan"),
    ("manifest-not-json", lambda d: "{", "json"),
    ("manifest-top-level-list", lambda d: "[]", "object"),
    ("manifest-deeply-nested", lambda d: '{"schema_version": 1, "x": ' + _nested(100000) + "}", "manifest"),
]:
    CASES.append(Case(f"bench-{_id}", lambda ws, e=_edit: ["bench", ws.manifest(e)], _fragment))


@case("bench-model-symlink", "symlink")
def _(ws):
    bundle = ws.bundle()
    name = json.loads((bundle / "manifest.json").read_text())["models"][0]["file"]
    (ws.root / "outside").mkdir()
    os.replace(bundle / name, ws.root / "outside" / name)
    os.symlink(ws.root / "outside" / name, bundle / name)
    return ["bench", bundle]


@case("bench-model-tampered", "does not match")
def _(ws):
    bundle = ws.bundle()
    name = json.loads((bundle / "manifest.json").read_text())["models"][0]["file"]
    data = bytearray((bundle / name).read_bytes())
    data[-1] ^= 1
    (bundle / name).write_bytes(bytes(data))
    return ["bench", bundle]


@case("bench-model-missing", "missing")
def _(ws):
    bundle = ws.bundle()
    (bundle / json.loads((bundle / "manifest.json").read_text())["models"][0]["file"]).unlink()
    return ["bench", bundle]


@case("bench-model-symlink-loop", "symlink")
def _(ws):
    bundle = ws.bundle()
    name = json.loads((bundle / "manifest.json").read_text())["models"][0]["file"]
    (bundle / name).unlink()
    os.symlink(name, bundle / name)
    return ["bench", bundle]


@case("bench-data-truncated-npz", "cannot read")
def _(ws):
    data = ws.eval_npz().read_bytes()
    ws.write("other-eval.npz", data[: len(data) // 2])
    return ["bench", ws.root / "bundle", "--data", "other-eval.npz"]


@case("bench-a-run-folder", "did you mean")
def _(ws):
    run = ws.run()
    shutil.copytree(ws.bundle(), run / "bundle")
    return ["bench", run]


@case("bench-a-run-folder-not-exported", "export it first")
def _(ws):
    return ["bench", ws.run()]


@case("bench-data-strings", "must hold numbers")
def _(ws):
    ws.npz("strings.npz", x=np.array([["a"]]), y=np.zeros(1, np.int64))
    return ["bench", ws.bundle(), "--data", "strings.npz"]


@case("bench-data-npy-not-npz", "npy")
def _(ws):
    ws.bundle()
    np.save(ws.root / "one.npy", np.zeros((4, 1, 8, 8), np.float32))
    return ["bench", ws.root / "bundle", "--data", "one.npy"]


@case("bench-data-compressed-bomb", "inflate")
def _(ws):
    ws.bundle()
    ws.write("bomb.npz", _inflating_npz())
    return ["bench", ws.root / "bundle", "--data", "bomb.npz"]


@case("bench-data-header-lies", "declares")
def _(ws):
    ws.bundle()
    header = _float32_header((10**9, 1, 8, 8))
    with zipfile.ZipFile(ws.root / "lies.npz", "w") as archive:
        archive.writestr("x.npy", header + bytes(256))        # one sample's bytes, 256 GB declared
        archive.writestr("y.npy", header)
    return ["bench", ws.root / "bundle", "--data", "lies.npz"]


@case("bench-data-npy-declares-more", "declares")
def _(ws):
    ws.bundle()
    ws.write("eval.npz", _float32_header((10**14,)) + bytes(64) + _npy(np.zeros(1)))    # an .npy, however named
    return ["bench", ws.root / "bundle", "--data", "eval.npz"]


@case("bench-data-npy-with-zip-appended", "declares")
def _(ws):
    ws.bundle()
    small = io.BytesIO()
    np.savez(small, x=np.zeros((1, 1, 8, 8), np.float32), y=np.zeros(1))    # a zip directory np.load ignores
    ws.write("eval.npz", _float32_header((10**14,)) + small.getvalue())
    return ["bench", ws.root / "bundle", "--data", "eval.npz"]


@case("bench-data-stored-entry-too-large", "does not hold")
def _(ws):
    data = bytearray(ws.eval_npz().read_bytes())
    entry = data.index(b"PK\x01\x02")                       # x.npy's central directory entry
    data[entry + 20:entry + 28] = struct.pack("<II", 0x7FFF0000, 0x7FFF0000)   # 2 GB stored, says the zip
    ws.write("other-eval.npz", bytes(data))
    return ["bench", ws.root / "bundle", "--data", "other-eval.npz"]


@case("bench-data-beyond-float32", "float32")
def _(ws):
    ws.eval_npz(x=lambda x: np.full(x.shape, 1e300))
    return ["bench", ws.root / "bundle", "--data", "other-eval.npz"]


@case("bench-target-missing", "not found")
def _(ws):
    return ["bench", "missing-bundle"]


@case("bench-model-unknown-suffix", "suffix")
def _(ws):
    ws.write("model.txt", "x")
    return ["bench", "model.txt"]


# -- bench: options and outputs ----------------------------------------------------------------

for _id, _options, _fragment in [
    ("threads-huge", ["--threads", "100000"], "threads"),
    ("threads-not-int", ["--threads", "abc"], "threads"),
    ("batch-huge", ["--batch", "100000000"], "batch"),
    ("warmup-seconds-inf", ["--warmup-seconds", "inf"], "warmup"),
    ("min-seconds-nan", ["--min-seconds", "nan"], "min"),
    ("runs-zero", ["--runs", "0"], "runs"),
    ("repeat-zero", ["--repeat", "0"], "repeat"),
    ("unknown-runtime", ["--runtime", "tensorrtt"], "runtime"),
    ("junit-without-gate", ["--junit", "gate.xml"], "--budget"),
    ("baseline-missing", ["--baseline", "missing.json"], "not found"),
    ("budget-missing", ["--budget", "missing.toml"], "not found"),
    ("data-missing", ["--data", "missing.npz"], "not found"),
]:
    CASES.append(Case(f"bench-{_id}", lambda ws, o=_options: ["bench", ws.bundle(), *o], _fragment))


for _option, _name in [("--out", "manifest.json"), ("--markdown", "eval.npz"), ("--plot", "teacher.onnx"),
                       ("--save-baseline", "student.onnx")]:
    CASES.append(Case(f"bench-{_option[2:]}-into-bundle",
                      lambda ws, o=_option, n=_name: ["bench", ws.bundle(), o, ws.root / "bundle" / n], "bundle"))


@case("bench-junit-into-bundle", "bundle")
def _(ws):
    bundle = ws.bundle()
    ws.write("b.toml", "[student]\nmax_bytes = 100000000\n")
    return ["bench", bundle, "--budget", "b.toml", "--junit", bundle / "manifest.json"]


@case("bench-budget-typo", "max_bytes")
def _(ws):
    bundle = ws.bundle()
    ws.write("b.toml", "[student]\nmax_bytess = 10\n")
    return ["bench", bundle, "--budget", "b.toml"]


@case("bench-budget-impossible", "min_accuracy_percent")
def _(ws):
    bundle = ws.bundle()
    ws.write("b.toml", "[student]\nmin_accuracy_percent = 1000\n")
    return ["bench", bundle, "--budget", "b.toml"]


@case("bench-baseline-not-json", "json")
def _(ws):
    bundle = ws.bundle()
    ws.write("base.json", "{")
    return ["bench", bundle, "--baseline", "base.json"]


@case("bench-baseline-model-twice", "repeats")
def _(ws):
    ws.write("base.json", _bench_json_with_a_model_twice())
    return ["bench", ws.bundle(), "--baseline", "base.json"]


@case("bench-budget-deeply-nested", "nested too deeply")
def _(ws):
    ws.write("b.toml", "[student]\nmax_bytes = " + _nested(5000) + "\n")
    return ["bench", ws.bundle(), "--budget", "b.toml"]


@case("bench-eval-class-out-of-range", "class")
def _(ws):
    ws.eval_npz(y=lambda y: y + 100)
    return ["bench", ws.root / "bundle", "--data", "other-eval.npz"]


@case("bench-single-file-eval-class-out-of-range", "classes")
def _(ws):
    ws.eval_npz(y=lambda y: y + 100)
    model = json.loads((ws.root / "bundle" / "manifest.json").read_text())["models"][0]["file"]
    return ["bench", ws.root / "bundle" / model, "--data", "other-eval.npz", "--out", "b.json"]


@case("bench-eval-non-finite", "finite")
def _(ws):
    ws.eval_npz(x=lambda x: np.where(np.arange(x.size).reshape(x.shape) == 0, np.nan, x).astype(np.float32))
    return ["bench", ws.root / "bundle", "--data", "other-eval.npz"]


@case("bench-eval-wrong-shape", "shape")
def _(ws):
    ws.eval_npz(x=lambda x: x.reshape(len(x), -1)[:, :5])
    return ["bench", ws.root / "bundle", "--data", "other-eval.npz"]


# bench --remote: a host, folder or name the board's shell could read as code, or as an option, is refused
# before any connection (rsync 3.2.7 leaves backticks to that shell); "board" is no host: nothing is reached
for _id, _remote, _fragment in [
    ("backtick-folder", "board:bench/b`hostname`", "cannot go to a board"),
    ("dollar-folder", "board:bench/$(hostname)", "cannot go to a board"),
    ("semicolon-folder", "board:bench;hostname", "cannot go to a board"),
    ("newline-folder", "board:bench\nhostname", "is not [user@]host[:DIR]"),
    ("dash-folder", "board:bench/-rf", "cannot go to a board"),
    ("space-folder", "board:bench/b -f x", "cannot go to a board"),       # legacy scp: an option on the board
    ("tilde-user-folder", "board:~root/bench", "cannot go to a board"),
    ("dash-host", "-oProxyCommand=hostname", "is not [user@]host[:DIR]"),
]:
    CASES.append(Case(f"bench-remote-{_id}", lambda ws, r=_remote: ["bench", ws.bundle(), "--remote", r], _fragment))


@case("bench-remote-backtick-bundle", "the target's name 'b`hostname`' cannot go to a board")
def _(ws):
    return ["bench", ws.bundle().rename(ws.root / "b`hostname`"), "--remote", "board:bench"]


@case("bench-remote-newline-data", "the --data file's name 'd\\nhostname.npz' cannot go to a board")
def _(ws):
    bundle = ws.bundle()
    shutil.copy(bundle / "eval.npz", ws.root / "d\nhostname.npz")
    return ["bench", bundle, "--data", ws.root / "d\nhostname.npz", "--remote", "board:bench"]


def _output_into(option: str, side: str, name: str) -> Callable[[Workspace], list]:
    """``bench NEW --against OLD`` (copies of the shared bundle) with ``option`` writing ``name`` in
    OLD (``side`` "against-bundle") or in NEW."""
    def setup(ws):
        new = ws.bundle()
        old = shutil.copytree(new, ws.root / "old")
        return ["bench", new, "--against", old, option, (old if side == "against-bundle" else new) / name]
    return setup


# no output of bench lands in either bundle: not on the other bundle's files (the two),
# not as a new file in it, and in the one measured nothing but its own bench.json
for _option, _old, _new in [("--out", "bench.json", "b.json"), ("--markdown", "bench.md", "bench.md"),
                            ("--plot", "bench.png", "bench.png"), ("--junit", "manifest.json", "gate.xml"),
                            ("--save-baseline", "teacher.onnx", "next-bench.json")]:
    for _side, _name in [("against-bundle", _old), ("bundle-new-file", _new)]:
        CASES.append(Case(f"bench-{_option[2:]}-into-{_side}", _output_into(_option, _side, _name), "in the bundle"))


# -- predict -----------------------------------------------------------------------------------

@case("predict-unknown-model", "unknown model 'techer'")
def _(ws):
    return ["predict", ws.image_bundle(), ws.picture("a.png"), "--model", "techer"]


@case("predict-unknown-format", "no student file in format 'tflite'")
def _(ws):
    return ["predict", ws.image_bundle(), ws.picture("a.png"), "--format", "tflite"]


@case("predict-input-missing", "not found")
def _(ws):
    return ["predict", ws.image_bundle(), "missing.png"]


@case("predict-bundle-tampered", "does not match")
def _(ws):
    bundle = ws.image_bundle()
    with open(bundle / "student.int8.tflite", "ab") as f:
        f.write(b"\0")
    return ["predict", bundle, ws.picture("a.png")]


@case("predict-unreadable-image", "cannot read image")
def _(ws):
    ws.write("pictures/broken.png", b"\x89PNG\r\n\x1a\nnot an image")
    ws.picture("pictures/good.png")
    return ["predict", ws.image_bundle(), "pictures"]


@case("predict-rgba-for-a-gray-model", "transparent")
def _(ws):
    return ["predict", ws.image_bundle(), ws.picture("rgba.png", "RGBA")]


@case("predict-npz-wrong-size", "1×12×13")
def _(ws):
    return ["predict", ws.image_bundle(), ws.npz("x.npz", x=np.zeros((2, 1, 12, 13), np.float32))]


@case("predict-npz-without-x", "no array 'x'")
def _(ws):
    return ["predict", ws.image_bundle(), ws.npz("x.npz", images=np.zeros((2, 12, 12, 1), np.uint8))]


@case("predict-picture-for-an-array-model", "not on 8-bit images")
def _(ws):
    return ["predict", ws.bundle(), ws.picture("a.png")]


@case("predict-manifest-std-zero", "std above 0")
def _(ws):
    bundle = ws.image_bundle()
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["preprocessing"]["std"] = [0]
    (bundle / "manifest.json").write_text(json.dumps(doc))
    return ["predict", bundle, ws.picture("a.png")]


@case("predict-top-k-zero", "--top-k")
def _(ws):
    return ["predict", "bundle", "a.png", "--top-k", "0"]


@case("predict-folder-link-out", "outside the folder")
def _(ws):
    (ws.root / "pictures").mkdir()
    os.symlink(ws.private, ws.root / "pictures" / "secret.png")
    return ["predict", ws.image_bundle(), "pictures"]


# -- init-budget -------------------------------------------------------------------------------

@case("init-budget-source-missing", "not found")
def _(ws):
    return ["init-budget", "missing.json"]


@case("init-budget-source-not-json", "json")
def _(ws):
    ws.write("bench.json", "{")
    return ["init-budget", "bench.json"]


@case("init-budget-source-model-twice", "repeats")
def _(ws):
    ws.write("bench.json", _bench_json_with_a_model_twice())      # the proposal's TOML had one table twice
    return ["init-budget", "bench.json"]


@case("init-budget-out-exists", "already exists")
def _(ws):
    bundle = ws.bundle()
    ws.write("edgekd-budget.toml", "# mine\n")
    return ["init-budget", bundle]


@case("init-budget-bad-threads", "threads")
def _(ws):
    return ["init-budget", ws.bundle(), "--threads", "0"]


def test_enough_cases():
    """The issue asks for at least 60 cases over the commands."""
    commands = {c.id.split("-")[0] for c in CASES}
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    assert commands == {"distill", "export", "bench", "init", "predict"}
    assert set(IN_A_SUBPROCESS) <= {c.id for c in CASES}          # each one still names a case


class Audit:
    """What a case run in this process opens and changes on disk, seen by an audit hook (not by
    reading the code): nothing may be written outside the case's own folder, and the private file
    beside it (``Workspace.private``) is never opened. A hook cannot be removed, so one hook serves
    every case and records only while ``events`` is a list."""

    CHANGES = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate",
               "os.symlink", "os.link", "os.chmod", "shutil.copyfile", "shutil.move"}
    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    events: list | None = None

    @classmethod
    def hook(cls, event: str, event_args: tuple) -> None:
        if cls.events is None or not (event == "open" or event in cls.CHANGES):
            return
        paths = [a for a in event_args[:2] if isinstance(a, (str, bytes, os.PathLike))]
        writes = event != "open" or bool(event_args[2] & cls.WRITE_FLAGS)
        cls.events += [(event, os.path.abspath(os.fsdecode(p)), writes) for p in paths[: 1 if event == "open" else 2]]


sys.addaudithook(Audit.hook)


def _audited(runner, *command, **options):
    Audit.events = [] if runner is run_cli_here else None
    try:
        return runner(*command, **options), Audit.events or []
    finally:
        Audit.events = None


def test_the_audit_sees_what_a_case_opens_and_changes(tmp_path):
    """The audit of the table's harness can fail: it records reads, writes and renames."""
    Audit.events = []
    try:
        (tmp_path / "a").write_text("x")
        os.replace(tmp_path / "a", tmp_path / "b")
        (tmp_path / "b").read_text()
    finally:
        events, Audit.events = Audit.events, None
    for event in [("open", str(tmp_path / "a"), True), ("os.rename", str(tmp_path / "b"), True),
                  ("open", str(tmp_path / "b"), False)]:
        assert event in events


def _where_pointed(path: str, given: str) -> bool:
    """``path`` is at or under a path the command was given, beside it (an output is staged next to
    where it lands), one of its folders (``mkdir -p`` touches each), or the null device."""
    return (path == os.devnull or os.path.dirname(path) == os.path.dirname(given)
            or os.path.commonpath([path, given]) in (path, given))


def _one_line_and_nothing_written(bad: Case, tmp_path: Path, shared: Callable[[str], Path], runner):
    root = tmp_path / "work"
    root.mkdir()
    ws = Workspace(root, shared)
    command = [str(a) for a in bad.setup(ws)]
    before, private = listing(root), ws.private.read_bytes()
    env = {"TMPDIR": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}     # the image cache: the case's own
    result, events = _audited(runner, *command, cwd=root, env=env)
    assert_user_error(result, bad.fragment)
    assert listing(root) == before and ws.private.read_bytes() == private
    assert not any(tmp_path.glob("edgekd-*")), "a temporary folder was left behind"
    real = [(event, os.path.realpath(path), writes) for event, path, writes in events]   # through links
    pointed = [str(tmp_path.resolve())] + [a for a in command if os.path.isabs(a)]
    outside = [e for e in real if e[2] and not any(_where_pointed(e[1], p) for p in pointed)]
    assert not outside, f"written outside the case's folder: {outside}"
    assert not [e for e in real if e[1] == str(ws.private.resolve())], "the private file beside the case was opened"


#: the Workspace methods that copy the shared run or bundle
COPIES_SHARED = {"run", "bundle", "manifest", "eval_npz", "image_bundle"}


def _names_read(fn: Callable, seen: set) -> set[str]:
    """The global and attribute names ``fn`` reads (its nested lambdas and comprehensions included),
    and those of this module's functions it reads or closes over, followed to the end."""
    if not isinstance(fn, types.FunctionType) or fn in seen:
        return set()
    seen.add(fn)
    names, codes = set(), [fn.__code__]
    while codes:
        code = codes.pop()
        names |= set(code.co_names)
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    called = [fn.__globals__.get(n) for n in names] + [c.cell_contents for c in fn.__closure__ or ()]
    for other in called:
        if getattr(other, "__module__", None) == __name__:
            names |= _names_read(other, seen)
    return names


def _params(cases: list[Case]) -> list:
    """Each case, ``slow`` when its setup copies the shared run or bundle (read from its code, not run:
    the cases that need neither are the fast lane's bad-input rows, refused before any training)."""
    return [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if COPIES_SHARED & _names_read(c.setup, set()) else [])
            for c in cases]


@pytest.mark.parametrize("bad", _params(CASES))
def test_bad_input_is_one_line_and_writes_nothing(bad: Case, tmp_path, request):
    _one_line_and_nothing_written(bad, tmp_path, request.getfixturevalue, run_cli_here)


#: every command and every kind of error the table raises (click's usage errors, EdgeKDError itself
#: and each subclass), run as a user runs edgekd: a fresh interpreter, its start-up and imports included
IN_A_SUBPROCESS = [
    "distill-folds-not-int",            # click's usage error
    "distill-npz-empty-file",           # DataError (it once printed click's "Aborted!")
    "distill-model-option-not-int",     # ModelError
    "export-calibration-zero",          # ConfigError
    "export-bundle-exists",             # EdgeKDError (an output that exists)
    "bench-model-tampered",             # BundleError
    "bench-model-unknown-suffix",       # RuntimeBackendError
    "bench-data-missing",               # DataError
    "init-budget-bad-threads",          # ConfigError
    "predict-unknown-model",            # ConfigError, from the torch-free predictor
]


@pytest.mark.parametrize("bad", _params([c for c in CASES if c.id in IN_A_SUBPROCESS]))
def test_bad_input_in_a_real_process(bad: Case, tmp_path, request):
    _one_line_and_nothing_written(bad, tmp_path, request.getfixturevalue, run_cli)
