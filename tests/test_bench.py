"""edgekd bench: the whole stage on a real bundle, torch made unimportable, and its bad inputs.

The bundle is the shared ``demo_bundle`` (distill + export, from conftest.py). The bad inputs go
through the CLI's entry point in this process (``run_cli_here``: bench itself needs no process of
its own to refuse them); the torch-free bench runs as real processes.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST_BENCH, FAST_BENCH_ARGS, assert_user_error, run_cli, run_cli_here, torch_blocked

FAST = FAST_BENCH_ARGS


@pytest.fixture
def bundle_copy(demo_bundle, tmp_path) -> Path:
    """A private copy to tamper with."""
    dst = tmp_path / "bundle"
    shutil.copytree(demo_bundle, dst, ignore=shutil.ignore_patterns("bench.json"))
    return dst


# -- what a bench reports ------------------------------------------------------------------------

def test_bench_reports_every_model_of_the_bundle(demo_bench, demo_bundle):
    manifest = json.loads((demo_bundle / "manifest.json").read_text())
    assert demo_bench["schema"] == "edgekd.bench" and demo_bench["schema_version"] == 1
    assert [m["file"] for m in demo_bench["models"]] == [m["file"] for m in manifest["models"]]
    assert json.loads(Path(demo_bench["outputs"]["json"]).read_text())["models"] == demo_bench["models"]
    for m in demo_bench["models"]:
        assert m["bytes"] == manifest["files"][m["file"]]["bytes"]
        assert 0 <= m["accuracy"] <= 1 and m["eval_samples"] == manifest["eval"]["samples"]
        assert 0 <= m["agreement_with_teacher"] <= 1
        [x] = m["measurements"]
        lat, mem = x["latency_ms"], x["memory"]
        assert x["threads"] == 1 and x["batch"] == 1 and lat["runs"] >= 5
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert len(lat["percentiles"]) == 101 and x["warmup"]["runs"] >= 2
        assert x["init_ms"] > 0 and x["first_inference_ms"] > 0
        assert 0 < mem["rss_before_load"] <= mem["rss_peak_inference"] <= mem["rss_peak"]
        assert mem["rss_after_load"] <= mem["rss_peak_inference"]
        assert m["backend"]["backend"] == m["runtime"] and m["backend"]["version"]
    teacher = next(m for m in demo_bench["models"] if m["role"] == "teacher")
    assert demo_bench["teacher"] == teacher["file"] and teacher["agreement_with_teacher"] == 1.0
    tfl = next(m for m in demo_bench["models"] if m["file"].endswith(".tflite"))
    assert tfl["input"]["dtype"] == "int8" and tfl["input"]["scale"] > 0
    assert tfl["backend"]["delegate"] in ("XNNPACK", None)
    students = [m for m in demo_bench["models"] if m["role"] != "teacher"]
    assert len(demo_bench["comparisons"]) == len(students)
    for c in demo_bench["comparisons"]:
        s = next(m for m in demo_bench["models"] if m["file"] == c["model"])
        assert c["size_ratio"] == pytest.approx(s["bytes"] / teacher["bytes"])
        assert c["speedup"] == pytest.approx(teacher["measurements"][0]["latency_ms"]["p50"]
                                             / s["measurements"][0]["latency_ms"]["p50"])
        assert c["accuracy_delta"] == pytest.approx(s["accuracy"] - teacher["accuracy"])
        assert c["memory_ratio"] > 0
    d = demo_bench["device"]
    assert d["cores"] >= 1 and d["python"] and d["os"] and "onnxruntime" in d["packages"]
    assert "temperatures_c" in d["thermal_before"] and "throttled" in d["thermal_after"]


def _independent_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """A plain loop over the eval set with the runtime itself, one sample at a time."""
    correct = 0
    if path.suffix == ".onnx":
        import onnxruntime as ort
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        for xi, yi in zip(x, y):
            correct += int(np.argmax(sess.run(None, {name: xi[None]})[0][0]) == yi)
    else:
        from ai_edge_litert.interpreter import Interpreter
        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        scale, zp = inp["quantization"]
        for xi, yi in zip(x, y):
            q = np.clip(np.rint(xi[None] / scale) + zp, -128, 127).astype(np.int8) if scale else xi[None]
            it.set_tensor(inp["index"], q)
            it.invoke()
            o_scale, o_zp = out["quantization"]
            logits = (it.get_tensor(out["index"]).astype(np.float32) - o_zp) * o_scale
            correct += int(np.argmax(logits[0]) == yi)
    return correct / len(y)


def test_reported_accuracy_equals_an_independent_loop(demo_bench, demo_bundle):
    with np.load(demo_bundle / "eval.npz") as data:
        x, y = data["x"].astype(np.float32), data["y"]
    for m in demo_bench["models"]:
        assert m["accuracy"] == pytest.approx(_independent_accuracy(demo_bundle / m["file"], x, y), abs=1e-12), m["file"]


def test_bench_runs_with_torch_unimportable(demo_bundle, tmp_path):
    env = torch_blocked(tmp_path)
    out, md, png = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "b.png"
    res = run_cli("bench", demo_bundle, *FAST, "--out", out, "--markdown", md, "--plot", png, "--json", env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc == json.loads(out.read_text())
    assert all(m["accuracy"] is not None and m["measurements"][0]["latency_ms"]["p50"] > 0 for m in doc["models"])
    assert "| student" in md.read_text() and png.read_bytes()[:4] == b"\x89PNG"
    # the table too, and a single file without data (random inputs: latency and memory only)
    tfl = next(m["file"] for m in doc["models"] if m["file"].endswith(".tflite"))
    res = run_cli("bench", demo_bundle / tfl, *FAST, "--out", tmp_path / "one.json", env=env)
    assert res.returncode == 0, res.stderr
    assert tfl in res.stdout and "p50" in res.stdout
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["target"]["kind"] == "model" and one["models"][0]["accuracy"] is None
    assert one["models"][0]["format"] == "tflite-int8"


def test_the_cli_starts_without_numpy_or_a_runtime():
    """`edgekd --help` and every usage error stay fast: the CLI loads numpy, runtimes and torch only
    in the command that needs them (importing the bench package once pulled numpy in via run.py)."""
    code = ("import sys, edgekd.app.cli; bad=[m for m in ('numpy', 'edgekd.device.runtimes', 'torch', 'onnxruntime') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_single_file_with_data_and_batches(demo_bundle, tmp_path):
    from edgekd.device.bench.run import run_bench
    r = run_bench(demo_bundle / "student.onnx", data=demo_bundle / "eval.npz", batch=[1, 4],
                     out=False, **FAST_BENCH)
    m = r["models"][0]
    assert m["accuracy"] is not None and m["format"] == "onnx" and m["precision"] == "fp32"
    assert [x["batch"] for x in m["measurements"]] == [1, 4]
    for x in m["measurements"]:
        assert "skipped" in x or x["throughput_per_s"] > 0
    t = run_bench(demo_bundle / "student.int8.tflite", batch=[8], out=False, **FAST_BENCH)
    [x] = t["models"][0]["measurements"]          # a fixed-batch model is skipped, not an error
    assert "skipped" in x or x["latency_ms"]["p50"] > 0


def test_runtime_filter_and_default_threads(demo_bundle, tmp_path):
    from edgekd.device.bench.options import default_threads
    from edgekd.device.bench.run import run_bench
    r = run_bench(demo_bundle, runtime="tflite", out=tmp_path / "b.json",
                     **{**FAST_BENCH, "threads": None})
    assert {m["runtime"] for m in r["models"]} == {"tflite"}
    assert [x["threads"] for x in r["models"][0]["measurements"]] == default_threads()
    assert default_threads()[0] == 1 and r["comparisons"] == []


# -- bad inputs: one clear line, exit 2 -----------------------------------------------------------

def test_missing_bundle(tmp_path):
    assert_user_error(run_cli_here("bench", tmp_path / "nope", *FAST), "not found")


def test_file_whose_sha256_differs_from_the_manifest(bundle_copy):
    p = bundle_copy / "student.onnx"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    assert_user_error(run_cli_here("bench", bundle_copy, *FAST), "student.onnx' does not match the manifest")
    assert not (bundle_copy / "bench.json").exists()


def test_truncated_tflite(demo_bundle, tmp_path):
    p = tmp_path / "student.int8.tflite"
    p.write_bytes((demo_bundle / "student.int8.tflite").read_bytes()[:1500])
    assert_user_error(run_cli_here("bench", p, *FAST), "tflite cannot load")
    assert not (tmp_path / "student.int8.tflite.bench.json").exists()


def test_truncated_tflite_inside_a_consistent_bundle(bundle_copy):
    from edgekd.core.bundle import file_digest
    p = bundle_copy / "student.int8.tflite"
    p.write_bytes(p.read_bytes()[:1500])
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["files"][p.name] = file_digest(p)          # the manifest agrees: the runtime must refuse it
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    assert_user_error(run_cli_here("bench", bundle_copy, *FAST), "tflite cannot load")


def test_random_bytes_named_onnx(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    assert_user_error(run_cli_here("bench", p, *FAST), "onnxruntime cannot load 'model.onnx'")


@pytest.mark.parametrize("arrays, fragment", [
    pytest.param(lambda x, y: dict(x=x.reshape(len(x), -1), y=y), "expects input (batch, 1, 8, 8)",
                 id="flattened x"),
    pytest.param(lambda x, y: dict(x=np.float32(1.0), y=y), "x must be a non-empty batch of samples", id="scalar x"),
    pytest.param(lambda x, y: dict(x=x, y=np.stack([y, y], axis=1)), "y must hold one class index per sample",
                 id="y of shape (N, 2)"),
    pytest.param(lambda x, y: dict(x=x, y=y[:-1]), "y must hold one class index per sample", id="one label short"),
    pytest.param(lambda x, y: dict(x=x, y=y + 0.5), "y must hold class indices", id="fractional labels"),
    pytest.param(lambda x, y: dict(x=x, y=y - 1), "minimum -1", id="negative labels"),
])
def test_eval_npz_of_the_wrong_shape_is_refused_before_measuring(demo_bundle, tmp_path, arrays, fragment):
    bad = tmp_path / "eval.npz"
    with np.load(demo_bundle / "eval.npz") as data:
        np.savez(bad, **arrays(data["x"], data["y"]))
    res = run_cli_here("bench", demo_bundle, *FAST, "--data", bad, "--out", tmp_path / "b.json")
    assert_user_error(res, fragment)
    assert not (tmp_path / "b.json").exists()


def test_piped_table_keeps_every_column_and_the_size_ratio(demo_bundle, tmp_path):
    """A CI log or a pipe is no terminal: the table must still show size, delegate, p99 and each
    comparison's size ratio."""
    res = run_cli_here("bench", demo_bundle, *FAST, "--out", tmp_path / "b.json")
    assert res.returncode == 0, res.stderr
    comparisons = json.loads((tmp_path / "b.json").read_text())["comparisons"]
    assert comparisons and all(h in res.stdout for h in ("size", "delegate", "p99 ms"))
    for c in comparisons:
        [row] = [line for line in res.stdout.splitlines() if f"{c['model']} vs teacher" in line]
        assert f"{c['size_ratio']:.3f}×" in row, res.stdout


