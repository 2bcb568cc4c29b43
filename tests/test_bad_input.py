"""The CLI's contract for bad and hostile input, over every command: exactly one ``error:`` line
(plus an optional ``hint:``), exit 2, no traceback, and nothing written or changed on disk.

Each case builds its files in a fresh working folder (copies of the shared real run and bundle,
edited), lists the folder (every path with its sha256), runs ``edgekd`` there and lists it again:
the two listings must be equal. Every case runs through the CLI's entry point in this process
(``run_cli_here``); a few, one per command and per kind of error, also in a real subprocess, as a
user starts it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from conftest import assert_user_error, run_cli, run_cli_here


class Workspace:
    """The working folder of one case and the ways its cases make their files."""

    def __init__(self, root: Path, demo_run: Path, demo_bundle: Path):
        self.root, self._run, self._bundle = root, demo_run, demo_bundle

    def bundle(self) -> Path:
        shutil.copytree(self._bundle, self.root / "bundle")
        return self.root / "bundle"

    def run(self) -> Path:
        shutil.copytree(self._run, self.root / "run")
        return self.root / "run"

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
    ("unknown-loss-option", ["--loss", "dkd,betta=2"], "did you mean 'beta'"),
    ("loss-option-negative", ["--loss", "dkd,beta=-1"], "must be >= 0"),
    ("loss-option-not-key-value", ["--loss", "fitnet,100"], "dkd,beta=8"),
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


@case("distill-config-unknown-key", "fold")
def _(ws):
    ws.write("c.toml", "fold = 3\n")
    return ["distill", "--config", "c.toml", "--out", "out"]


@case("distill-config-wrong-type", "folds")
def _(ws):
    ws.write("c.toml", 'folds = "three"\n')
    return ["distill", "--config", "c.toml", "--out", "out"]


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


@case("bench-data-npy-not-npz", "npy")
def _(ws):
    ws.bundle()
    np.save(ws.root / "one.npy", np.zeros((4, 1, 8, 8), np.float32))
    return ["bench", ws.root / "bundle", "--data", "one.npy"]


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


# -- init-budget -------------------------------------------------------------------------------

@case("init-budget-source-missing", "not found")
def _(ws):
    return ["init-budget", "missing.json"]


@case("init-budget-source-not-json", "json")
def _(ws):
    ws.write("bench.json", "{")
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
    """The issue asks for at least 60 cases over the four commands."""
    commands = {c.id.split("-")[0] for c in CASES}
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    assert commands == {"distill", "export", "bench", "init"}
    assert set(IN_A_SUBPROCESS) <= {c.id for c in CASES}          # each one still names a case


def _one_line_and_nothing_written(bad: Case, tmp_path: Path, demo_run: Path, demo_bundle: Path, runner):
    root = tmp_path / "work"
    root.mkdir()
    command = [str(a) for a in bad.setup(Workspace(root, demo_run, demo_bundle))]
    before = listing(root)
    result = runner(*command, cwd=root, env={"TMPDIR": str(tmp_path)})
    assert_user_error(result, bad.fragment)
    assert listing(root) == before
    assert not any(tmp_path.glob("edgekd-*")), "a temporary folder was left behind"


@pytest.mark.parametrize("bad", CASES, ids=lambda c: c.id)
def test_bad_input_is_one_line_and_writes_nothing(bad: Case, tmp_path, demo_run, demo_bundle):
    _one_line_and_nothing_written(bad, tmp_path, demo_run, demo_bundle, run_cli_here)


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
]


@pytest.mark.parametrize("bad", [c for c in CASES if c.id in IN_A_SUBPROCESS], ids=lambda c: c.id)
def test_bad_input_in_a_real_process(bad: Case, tmp_path, demo_run, demo_bundle):
    _one_line_and_nothing_written(bad, tmp_path, demo_run, demo_bundle, run_cli)
