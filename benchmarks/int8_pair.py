"""The Fashion-MNIST pair at 28 px for benchmarks/int8_speed.py: the teacher and the student of
benchmarks/fashion_mnist.py, and the same student with a stride-2 stem (``stem_stride=2``), every file
of each timed side by side, the three most expensive op types of each file (``--profile``), each
trained student's accuracy in each format, and issue 28's targets (for the pair's student).

Latency: random weights with BatchNorm statistics (latency does not depend on training), as the variant
rows. Accuracy: trained students of those architectures where their run folders exist (RUNS: the
few-labels benchmark's headline run, and a run of the stride-2 student with all labels and that run's
teacher), exported now by edgekd's exporters and scored in their runtimes on the run's held-out split.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

PAIR = {"teacher": "resnet:depth=8", "student": "mobilenetv3:variant=small,width=0.25",
        "student-s2": "mobilenetv3:variant=small,width=0.25,stem_stride=2"}
SHAPE = (1, 28, 28)
RECORD = Path(__file__).parent / "results" / "int8_pair.json"
SECTION = "int8-pair"
#: trained runs whose students are scored (skipped where absent): the pair's student, 10 % of the labels
#: and the other 90 % as a transfer set; the stride-2 student, all labels, the first run's teacher brought
RUNS = {"student": Path("runs/fashion_mnist_labels/kd_rest"), "student-s2": Path("runs/fashion_mnist_s2")}
#: issue 28's targets for the pair at 28 px, 1 thread
MIN_SPEEDUP, MAX_INT8_DROP = 5.0, 0.5
#: the student's extra column: its tflite-int8 file with HARD_SWISH, as exported before the int8-friendly form
BEFORE = "tflite-int8-hardswish"
ACCURACY_FORMATS = {"onnx": "student.onnx", "onnx-int8": "student.int8.onnx", "tflite": "student.tflite",
                    "tflite-int8": "student.int8.tflite"}


def profile_summary(path: Path, count: int = 3) -> dict:
    """From `bench --profile`'s profile (onnxruntime's profiler; TFLite: each op timed alone), less the
    profiler's (a call's) own cost: the ``count`` costliest op types, the costliest node, and for TFLite
    the delegate's partitions and the ops it did not take."""
    from edgekd.device.runtimes import open_model

    runtime = open_model(path, threads=1)
    p = runtime.profile(runtime.prepare(runtime.random_input(1)))
    top = [{"op": r["op"], "count": r["count"], "ms": round(r["corrected_ms"], 5), "undelegated": r["undelegated"]}
           for r in p["ops"][:count]]
    node = max(p["nodes"], key=lambda n: n["corrected_ms"] or 0.0, default=None)
    return {"top": top, "costliest_node": node and {k: node[k] for k in ("op", "node", "corrected_ms")},
            "partitions": p["partitions"], "undelegated": sum(r["undelegated"] or 0 for r in p["ops"])}


def hard_swish_file(spec: str, folder: Path, model) -> Path:
    """The student's tflite-int8 file as edgekd made it before the int8-friendly form: its HARD_SWISH kept
    (the exporter's rewrite switched off here, for this one file), to show what the form buys."""
    from edgekd.exporters import tflite
    from int8_speed import export_files

    folder.mkdir()
    rewrite = tflite.int8_friendly
    tflite.int8_friendly = lambda module, samples, role: (module, {"hardswish": 0})
    try:
        return export_files(spec, SHAPE, folder, model, columns=["tflite-int8"])["tflite-int8"]
    finally:
        tflite.int8_friendly = rewrite


