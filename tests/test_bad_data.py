"""Bad data, model specs and resume checkpoints for distill: each is one user error up front
(or, for training that diverges, at the epoch it happens), never a traceback or a silently wrong run."""
from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import assert_user_error, run_cli_here
from edgekd.train.config import load_config
from edgekd.train.data import load_dataset
from edgekd.core.preprocess import fit_standardize, standardize
from edgekd.train.distill import run_experiment
from edgekd.core.errors import ConfigError, DataError, ModelError
from edgekd.train.models import build


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def write_bomb_png(path: Path, side: int = 20000) -> None:
    """A PNG whose header claims side×side 1-bit pixels (400 M at 20000, over twice PIL's
    limit) but whose file is a few dozen bytes: PIL refuses it from the header alone."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                     + _png_chunk(b"IDAT", zlib.compress(b"\x00")) + _png_chunk(b"IEND", b""))


def image_folder(root: Path, side: int = 4) -> Path:
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        Image.fromarray(np.zeros((side, side), np.uint8)).save(root / name / "ok.png")
    return root


def _npz(path: Path, **arrays) -> str:
    np.savez(path, **{"x": np.zeros((40, 2)), "y": np.arange(40) % 2, **arrays})
    return f"npz:{path}"


def _truncated_npz(path: Path) -> str:
    _npz(path)
    path.write_bytes(path.read_bytes()[:300])
    return f"npz:{path}"


def _csv(path: Path, text: str, encoding: str = "utf-8") -> str:
    path.write_text(text, encoding=encoding)
    return f"csv:{path}"


def _bomb_folder(root: Path) -> str:
    write_bomb_png(image_folder(root) / "b" / "huge.png")
    return f"folder:{root}"


BAD_DATA = {
    "object-y": (lambda p: _npz(p / "d.npz", y=np.array([0, 1] * 20, dtype=object)), "holds Python objects"),
    "truncated-npz": (lambda p: _truncated_npz(p / "d.npz"), "cannot read"),
    "empty-npz": (lambda p: (p / "d.npz").write_bytes(b"") or f"npz:{p}/d.npz", "is empty"),
    "x-test-shape": (lambda p: _npz(p / "d.npz", x_test=np.zeros((6, 3)), y_test=np.arange(6) % 2),
                     "x_test has samples of shape (3,), x has (2,)"),
    "x-test-alone": (lambda p: _npz(p / "d.npz", x_test=np.zeros((6, 2))), "x_test but no y_test"),
    "labels-length": (lambda p: _npz(p / "d.npz", labels=np.array(["a", "b", "c"])), "3 label names for 2 classes"),
    "labels-twice": (lambda p: _npz(p / "d.npz", labels=np.array(["a", "a"])), "names a class twice: 'a'"),
    "csv-duplicate-columns": (lambda p: _csv(p / "t.csv", "a,a,label\n1,2,x\n3,4,y\n"), "column 'a' twice"),
    "csv-no-features": (lambda p: _csv(p / "t.csv", "label\nx\ny\n"), "no feature columns"),
    "bomb-image": (lambda p: _bomb_folder(p), "decompression bomb"),
}


@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_data_is_a_data_error(tmp_path, case):
    make, fragment = BAD_DATA[case]
    with pytest.raises(DataError) as info:
        load_dataset(make(tmp_path))
    assert fragment in info.value.message


def test_an_image_over_pils_warning_limit_is_refused_too(tmp_path, monkeypatch):
    """Between PIL's limit and twice it PIL only warns, then decodes the whole image; edgekd refuses."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)      # 16 pixels: over the limit, under twice it
    with pytest.raises(DataError, match="decompression bomb"):
        load_dataset(f"folder:{image_folder(tmp_path)}")


def test_a_utf8_bom_in_a_csv_header_is_not_part_of_the_first_column(tmp_path):
    """Excel's "CSV UTF-8" starts the file with a byte-order mark."""
    spec = _csv(tmp_path / "t.csv", "label,a\nx,1\ny,2\n", encoding="utf-8-sig")
    data = load_dataset(spec, label_column="label")
    assert data.labels == ["x", "y"] and data.x.tolist() == [[1], [2]]


@pytest.mark.parametrize("spec,fragment", [
    ("cnn:width=4,width=9", "option 'width' is given twice"),
    ("cnn:width=1000000000", "too large to build"),      # the second convolution's size overflows int64
    ("cnn:width=1000000000,depth=1", "21,000,000,010 parameters, more than"),
    ("mlp:hidden=100000,depth=100", "parameters, more than"),
])
def test_bad_model_specs_are_refused_before_allocating(spec, fragment):
    with pytest.raises(ModelError) as info:
        build(spec, (1, 8, 8), 10)
    assert fragment in info.value.message and spec in info.value.message


