"""The gap closed, (student − simple) / (teacher − simple): the formula and its n/a, cv.json's figures
against its own accuracies, report.md and the terminal, and a cv.json written before the key existed."""
import copy
import json

import numpy as np
import pytest

from edgekd.app.render.distill import DistillProgress, print_distill_summary
from edgekd.app.sweep.run import _row
from edgekd.core.errors import ModelError
from edgekd.core.gap import gap_closed, gap_closed_spread
from edgekd.core.schema import cv as cv_schema
from edgekd.train.distill.summary import gap_line, summary_markdown


def test_the_gap_closed_is_the_share_of_the_simple_to_teacher_gap():
    assert gap_closed(teacher=0.90, student=0.85, simple=0.80) == pytest.approx(0.5)
    assert gap_closed(teacher=0.90, student=0.92, simple=0.80) == pytest.approx(1.2)     # passed the teacher
    assert gap_closed(teacher=0.90, student=0.75, simple=0.80) == pytest.approx(-0.5)    # behind the simple model
    assert gap_closed(teacher=0.80, student=0.85, simple=0.80) is None                   # no gap to close
    assert gap_closed(teacher=0.70, student=0.85, simple=0.80) is None                   # the teacher is behind


def test_the_spread_is_over_the_folds_where_the_gap_is_defined():
    stats = gap_closed_spread([0.5, None, 0.7])
    assert stats["folds"] == 2 and stats["mean"] == pytest.approx(0.6)
    assert stats["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert (stats["min"], stats["max"]) == (0.5, 0.7)
    assert gap_closed_spread([0.4]) == {"mean": 0.4, "std": 0.0, "min": 0.4, "max": 0.4, "folds": 1}
    assert gap_closed_spread([None, None]) == {"mean": None, "std": None, "min": None, "max": None, "folds": 0}


def _expected(split: dict) -> float | None:
    """The figure computed here, from the split's accuracies alone."""
    teacher, student, simple = (split[role]["accuracy"] for role in ("teacher", "student", "simple"))
    return (student - simple) / (teacher - simple) if teacher > simple else None


def test_cv_json_gap_closed_is_computed_from_its_own_accuracies(demo_run):
    doc = json.loads((demo_run / cv_schema.CV_FILE).read_text())
    for split in (*doc["folds"], doc["final"]):
        expected = _expected(split)
        assert split["gap_closed"] == (None if expected is None else pytest.approx(expected)), split["split"]
    defined = [_expected(f) for f in doc["folds"] if _expected(f) is not None]
    assert defined, "the demo's teacher should be ahead of its simple model in some fold"
    stats = doc["cv"]["gap_closed"]
    assert stats["folds"] == len(defined)
    assert stats["mean"] == pytest.approx(np.mean(defined))
    assert stats["std"] == pytest.approx(np.std(defined, ddof=1) if len(defined) > 1 else 0.0)
    assert (stats["min"], stats["max"]) == (pytest.approx(min(defined)), pytest.approx(max(defined)))


def _with_undefined_fold(demo_run) -> dict:
    """The demo's cv.json with a third fold where the teacher is behind the simple model."""
    doc = json.loads((demo_run / cv_schema.CV_FILE).read_text())
    fold = copy.deepcopy(doc["folds"][0])
    fold["split"], fold["teacher"]["accuracy"], fold["simple"]["accuracy"] = "fold3", 0.5, 0.6
    doc["folds"].append(fold)
    return doc


def test_report_md_and_the_terminal_show_the_gap_closed(demo_run, capsys):
    doc = _with_undefined_fold(demo_run)
    defined = [_expected(f) for f in doc["folds"] if _expected(f) is not None]
    spread = f" ± {np.std(defined, ddof=1):.2f}" if len(defined) > 1 else ""
    headline = f"gap closed {np.mean(defined):.2f}{spread}"
    line = gap_line(doc)
    assert line.startswith(headline + " (of the simple→teacher gap, CV); ")
    assert f"held-out {_expected(doc['final']):.2f}" in line
    assert "n/a in 1 of 3 folds" in line
    report = summary_markdown(doc)
    assert line in report and "| gap closed |" in report
    rows = {row.split(" | ")[0].strip("| "): row for row in report.splitlines() if row.startswith("| fold")}
    assert rows["fold1"].endswith(f" | {_expected(doc['folds'][0]):.2f} |")
    assert rows["fold3"].endswith(" | n/a |")
    print_distill_summary(doc, str(demo_run))
    assert line in capsys.readouterr().out
    assert gap_line(json.loads((demo_run / cv_schema.CV_FILE).read_text())) in (demo_run / "report.md").read_text()


def test_each_finished_split_shows_its_gap_closed(demo_run, capsys):
    doc = _with_undefined_fold(demo_run)
    with DistillProgress(True, folds=3) as progress:
        for fold in doc["folds"]:
            progress.report("split_done", result=fold)
    lines = [line for line in capsys.readouterr().err.splitlines() if ": teacher " in line]
    assert lines[0].endswith(f"gap closed {_expected(doc['folds'][0]):.2f}") and lines[2].endswith("gap closed n/a")


def test_a_cv_json_written_before_the_gap_closed_still_reads(demo_run, tmp_path):
    """A resumed sweep re-reads its students' cv.json: one from before the key is read, and its gap
    closed comes from its folds."""
    doc = json.loads((demo_run / cv_schema.CV_FILE).read_text())
    new = doc["cv"]["gap_closed"]
    for split in (*doc["folds"], doc["final"]):
        del split["gap_closed"]
    del doc["cv"]["gap_closed"]
    (tmp_path / cv_schema.CV_FILE).write_text(json.dumps(doc))
    assert cv_schema.read(tmp_path) == doc
    assert _row("0-cnn", "cnn", tmp_path)["cv"]["gap_closed"] == new
    assert "gap closed" in gap_line(doc)


def test_a_damaged_gap_closed_is_one_model_error(demo_run):
    doc = json.loads((demo_run / cv_schema.CV_FILE).read_text())
    doc["cv"]["gap_closed"]["folds"] = "2"
    with pytest.raises(ModelError, match=r"cv\.gap_closed\.folds must be a whole number"):
        cv_schema.from_json(doc, "cv.json")
    doc = json.loads((demo_run / cv_schema.CV_FILE).read_text())
    doc["folds"][1]["gap_closed"] = "0.5"
    with pytest.raises(ModelError, match=r"folds\[1\]\.gap_closed must be a number or null"):
        cv_schema.from_json(doc, "cv.json")


def test_one_fold_shows_its_figures_without_a_spread(demo_run, capsys):
    """--folds 1 printed "25.64 ± 0.00": a spread of one fold measures nothing."""
    doc = json.loads((demo_run / cv_schema.CV_FILE).read_text())
    doc["folds"], doc["config"]["folds"] = doc["folds"][:1], 1
    report = summary_markdown(doc)
    print_distill_summary(doc, str(demo_run))
    for text in (report, capsys.readouterr().out):
        table = [line for line in text.splitlines() if "student" in line or "gap closed" in line or "gain" in line]
        assert table and not any("±" in line for line in table), table
        assert "1 fold" in text
    two = summary_markdown(json.loads((demo_run / cv_schema.CV_FILE).read_text()))
    assert "(mean ± std)" in two and " ± " in gap_line(json.loads((demo_run / cv_schema.CV_FILE).read_text()))
