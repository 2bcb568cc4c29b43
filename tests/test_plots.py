"""The figures people look at, checked on matplotlib's own objects as drawn (before saving): curves.png
compares the student and the simple model on shared axes, sweep.png's numbers neither overprint nor
leave their panels, bench.png's names stay inside their axes; nothing leaves the figure. The sweep and
the bench are drawn from recorded documents (benchmarks/results), the curves from a real run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekd.app.sweep.front import AXES, fronts
from edgekd.app.sweep.plot import sweep_figure
from edgekd.core.schema.cv import read as read_cv
from edgekd.device.bench.plots import bench_figure
from edgekd.train.distill.curves import curves_figure

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def sweep_record() -> dict:
    """The sweep.json of benchmarks/sweep_digits.py: ten candidates, fronts and a pick."""
    return json.loads((RESULTS / "sweep_digits.json").read_text())["sweep"]


def four_points() -> dict:
    """The record's first two students alone (four files), their fronts recomputed and no pick: the
    sweep whose names overprinted each other and ran off the figure."""
    doc = sweep_record()
    doc["candidates"] = doc["candidates"][:4]
    doc["fronts"] = fronts(doc["candidates"])
    doc["pick"] = {**doc["pick"], "candidate": None, "student": None, "file": None}
    return doc


def drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def inside(box, outer) -> bool:
    return outer.x0 <= box.x0 and box.x1 <= outer.x1 and outer.y0 <= box.y0 and box.y1 <= outer.y1


def assert_all_inside_figure(fig, renderer) -> None:
    """Every drawn artist (titles, tick labels, legends, texts) within the figure's own bounds (inches)."""
    assert inside(fig.get_tightbbox(renderer), fig.bbox_inches)


def assert_apart(boxes) -> None:
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1:]), "two labels overprint each other"


@pytest.mark.parametrize("doc", [sweep_record(), four_points()], ids=["ten-candidates", "four-points"])
def test_the_sweeps_labels_stay_apart_inside_their_panels_and_name_every_point(doc):
    fig = sweep_figure(doc)
    renderer = drawn(fig)
    scored = [i for i, c in enumerate(doc["candidates"]) if c["accuracy"] is not None]
    for ax, (key, _) in zip(fig.axes, AXES.values()):
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert all(inside(box, ax.bbox) for box in boxes)
        assert_apart(boxes)
        # every scored candidate, numbered at its own point (the data as in sweep.json)
        assert sorted((t.get_text(), t.xy) for t in ax.texts) == sorted(
            (str(i + 1), (doc["candidates"][i][key], 100 * doc["candidates"][i]["accuracy"])) for i in scored)
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        assert_apart(ticks)
    key = [t.get_text() for t in fig.legends[0].get_texts()]
    assert all(f"{i + 1}  {doc['candidates'][i]['student']}" in " / ".join(key) for i in scored)
    assert_all_inside_figure(fig, renderer)


def test_the_benchs_names_stay_inside_their_axes_and_the_figure():
    """A recorded bench.json (student.onnx, student.int8.tflite, teacher.onnx, eval data): the teacher,
    the slowest, is the right-most point, whose name ran past the axes."""
    result = json.loads((RESULTS / "gate_noise_baseline.json").read_text())
    fig = bench_figure(result)
    renderer = drawn(fig)
    latency, accuracy = fig.axes
    names = {t.get_text(): t.get_window_extent(renderer) for t in accuracy.texts}
    assert set(names) == {f"{m['file']} t1 b1" for m in result["models"]}
    assert all(inside(box, accuracy.bbox) for box in names.values())
    assert_apart(list(names.values()))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [line.get_label() for line in latency.lines]
    assert_all_inside_figure(fig, renderer)


def test_the_curves_compare_student_and_simple_on_shared_axes_in_percent(demo_run):
    summary = read_cv(demo_run)
    fig = curves_figure(summary)
    renderer = drawn(fig)
    accuracy = next(ax for ax in fig.axes if "accuracy" in ax.get_title())
    lines = {line.get_label().split()[0]: line for line in accuracy.lines}
    assert {"student", "simple", "teacher,"} <= set(lines)
    # the student's curve is the mean over the folds of its validation accuracy, in %
    folds = summary["folds"]
    assert list(lines["student"].get_ydata()) == pytest.approx(
        [100 * sum(f["student"]["history"][e]["val_accuracy"] for f in folds) / len(folds)
         for e in range(len(folds[0]["student"]["history"]))])
    assert "%" in accuracy.get_ylabel() and 1 < max(lines["simple"].get_ydata()) <= 100    # a percentage
    assert lines["teacher,"].get_ydata()[0] == pytest.approx(100 * summary["cv"]["teacher"]["mean"])
    loss = next(ax for ax in fig.axes if "loss" in ax.get_title())
    assert {"student", "simple", "teacher"} == {line.get_label().split()[0] for line in loss.lines}
    assert loss.get_shared_x_axes().joined(accuracy, loss)
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None and [t.get_text() for t in legend.get_texts()] == \
            [line.get_label() for line in ax.lines]
    assert_all_inside_figure(fig, renderer)