def test_standardisation_of_data_near_float32s_limit_is_exact():
    """(x − mean) of values near ±3.4e38 overflows float32 though the standardised values are small."""
    x = np.full((60, 2), -3e38, np.float32)
    x[0] = 3e38
    z = standardize(fit_standardize(x), x)
    expected = (x.astype(np.float64) - x.mean(0, dtype=np.float64)) / x.std(0, dtype=np.float64)
    np.testing.assert_allclose(z, expected, rtol=1e-6)


def test_standardised_values_beyond_float32_are_refused():
    """Statistics of other data (a brought teacher's) can put this data out of float32's range."""
    pre = {"type": "standardize", "axis": "feature", "mean": [0.0], "std": [1e-30]}
    with pytest.raises(DataError, match="beyond float32"):
        standardize(pre, np.array([[1e10], [0.0]], np.float32))


QUICK = dict(data="digits", teacher="mlp:hidden=16", student="mlp:hidden=8", folds=2, teacher_epochs=2,
             student_epochs=3, student_fraction=0.5, batch_size=128, seed=0)


#: at the highest learning rate allowed, 20 layers' activations overflow float32 in the first epoch
DIVERGING = dict(teacher="mlp:hidden=64,depth=20", lr=10.0, batch_size=32)


@pytest.mark.slow
def test_a_non_finite_training_loss_stops_the_run(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as info:
        run_experiment(load_config(None, **{**QUICK, **DIVERGING}, out=str(out)))
    assert re.fullmatch(r"teacher of fold1: the training loss is (nan|inf) at epoch 1 of 2", info.value.message)
    assert "--lr" in info.value.hint and "--force" in info.value.hint
    assert not out.exists()


class Stop(Exception):
    """Stands in for an interruption (Ctrl-C, a killed job) at a chosen point of a run."""


def interrupted_run(out: Path) -> Path:
    """A run stopped after its first student epoch of fold1: fold1's teacher is a finished
    stage, fold1's student has an epoch checkpoint. Returns the staging folder's state/."""
    def reporter(event, **info):
        if event == "epoch" and (info["split"], info["role"]) == ("fold1", "student"):
            raise Stop

    with pytest.raises(Stop):
        run_experiment(load_config(None, **QUICK, out=str(out)), reporter)
    return out.with_name(f".{out.name}.partial") / "state" / "fold1"


def _misshape_optimizer_state(path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(path))
    tensors[next(k for k in tensors if k.endswith(".exp_avg"))] = np.zeros(3, np.float32)
    save_file(tensors, str(path))


DAMAGE = {
    "epoch.json": lambda path: path.write_text('{"epoch": 1, "hist'),
    "epoch.json-fields": lambda path: path.write_text('{"epoch": "one"}'),
    "epoch.json-epoch": lambda path: path.write_text('{"epoch": 7, "history": [], "param_groups": [], "mode": '
                                                     '{"precision": "fp32", "memory_format": "contiguous", "why": ""}}'),
    "epoch.safetensors": lambda path: path.write_bytes(path.read_bytes()[:40]),
    "epoch.safetensors-optimizer": _misshape_optimizer_state,
    "done.json": lambda path: path.write_bytes(b"\xff\xfe"),
    "model.safetensors": lambda path: path.write_bytes(path.read_bytes()[:-8]),
}


@pytest.mark.slow                       # trains an interrupted run per case
@pytest.mark.parametrize("damaged", DAMAGE)
def test_a_damaged_resume_checkpoint_says_how_to_start_over(tmp_path, damaged):
    out = tmp_path / "run"
    state = interrupted_run(out)
    name = damaged.split("-")[0]
    path = state / ("student" if name.startswith("epoch") else "teacher") / name
    DAMAGE[damaged](path)
    with pytest.raises(ConfigError) as info:
        run_experiment(load_config(None, **QUICK, out=str(out)), resume=True)
    assert str(path) in info.value.message and "damaged" in info.value.message
    assert "without --resume" in info.value.hint and "--force" in info.value.hint
    assert not out.exists()


CLI_CASES = {
    "empty-npz": (lambda p: ["--data", BAD_DATA["empty-npz"][0](p)], "is empty"),
    "bomb-image": (lambda p: ["--data", _bomb_folder(p / "images")], "decompression bomb"),
    "huge-model": (lambda p: ["--student", "cnn:width=1000000000"], "too large"),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_bad_input_through_the_cli(tmp_path, case):
    """The same mistakes as one error line and exit 2; the empty npz printed click's "Aborted!"."""
    make_args, fragment = CLI_CASES[case]
    result = run_cli_here("distill", *make_args(tmp_path), "--out", tmp_path / "run")
    assert_user_error(result, fragment)
    assert not (tmp_path / "run").exists() and not (tmp_path / ".run.partial").exists()
