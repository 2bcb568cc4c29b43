"""``edgekd distill`` where its output is no terminal (a CI log, a pipe): a line per epoch as each ends,
and no progress bars (issue 31, item 4); a data folder's summary before the work (item 2)."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from edgekd.app.render import distill as render
from edgekd.app.render.distill import DistillProgress
from edgekd.train.config import load_config
from edgekd.train.distill import EpochLines, run_experiment

from conftest import TINY, run_cli

FAST = dict(TINY, teacher="mlp:hidden=16", student="mlp:hidden=8", folds=2, teacher_epochs=2, student_epochs=3)
EPOCH = re.compile(r"(fold\d|final) (teacher|student|simple) epoch (\d+)/(\d+)  loss (\d+\.\d{4})  "
                   r"val acc (\d+\.\d\d)%  ([\d,]+) samples/s")
BAR_GLYPHS = "━╸╺█▏▎▍▌▋▊▉"


def expected_epochs(folds: int, teacher: int, student: int) -> list[tuple[str, str, int, int]]:
    """(split, role, epoch, epochs) of every epoch of a run, in the order they train."""
    return [(split, role, n, epochs) for split in [*(f"fold{k + 1}" for k in range(folds)), "final"]
            for role, epochs in (("teacher", teacher), ("student", student), ("simple", student))
            for n in range(1, epochs + 1)]


@pytest.mark.slow
def test_a_line_per_epoch_with_the_numbers_the_run_records(tmp_path):
    stream = io.StringIO()
    cv = run_experiment(load_config(None, **FAST, out=str(tmp_path / "run")), reporter=EpochLines(stream))
    lines = stream.getvalue().splitlines()
    epochs = [EPOCH.fullmatch(line) for line in lines if " epoch " in line]
    assert all(epochs), lines
    assert [(m[1], m[2], int(m[3]), int(m[4])) for m in epochs] == expected_epochs(2, 2, 3)
    splits = {**{f"fold{k + 1}": fold for k, fold in enumerate(cv["folds"])}, "final": cv["final"]}
    for m in epochs:       # the loss and validation accuracy the run keeps in cv.json for that epoch
        record = splits[m[1]][m[2]]["history"][int(m[3]) - 1]
        assert (m[5], m[6]) == (f"{record['loss']:.4f}", f"{100 * record['val_accuracy']:.2f}")
        assert int(m[7].replace(",", "")) > 0
    finished = [line for line in lines if " epoch " not in line]
    assert [line.split(":")[0].strip() for line in finished] == ["fold1", "fold2", "final"]
    assert all("gap closed" in line for line in finished)


@pytest.mark.parametrize("terminal", [True, False])
def test_a_terminal_keeps_the_live_bars(monkeypatch, terminal):
    screen = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=screen, force_terminal=terminal, width=100))
    record = {"epoch": 1, "loss": 0.5, "val_accuracy": 0.875, "samples_per_second": 1234.5}
    with DistillProgress(True, folds=1) as progress:
        progress.report("stage_start", split="fold1", role="teacher", epochs=2, samples=10)
        progress.report("epoch", split="fold1", role="teacher", epochs=2, record=record)
    shown = screen.getvalue()
    line = "fold1 teacher epoch 1/2  loss 0.5000  val acc 87.50%  1,234 samples/s"
    assert (line in shown.splitlines()) != terminal and "1,234 samples/s" in shown
    assert any(glyph in shown for glyph in BAR_GLYPHS) == terminal


@pytest.mark.slow
def test_a_piped_distill_says_the_data_then_each_epoch_and_draws_no_bar(tmp_path):
    """The CLI's contract in a real process with stderr piped, as a CI runner runs it."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "img" / label).mkdir(parents=True)
        for i in range(10):
            side = 6 if i % 5 else 16          # 8 of 10 images smaller than --image-size 12
            pixels = rng.integers(0, 256, (side, side), dtype=np.uint8)
            Image.fromarray(pixels, "L").save(tmp_path / "img" / label / f"{i}.png")
    (tmp_path / "img" / "a" / "notes.txt").write_text("not an image")
    args = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items() if k != "data"]
    result = run_cli("distill", *args, "--data", f"folder:{tmp_path / 'img'}", "--image-size", "12",
                     "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[:4] == [
        f"data folder:{tmp_path / 'img'}: 2 classes, 20 images (a 10, b 10); "
        "2 sizes: widths 6–16, heights 6–16 pixels",
        "skipped 1 entry: .txt files 1",
        "warning: --image-size 12,12 upsamples 16 of 20 images, smaller than 12×12 (height×width) in a side "
        "(2 sizes: widths 6–16, heights 6–16 pixels): upsampling adds pixels to train on, not detail",
        "fold1 teacher epoch 1/2" + lines[3].partition("fold1 teacher epoch 1/2")[2]]
    epochs = [EPOCH.fullmatch(line) for line in lines if " epoch " in line]
    assert all(epochs) and [(m[1], m[2], int(m[3]), int(m[4])) for m in epochs] == expected_epochs(2, 2, 3)
    assert not any(glyph in result.stderr for glyph in BAR_GLYPHS) and "splits" not in result.stderr
    assert "eta" not in result.stderr.split() and "held-out acc" in result.stdout