def measure(seconds: float, profile: bool) -> dict:
    from int8_speed import FILES, export_files, p50_side_by_side, random_model

    with tempfile.TemporaryDirectory(prefix="int8-pair-") as work:
        paths = {}
        for role, spec in PAIR.items():
            folder = Path(work) / role
            folder.mkdir()
            files = export_files(spec, SHAPE, folder, random_model(spec, SHAPE, classes=10))
            paths.update({f"{role}/{column}": path for column, path in files.items()})
        paths[f"student/{BEFORE}"] = hard_swish_file(PAIR["student"], Path(work) / "before",
                                                     random_model(PAIR["student"], SHAPE, classes=10))
        p50 = p50_side_by_side(paths, SHAPE, seconds)
        ops = {key: profile_summary(path) for key, path in paths.items()} if profile else None
    base = p50["teacher/onnx"]
    record = {"pair": PAIR, "input": list(SHAPE), "files": list(FILES), "p50_ms": p50,
              "speed_vs_teacher_onnx": {key: round(base / ms, 3) for key, ms in p50.items()}, "profile": ops,
              "accuracy": {role: accuracy(run) for role, run in RUNS.items() if run.is_dir()},
              "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record["missed"] = missed(record)
    return record


def accuracy(run: Path) -> dict:
    """The trained student of ``run`` in each format, on the run's held-out split: accuracy and the int8
    files' drop in points against the fp32 ONNX file."""
    import edgekd
    from edgekd.device.runtimes import open_model

    with tempfile.TemporaryDirectory(prefix="int8-pair-acc-") as work:
        bundle = Path(work) / "bundle"
        edgekd.export(run, out=bundle, formats=list(ACCURACY_FORMATS), roles=["student"])
        with np.load(bundle / "eval.npz") as data:
            x, y = data["x"], data["y"]
        scores = {fmt: float((open_model(bundle / name, threads=2).predict(x) == y).mean())
                  for fmt, name in ACCURACY_FORMATS.items()}
    return {"run": str(run), "samples": int(len(y)), "accuracy": scores,
            "int8_drop_points": {fmt: round(100 * (scores["onnx"] - scores[fmt]), 2) for fmt in ("tflite-int8", "onnx-int8")}}


def missed(record: dict) -> list[str]:
    p50, speed = record["p50_ms"], record["speed_vs_teacher_onnx"]
    lines = []
    for runtime, int8 in (("tflite", "tflite-int8"), ("onnx", "onnx-int8-u8")):
        ratio = p50[f"student/{int8}"] / p50[f"student/{runtime}"]
        if ratio > 1:
            lines.append(f"MISSED the student's {int8} file takes {ratio:.2f}x its fp32 {runtime} file's time, target <= 1x")
    fastest = max((key for key in speed if key.startswith("student/") and not key.endswith(BEFORE)), key=speed.get)
    if speed[fastest] < MIN_SPEEDUP:
        lines.append(f"MISSED the fastest student file ({fastest.split('/')[1]}) is {speed[fastest]:.2f}x faster than "
                     f"the teacher's fp32 ONNX file, target >= {MIN_SPEEDUP:g}x")
    drops = (record.get("accuracy") or {}).get("student", {}).get("int8_drop_points", {})
    lines += [f"MISSED the trained student's {fmt} file loses {drop:.2f} points against fp32, target <= {MAX_INT8_DROP}"
              for fmt, drop in drops.items() if drop > MAX_INT8_DROP]
    return lines


def _ops_text(summary: dict | None) -> str:
    if not summary:
        return ""
    text = ", ".join(f"{op['op']} ×{op['count']} {op['ms'] * 1e3:.0f} µs" for op in summary["top"])
    if summary["partitions"] is not None:
        text += f"; {summary['partitions']} XNNPACK partition{'s' if summary['partitions'] != 1 else ''}" + (
            f", {summary['undelegated']} ops not delegated" if summary["undelegated"] else "")
    return text


def findings(record: dict) -> list[str]:
    """What the profile shows about the student's int8 file, in numbers from the record."""
    p50, summary = record["p50_ms"], record.get("profile") or {}
    before, after = summary.get(f"student/{BEFORE}"), summary.get("student/tflite-int8")
    lines = [f"- The int8-friendly hard-swish: the student's tflite-int8 file took {p50[f'student/{BEFORE}'] * 1e3:.0f} µs "
             f"with HARD_SWISH" + (f" ({before['undelegated']} ops not delegated, {before['partitions']} partitions)"
                                   if before else "") + f", {p50['student/tflite-int8'] * 1e3:.0f} µs with the form"
             + (f" ({after['partitions']} partition{'s' if after['partitions'] != 1 else ''})" if after else "") + "."]
    for column in ("tflite-int8", "tflite"):
        node = (summary.get(f"student/{column}") or {}).get("costliest_node")
        if node:
            lines.append(f"- The costliest op of the student's {column} file, timed alone: {node['op']} "
                         f"`{node['node'][-60:]}`, {node['corrected_ms'] * 1e3:.1f} µs.")
    return lines


def render(record: dict) -> str:
    p50, speed, ops = record["p50_ms"], record["speed_vs_teacher_onnx"], record.get("profile") or {}
    lines = ["| file | p50 µs | speed vs the teacher's fp32 ONNX | three costliest op types (profile) |",
             "|---|---:|---:|---|"]
    for key in p50:
        role, column = key.split("/")
        lines.append(f"| {role} {column} | {p50[key] * 1e3:.0f} | {speed[key]:.2f}× | {_ops_text(ops.get(key))} |")
    for role, acc in (record.get("accuracy") or {}).items():
        scores = ", ".join(f"{fmt} {value:.2%}" for fmt, value in acc["accuracy"].items())
        drops = ", ".join(f"{fmt} {drop:.2f}" for fmt, drop in acc["int8_drop_points"].items())
        lines += ["", f"Trained {role} (`{acc['run']}`, {acc['samples']:,} held-out images): {scores}; "
                      f"int8 drop in points against its fp32 ONNX file: {drops}."]
    m = record["machine"]
    lines += ["", f"Measured on {m['cores']} cores ({m['cpu']}, int8 instructions: {', '.join(m['int8_instructions'])}, "
                  f"load average {record['load_average']:.1f}), 1 thread, batch 1, {record['measured_utc']}."]
    lines += [""] + findings(record) if ops else []
    lines += [f"- {line}" for line in record["missed"]] or ["- every target for the pair's student met"]
    return "\n".join(lines)


def write(record: dict) -> None:
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps(record, indent=2) + "\n")