def test_manifest_of_a_newer_schema_version(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    assert_user_error(run_cli_here("bench", bundle_copy, *FAST), "schema version 99")


def test_unknown_runtime_name(demo_bundle, bundle_copy):
    res = run_cli_here("bench", demo_bundle, *FAST, "--runtime", "tflit")
    assert_user_error(res, "unknown runtime 'tflit'")
    assert "did you mean 'tflite'" in res.stderr
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["models"][0]["runtime"] = "onnxruntim"
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    res = run_cli_here("bench", bundle_copy, *FAST)
    assert_user_error(res, "unknown runtime 'onnxruntim'")
    assert "did you mean 'onnxruntime'" in res.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--threads", "one"], "threads must be whole numbers"),
    (["--batch", "0"], "batch must be at least 1"),
    (["--runs", "0"], "runs must be at least 1"),
    (["--runs", "200", "--max-runs", "100"], "max_runs must be at least 200"),
])
def test_bad_options(demo_bundle, args, fragment):
    assert_user_error(run_cli_here("bench", demo_bundle, *FAST, *args), fragment)


def test_max_runs_stops_timing_before_min_seconds(demo_bundle, tmp_path):
    from edgekd.device.bench.run import run_bench
    doc = run_bench(demo_bundle / "student.int8.tflite", threads=[1], warmup_seconds=0.0, runs=10,
                    min_seconds=600.0, max_runs=50, out=False)
    [model] = doc["models"]
    assert model["measurements"][0]["latency_ms"]["runs"] == 50


def test_unknown_model_suffix(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(b"x")
    res = run_cli_here("bench", p, *FAST)
    assert_user_error(res, "unknown model file suffix '.pt'")
