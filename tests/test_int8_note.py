"""An int8 file larger (or, on the device, slower) than the fp32 file it stands in for is said in one line
by export and bench. The demo's tiny student is such a case for real (its int8 TFLite outweighs its
ONNX file: the format and the scales cost more than the weights save); the demo's teacher, ten times
the parameters, is not."""
from __future__ import annotations

import io
import json

import pytest
from conftest import FAST_BENCH
from rich.console import Console

import edgekd
from edgekd.app.render.bench import render_table
from edgekd.app.render.export import print_export_summary
from edgekd.core.numbers import ms, size
from edgekd.device.bench.run import run_bench
from edgekd.device.bench.text import bench_markdown, int8_cost_lines, int8_references


def _by_file(models: list[dict]) -> dict[str, dict]:
    return {m["file"]: m for m in models}


def _export_text(bundle) -> str:
    screen = Console(file=io.StringIO(), width=200)
    print_export_summary(json.loads((bundle / "export.json").read_text()), screen)
    return screen.file.getvalue()


def _bench_text(doc: dict) -> str:
    screen = Console(file=io.StringIO(), width=200)
    render_table(doc, screen)
    return screen.file.getvalue()


@pytest.fixture(scope="module")
def teacher_bundle(demo_run, tmp_path_factory):
    """The demo teacher as fp32 ONNX and int8 TFLite, benched: its int8 file is the smaller one."""
    out = tmp_path_factory.mktemp("teacher_int8") / "bundle"
    edgekd.export(demo_run, out=out, formats=["onnx", "tflite-int8"], roles=["teacher"])
    return out, run_bench(out, out=out.parent / "bench.json", **FAST_BENCH)


def test_export_says_when_the_int8_file_is_larger(demo_bundle):
    files = _by_file(json.loads((demo_bundle / "export.json").read_text())["models"])
    q, f = files["student.int8.tflite"], files["student.onnx"]
    assert q["bytes"] > f["bytes"]          # the tiny student, for real
    note = (f"note: student.int8.tflite is larger than student.onnx ({size(q['bytes'])} vs {size(f['bytes'])}): "
            "this student is too small for int8 to save space")
    lines = _export_text(demo_bundle).splitlines()
    assert note in lines and sum("is larger than" in line for line in lines) == 1


def test_bench_says_when_the_int8_file_is_larger_and_whether_slower(demo_bench):
    files = _by_file(demo_bench["models"])
    q, f = files["student.int8.tflite"], files["student.onnx"]
    fp32, int8 = f["measurements"][0]["latency_ms"]["p50"], q["measurements"][0]["latency_ms"]["p50"]
    sizes = f"{size(q['bytes'])} vs {size(f['bytes'])}"
    if int8 > fp32:          # the speed is this machine's: the line says which it measured
        note = (f"note: student.int8.tflite is larger and slower than student.onnx ({sizes}; p50 {ms(int8)} vs "
                f"{ms(fp32)} ms at 1 thread, batch 1): this student is too small for int8 to pay")
    else:
        note = f"note: student.int8.tflite is larger than student.onnx ({sizes}): this student is too small for int8 " \
               "to save space"
    assert int8_cost_lines(demo_bench) == [note]
    assert note in _bench_text(demo_bench).splitlines()
    assert f"- {note}" in bench_markdown(demo_bench).splitlines()


def test_a_smaller_int8_file_gets_no_size_note(teacher_bundle):
    bundle, doc = teacher_bundle
    files = _by_file(doc["models"])
    assert files["teacher.int8.tflite"]["bytes"] < files["teacher.onnx"]["bytes"]
    assert "note:" not in _export_text(bundle)
    assert not any("larger" in line for line in int8_cost_lines(doc))
    assert "larger" not in _bench_text(doc) and "larger" not in bench_markdown(doc)


def _model(file: str, fmt: str, nbytes: int, p50: float) -> dict:
    return {"file": file, "role": "student", "format": fmt, "bytes": nbytes, "accuracy": 0.9,
            "agreement_with_teacher": None, "measurements": [{"threads": 1, "batch": 1, "latency_ms": {"p50": p50},
                                                              "memory": {"rss_peak_inference": 1, "model_bytes": 1}}]}


def test_each_int8_file_is_set_against_its_own_runtimes_fp32_file_else_the_roles_first():
    models = [_model("student.onnx", "onnx", 1000, 0.02), _model("student.tflite", "tflite", 900, 0.01),
              _model("student.int8.tflite", "tflite-int8", 300, 0.03),
              _model("student.int8.onnx", "onnx-int8", 300, 0.01)]
    pairs = [(q["file"], f["file"]) for q, f in int8_references(models)]
    assert pairs == [("student.int8.tflite", "student.tflite"), ("student.int8.onnx", "student.onnx")]
    # slower than its own runtime's file: int8_slower_lines (under the side-by-side table) says that, not this
    assert int8_cost_lines({"models": models}) == []
    only_onnx = [models[0], models[2]]      # the default bundle's pair: another runtime, slower, smaller
    assert int8_cost_lines({"models": only_onnx}) == [
        "note: student.int8.tflite is slower than student.onnx on this device (p50 0.0300 vs 0.0200 ms at 1 thread, "
        "batch 1): int8 does not pay here"]
