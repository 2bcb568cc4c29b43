"""The tables of export, sweep, distill and bench on a 100-column terminal: rich cut every column of a
table wider than the console ("student.int8.tfl…", a user model's absolute path cut to "…/mymodels/tiny.…");
now each leaves columns out (they stay in the JSON and markdown) and keeps file names and model specs whole."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from conftest import TINY
from rich.console import Console

from edgekd.app.render.bench import render_table
from edgekd.app.render.distill import print_distill_summary
from edgekd.app.render.export import print_export_summary
from edgekd.app.render.sweep import print_sweep_summary
from edgekd.app.sweep.outputs import sweep_document
from edgekd.app.sweep.plan import Plan, folder_name
from edgekd.app.sweep.run import _row
from edgekd.core.numbers import size
from edgekd.train.config import load_config
from edgekd.train.distill import run_experiment

#: a user's own model file, as in the issue: ``--student mymodels/tiny.py:tiny:width=8``
TINY_PY = """import torch


def tiny(num_classes: int, in_channels: int, width: int = 8):
    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, width, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(width, num_classes))
"""
SHORT = dict(data="digits", teacher="cnn:width=8,depth=2", folds=1, teacher_epochs=1, student_epochs=2,
             student_fraction=0.2, batch_size=64, seed=0)


def _screen(width: int) -> Console:
    return Console(file=io.StringIO(), width=width)


def _shown(screen: Console) -> str:
    text = screen.file.getvalue()
    assert "…" not in text, text          # nothing cut short, anywhere
    return text


@pytest.mark.parametrize("width", [100, 80])
def test_the_export_table_keeps_each_file_name_whole(demo_bundle, width):
    report = json.loads((demo_bundle / "export.json").read_text())
    screen = _screen(width)
    print_export_summary(report, screen)
    lines = _shown(screen).splitlines()
    for row in report["models"]:     # its own table row: the name, then its size
        assert any(line.split()[:1] == [row["file"]] and size(row["bytes"]) in line for line in lines), lines
    assert any("parity" in line for line in lines)


def _sweep_doc(run: Path, bench: dict) -> dict:
    """A sweep document of one student: the demo run and its real bench."""
    spec = TINY["student"]
    name = folder_name(0, spec)
    plan = Plan(students=(spec,), config=load_config(None, **TINY), bench={}, remote=None)
    return sweep_document(plan, [_row(name, spec, run)], {name: bench}, None, "fastest", 1.0)


@pytest.mark.parametrize("width", [100, 80])
def test_the_sweep_table_keeps_each_student_and_file_whole(demo_run, demo_bench, width):
    doc = _sweep_doc(demo_run, demo_bench)
    screen = _screen(width)
    print_sweep_summary(doc, "sweep", screen)
    lines = _shown(screen).splitlines()
    files = {c["file"] for c in doc["candidates"]}
    assert files == {"student.onnx", "student.int8.tflite"}
    for c in doc["candidates"]:
        assert any(f" {c['student']} " in line and f" {c['file']} " in line for line in lines), lines


def test_the_bench_table_keeps_each_file_name_whole(demo_bench):
    screen = _screen(100)
    render_table(demo_bench, screen)
    lines = _shown(screen).splitlines()
    for m in demo_bench["models"]:
        assert any(f"│ {m['file']} " in line for line in lines), lines


@pytest.mark.slow
def test_the_distill_table_shows_a_user_model_file_as_the_user_named_it(tmp_path, monkeypatch):
    """The run records the file's absolute path (export imports it again from anywhere); the table shows
    the file's name with the factory and options, whole."""
    (tmp_path / "mymodels").mkdir()
    (tmp_path / "mymodels" / "tiny.py").write_text(TINY_PY)
    monkeypatch.chdir(tmp_path)
    summary = run_experiment(load_config(None, **SHORT, student="mymodels/tiny.py:tiny:width=8",
                                         out=str(tmp_path / "run")))
    assert summary["models"]["student"]["arch"] == f"{tmp_path}/mymodels/tiny.py:tiny:width=8"
    screen = _screen(100)
    print_distill_summary(summary, "run", screen)
    shown = _shown(screen)
    rows = {line.split("│")[1].strip(): line for line in shown.splitlines() if line.count("│") > 2}
    assert " tiny.py:tiny:width=8 " in rows["student"] and " tiny.py:tiny:width=8 " in rows["simple"]
    assert " cnn:width=8,depth=2 " in rows["teacher"]
    assert str(tmp_path) not in shown
