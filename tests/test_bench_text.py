"""What the bench table shows of a bundle with several formats per role: each student file against the
teacher's file of its own format, and int8 against fp32 side by side in each runtime, slower said so."""
from __future__ import annotations

from edgekd.device.bench.compare import build_comparisons
from edgekd.device.bench.text import faster, formats_side_by_side, int8_slower_lines, shown_comparisons, side_by_side_markdown


def _model(file: str, role: str, fmt: str, p50: dict[int, float]) -> dict:
    return {"file": file, "role": role, "format": fmt, "bytes": 1000, "accuracy": 0.9, "agreement_with_teacher": None,
            "measurements": [{"threads": t, "batch": 1, "latency_ms": {"p50": v},
                              "memory": {"rss_peak_inference": 2**20, "model_bytes": 2**19}}
                             for t, v in p50.items()]}


def _result() -> dict:
    models = [_model("student.onnx", "student", "onnx", {1: 0.03, 2: 0.02}),
              _model("student.int8.onnx", "student", "onnx-int8", {1: 0.015, 2: 0.04}),
              _model("student.tflite", "student", "tflite", {1: 0.005, 2: 0.004}),
              _model("student.int8.tflite", "student", "tflite-int8", {1: 0.010}),   # 2 threads not measured
              _model("teacher.onnx", "teacher", "onnx", {1: 0.3, 2: 0.2}),
              _model("teacher.int8.tflite", "teacher", "tflite-int8", {1: 0.1, 2: 0.1})]
    return {"models": models, "comparisons": build_comparisons(models), "teacher": "teacher.onnx"}


def test_each_student_file_is_compared_with_the_teachers_file_of_its_format():
    result = _result()
    assert len(result["comparisons"]) == 7 * 2       # bench.json keeps every pair: 7 measurements × 2 teachers
    shown = {(c["model"], c["teacher"]) for c in shown_comparisons(result)}
    assert shown == {("student.onnx", "teacher.onnx"), ("student.int8.tflite", "teacher.int8.tflite"),
                     ("student.int8.onnx", "teacher.onnx"), ("student.tflite", "teacher.onnx")}


def test_int8_against_fp32_per_runtime_and_setting():
    rows = formats_side_by_side(_result())
    got = {(r["role"], r["runtime"], r["threads"]): r["int8 vs fp32"] for r in rows}
    assert got == {("student", "onnxruntime", "1"): "2.00× faster", ("student", "onnxruntime", "2"): "2.00× slower",
                   ("student", "LiteRT", "1"): "2.00× slower", ("student", "LiteRT", "2"): "—"}
    lines = side_by_side_markdown(_result())
    assert lines[1] == "### int8 against fp32, side by side"
    assert "| student | LiteRT | 1 | 1 | 0.0050 | 0.0100 | 2.00× slower |" in lines
    assert side_by_side_markdown({"models": _result()["models"][:1]}) == []     # nothing to pair


def test_a_ratio_below_one_is_said_as_slower():
    assert (faster(1.5), faster(0.5), faster(None)) == ("1.50× faster", "2.00× slower", "—")


def test_an_int8_file_slower_than_its_fp32_file_is_one_line_and_only_then():
    result = _result()
    assert int8_slower_lines(result) == [
        "student.int8.onnx is 2.00× slower than student.onnx on this device (2 threads, batch 1): int8 does not pay here",
        "student.int8.tflite is 2.00× slower than student.tflite on this device (1 thread, batch 1): int8 does not pay "
        "here"]
    result["models"][3]["measurements"][0]["latency_ms"]["p50"] = 0.005       # as fast as fp32: not slower
    assert [line.split()[0] for line in int8_slower_lines(result)] == ["student.int8.onnx"]
