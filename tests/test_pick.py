"""The fastest file, chosen by measurement: the one rule (edgekd.device.bench.pick) on hand-made
candidates, and bench's recommendation and int8-slower lines on real benches of a bundle with every
format, each checked against bench.json's raw numbers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FAST_BENCH
from rich.console import Console

from edgekd.app.render.bench import render_table
from edgekd.device.bench.compare import build_comparisons
from edgekd.device.bench.gate import bench_and_check
from edgekd.device.bench.pick import BUDGET, NEAR_BEST, UNCHECKED, UNMEASURED, Candidate, choose, recommendations
from edgekd.device.bench.run import run_bench
from edgekd.device.bench.text import bench_markdown, int8_slower_lines, recommendation_lines
from edgekd.device.runtimes import ROWS

FORMATS = ["onnx", "onnx-int8", "tflite", "tflite-int8"]


# -- the rule on hand-made candidates -----------------------------------------------------------

def test_a_budget_excludes_the_fastest_file_and_says_why():
    cands = [Candidate(0.95, 1.0, 100, failed=("FAIL  a max_bytes  …",)), Candidate(0.80, 2.0, 100, failed=()),
             Candidate(0.99, 3.0, 100, failed=()), Candidate(0.99, 0.5, 100)]
    choice = choose(cands)
    # 0 fails, 3 has no check of its own; 1 is picked though 20 points below the best: the budget decides
    assert (choice.index, choice.rule) == (1, BUDGET)
    assert choice.excluded == [(0, "FAIL  a max_bytes  …"), (3, UNCHECKED)]
    assert choose([Candidate(0.9, 1.0, 1, failed=("FAIL",))]).index is None      # none passes: no pick


def test_without_a_budget_the_fastest_within_1_point_of_the_best():
    cands = [Candidate(0.900, 1.0, 100), Candidate(0.915, 2.0, 100), Candidate(0.920, 3.0, 100),
             Candidate(0.925, 4.0, 100)]
    choice = choose(cands)
    assert (choice.index, choice.rule) == (1, NEAR_BEST)        # 0.915 is exactly 1 point below 0.925: in
    assert choice.excluded == [(0, "90.00%, 2.50 points below the best (92.50%)")]
    assert choose(cands, by="size").index == 3                  # same size: the more accurate


def test_ties_go_to_the_more_accurate_then_the_smaller():
    cands = [Candidate(0.90, 1.0, 300), Candidate(0.905, 1.0, 500), Candidate(0.905, 1.0, 400, memory=9.0),
             Candidate(0.905, 1.0, 400, memory=8.0)]
    assert choose(cands).index == 3
    assert choose(cands[:2]).index == 1
    assert choose([Candidate(0.9, 1.0, 500), Candidate(0.9, 1.0, 400)]).index == 1


def test_unknown_accuracy_is_latency_only_and_left_out_beside_known_ones():
    choice = choose([Candidate(None, 2.0, 100), Candidate(None, 1.0, 200)])
    assert (choice.index, choice.rule, choice.excluded) == (1, UNMEASURED, [])
    choice = choose([Candidate(None, 1.0, 100), Candidate(0.5, 2.0, 200)])
    assert (choice.index, choice.excluded) == (1, [(0, "accuracy not measured")])


def _model(file: str, role: str, fmt: str, p50: float, accuracy: float | None, precision: str) -> dict:
    runtime = "tflite" if "tflite" in fmt else "onnxruntime"
    return {"file": file, "role": role, "format": fmt, "precision": precision, "runtime": runtime, "bytes": 1000,
            "accuracy": accuracy, "agreement_with_teacher": None,
            "measurements": [{"threads": 1, "batch": 1, "latency_ms": {"p50": p50},
                              "memory": {"rss_peak_inference": 2**20, "model_bytes": 2**19}}]}


def test_the_speedup_is_over_the_fp32_onnx_teacher_whatever_the_order():
    models = [_model("teacher.int8.onnx", "teacher", "onnx-int8", 0.5, 0.95, "uint8"),
              _model("teacher.tflite", "teacher", "tflite", 0.8, 0.95, "fp32"),
              _model("teacher.onnx", "teacher", "onnx", 1.0, 0.95, "fp32"),
              _model("student.onnx", "student", "onnx", 0.25, 0.90, "fp32"),
              _model("student.int8.tflite", "student", "tflite-int8", 0.1, 0.85, "int8")]
    result = {"models": models, "comparisons": build_comparisons(models)}
    teacher, student = recommendations(result)
    assert (teacher["file"], teacher["speedup_vs_teacher"]) == ("teacher.int8.onnx", 2.0)
    assert (student["file"], student["teacher"], student["speedup_vs_teacher"]) == ("student.onnx", "teacher.onnx", 4.0)
    assert student["excluded"] == [{"file": "student.int8.tflite", "why": "85.00%, 5.00 points below the best (90.00%)"}]
    assert recommendation_lines({**result, "recommendation": [student]}) == [
        "recommended student file: student.onnx — 0.2500 ms p50, 4.00× faster than the teacher's teacher.onnx; "
        "fastest within 1 point of the best student accuracy (left out: student.int8.tflite)"]
    single = recommendations({"models": [_model("model.onnx", "model", "onnx", 0.3, None, "fp32")]})
    assert recommendation_lines({"recommendation": single}) == [
        "recommended model file: model.onnx — 0.3000 ms p50; fastest, accuracy not measured"]


# -- real benches --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def every_format(demo_run, tmp_path_factory) -> tuple[Path, dict]:
    """A bundle of the demo run in all four formats per role, benched once (FAST_BENCH)."""
    import edgekd

    root = tmp_path_factory.mktemp("every_format")
    edgekd.export(demo_run, out=root / "bundle", formats=FORMATS, calibration_samples=32)
    run_bench(root / "bundle", out=root / "bench.json", **FAST_BENCH)
    return root, json.loads((root / "bench.json").read_text())


def _raw(doc: dict, role: str) -> list[dict]:
    return [{"file": m["file"], "accuracy": m["accuracy"], "p50": m["measurements"][0]["latency_ms"]["p50"],
             "bytes": m["bytes"]} for m in doc["models"] if m["role"] == role]


def _fastest(files: list[dict]) -> str:
    return min(files, key=lambda r: (r["p50"], -r["accuracy"], r["bytes"]))["file"]


def test_the_recommendation_is_the_fastest_file_within_1_point_of_the_best(every_format):
    root, doc = every_format
    recs = {r["role"]: r for r in doc["recommendation"]}
    assert set(recs) == {"student", "teacher"}
    teacher_p50 = next(m for m in doc["models"] if m["file"] == "teacher.onnx")["measurements"][0]["latency_ms"]["p50"]
    for role, rec in recs.items():
        raw = _raw(doc, role)
        best = max(r["accuracy"] for r in raw)
        within = [r for r in raw if round(best - r["accuracy"], 9) <= 0.01]
        mine = next(r for r in raw if r["file"] == _fastest(within))
        assert (rec["file"], rec["rule"], rec["p50_ms"]) == (mine["file"], NEAR_BEST, mine["p50"])
        assert rec["teacher"] == "teacher.onnx" and rec["speedup_vs_teacher"] == pytest.approx(teacher_p50 / mine["p50"])
        assert sorted(e["file"] for e in rec["excluded"]) == sorted(r["file"] for r in raw if r not in within)
    console = Console(record=True, width=250)
    render_table(doc, console)
    shown, markdown = console.export_text(), bench_markdown(doc)
    for line in recommendation_lines(doc):
        assert line in shown and f"- {line}" in markdown


def test_a_budget_can_rule_out_the_fastest_student_file(every_format):
    root, first = every_format
    fastest = _fastest(_raw(first, "student"))
    (root / "budget.toml").write_text(f'[student]\nmin_accuracy_percent = 0\n["{fastest}"]\nmax_bytes = 1\n')
    doc, report = bench_and_check(root / "bundle", budget=root / "budget.toml", repeat=1,
                                  out=root / "budgeted.json", **FAST_BENCH)
    assert not report.passed
    rec = next(r for r in doc["recommendation"] if r["role"] == "student")
    assert (rec["rule"], rec["file"]) == (BUDGET, _fastest([r for r in _raw(doc, "student") if r["file"] != fastest]))
    [left] = rec["excluded"]
    assert left["file"] == fastest and "max_bytes" in left["why"]
    teacher = next(r for r in doc["recommendation"] if r["role"] == "teacher")     # the budget checks no teacher
    assert teacher["rule"] == NEAR_BEST
    assert json.loads((root / "budgeted.json").read_text())["recommendation"] == doc["recommendation"]


def test_an_int8_file_slower_than_fp32_is_said_in_one_line_exactly_then(every_format):
    _, doc = every_format
    p50 = {m["file"]: m["measurements"][0]["latency_ms"]["p50"] for m in doc["models"]}
    fmt = {(m["role"], m["format"]): m["file"] for m in doc["models"]}
    pairs = [(fmt[role, row.int8_format], fmt[role, row.export_format]) for role in ("student", "teacher")
             for row in ROWS if row.int8_format]
    assert len(pairs) == 4
    expected = [f"{q} is {p50[q] / p50[f]:.2f}× slower than {f} on this device (1 thread, batch 1): int8 does not "
                "pay here" for q, f in pairs if p50[q] > p50[f]]
    assert sorted(int8_slower_lines(doc)) == sorted(expected)
