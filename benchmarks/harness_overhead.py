"""How much does edgekd's harness add? Latency and memory, measured against plain references.

1. Latency: edgekd's p50 (a fresh child process, `edgekd.device.bench.worker`) for the demo's int8
   TFLite student and ONNX teacher, against a bare loop of the very same runtime call
   (`interpreter.invoke()` / `session.run(...)` on a preallocated input) written inline in
   this process. Several interleaved rounds; the ratio of medians must be <= 1.05.
2. Memory: the child's peak RSS as edgekd reports it, against `/usr/bin/time -v`'s
   "Maximum resident set size" of the same child (the worker run under /usr/bin/time). Within 10%,
   for both figures: the whole child's peak (`rss_peak`) and the peak during inference, before
   the timed samples are stored (`rss_peak_inference`, what the table and the gate show).

    .venv/bin/python benchmarks/harness_overhead.py [--bundle runs/demo/bundle] [--rounds 5] [--seconds 1]

Prints the numbers and writes benchmarks/results/harness_overhead.json. Exit 1 if a check fails.
Without --bundle it uses runs/demo/bundle, or else makes a quick demo with `edgekd distill` +
`edgekd export --int8` (in subprocesses, so torch never enters this process).
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd.device.bench.measure import spawn_worker  # noqa: E402
from edgekd.core.bundle import load_eval_npz, read_manifest, verify  # noqa: E402
from edgekd.core.fsutil import atomic_write_json  # noqa: E402

TIME = "/usr/bin/time"


def find_bundle(arg: str | None) -> tuple[Path, str]:
    if arg:
        return Path(arg), "given"
    demo = ROOT / "runs" / "demo" / "bundle"
    if (demo / "manifest.json").is_file():
        return demo, "runs/demo/bundle"
    tmp = Path(tempfile.mkdtemp(prefix="edgekd-harness-"))
    print(f"note: no runs/demo/bundle; making a quick demo with `edgekd distill` + `edgekd export --int8` in {tmp}")
    quick = ["--folds", "2", "--teacher-epochs", "4", "--student-epochs", "6", "--quiet"]
    for cmd in (["distill", "--out", str(tmp / "run"), *quick], ["export", str(tmp / "run"), "--int8",
                                                                   "--out", str(tmp / "bundle")]):
        subprocess.run([sys.executable, "-m", "edgekd", *cmd], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return tmp / "bundle", "quick demo: edgekd distill (2 folds, short) + edgekd export --int8"


def bare_p50(path: Path, x, seconds: float, min_runs: int) -> float:
    """p50 (ms) of the bare runtime call in this process: nothing but the call inside the timer."""
    import numpy as np
    pc = time.perf_counter_ns
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter
        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        scale, zp = d["quantization"]
        xin = np.clip(np.rint(x / scale) + zp, -128, 127).astype(d["dtype"]) if scale else x.astype(d["dtype"])
        it.set_tensor(d["index"], xin)
        call = it.invoke
    else:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name, out = sess.get_inputs()[0].name, [sess.get_outputs()[0].name]
        feed = {name: x}
        run = sess.run

        def call():  # noqa: E306 - the same call, spelled out in the loop below
            return run(out, feed)
    for _ in range(max(10, min_runs // 10)):
        call()
    times = []
    deadline = pc() + int(seconds * 1e9)
    if path.suffix == ".tflite":
        invoke = it.invoke
        while len(times) < min_runs or pc() < deadline:
            t0 = pc()
            invoke()
            times.append(pc() - t0)
    else:
        while len(times) < min_runs or pc() < deadline:
            t0 = pc()
            run(out, feed)
            times.append(pc() - t0)
    gc.collect()
    return statistics.median(times) / 1e6


def max_rss_kb(stderr: str) -> int | None:
    m = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", stderr)
    return int(m.group(1)) if m else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="timed seconds per measurement")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "harness_overhead.json"))
    args = ap.parse_args()

    have_time = os.access(TIME, os.X_OK)
    if not have_time:
        print(f"NOTE: {TIME} is missing, so the memory check cannot run. Install it with "
              "`apt-get install -y time` (Debian/Ubuntu) and run this again.")

    bundle_dir, origin = find_bundle(args.bundle)
    bundle = read_manifest(bundle_dir)
    verify(bundle)
    eval_file = bundle_dir / bundle.manifest["eval"]["file"]
    x_eval, _ = load_eval_npz(eval_file)
    x1 = x_eval[:1].copy()
    pick = {}
    for m in bundle.models:
        if m["role"] == "student" and m["file"].endswith(".tflite"):
            pick.setdefault("student int8 tflite", m["file"])
        if m["role"] == "teacher" and m["file"].endswith(".onnx"):
            pick.setdefault("teacher onnx", m["file"])
    print(f"bundle: {bundle_dir} ({origin}); {args.rounds} interleaved rounds, >= {args.seconds:g} s and "
          f">= {args.runs} timed runs each, 1 thread, batch 1\n")

    results = {"bundle": str(bundle_dir), "bundle_origin": origin, "rounds": args.rounds,
               "seconds": args.seconds, "runs": args.runs, "python": platform.python_version(),
               "machine": platform.machine(), "cpu_count": os.cpu_count(), "models": {}, "ok": True}
    for label, file in pick.items():
        path = bundle_dir / file
        request = {"path": str(path), "threads": 1, "batch": 1, "warmup": 10, "warmup_seconds": 0.2,
                   "runs": args.runs, "min_seconds": args.seconds, "data": str(eval_file), "evaluate": False}
        edgekd_p50, bare, mem = [], [], []
        for _ in range(args.rounds):
            resp, stderr = spawn_worker(request, prefix=[TIME, "-v"] if have_time else None)
            edgekd_p50.append(resp["latency_ms"]["p50"])
            kb = max_rss_kb(stderr) if have_time else None
            mem.append({"edgekd_rss_peak": resp["memory"]["rss_peak"],
                        "edgekd_rss_peak_inference": resp["memory"]["rss_peak_inference"],
                        "time_v_max_rss": kb * 1024 if kb else None})
            bare.append(bare_p50(path, x1, args.seconds, args.runs))
        e, b = statistics.median(edgekd_p50), statistics.median(bare)
        ratio = e / b
        mem_ratios = [m[key] / m["time_v_max_rss"] for m in mem if m["time_v_max_rss"]
                      for key in ("edgekd_rss_peak", "edgekd_rss_peak_inference")]
        worst = max((abs(r - 1) for r in mem_ratios), default=None)
        entry = {"file": file, "edgekd_p50_ms": e, "bare_p50_ms": b, "ratio": ratio,
                 "edgekd_p50_ms_rounds": edgekd_p50, "bare_p50_ms_rounds": bare,
                 "latency_ok": ratio <= 1.05, "memory": mem, "memory_ratios": mem_ratios,
                 "memory_worst_rel_diff": worst, "memory_ok": worst is not None and worst <= 0.10}
        results["models"][label] = entry
        results["ok"] &= entry["latency_ok"] and (entry["memory_ok"] or not have_time)
        print(f"{label} ({file})")
        print(f"  p50  edgekd {e * 1e3:9.3f} µs   bare loop {b * 1e3:9.3f} µs   ratio {ratio:.3f}  "
              f"{'OK' if entry['latency_ok'] else 'FAIL'} (<= 1.05)")
        if have_time:
            m0 = mem[-1]
            print(f"  peak RSS  edgekd {m0['edgekd_rss_peak'] / 2**20:7.1f} MiB   /usr/bin/time -v "
                  f"{m0['time_v_max_rss'] / 2**20:7.1f} MiB")
            print(f"  peak during inference (the table's) {m0['edgekd_rss_peak_inference'] / 2**20:7.1f} MiB   "
                  f"worst |diff| of either over rounds {worst * 100:.2f}%  "
                  f"{'OK' if entry['memory_ok'] else 'FAIL'} (<= 10%)")
        else:
            print("  memory check skipped: /usr/bin/time missing (apt-get install -y time)")
    results["time_v_available"] = have_time
    atomic_write_json(args.out, results)
    print(f"\nwrote {args.out}; overall {'OK' if results['ok'] else 'FAIL'}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
