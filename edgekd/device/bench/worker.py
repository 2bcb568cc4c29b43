"""The child process that measures one model: ``python -m edgekd.device.bench.worker REQ.json RESP.json``.

Runs in a fresh interpreter so the memory it reports is the model's own. Torch-free.
The request and the response are JSON files (stdout is left to native libraries,
which print there). Request keys: path, runtime, threads, batch, providers, warmup,
warmup_seconds, runs, min_seconds, max_runs (these five: bench's DEFAULTS where absent), data
(eval.npz or null), evaluate, profile (Runtime.profile, after everything else), seed, parent_pid (the
process this child must not outlive, or null), pixels (the manifest's preprocessing for a file that takes
pixels, ``export --input uint8``: the eval samples are given as their pixels; else null).
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import time
import traceback
from array import array
from pathlib import Path

import numpy as np

from edgekd.core.bundle import load_eval_npz
from edgekd.core.errors import EdgeKDError
from edgekd.core.preprocess import to_pixels
from edgekd.device.bench import memory
from edgekd.device.bench.classes import class_counts
from edgekd.device.bench.options import DEFAULTS
from edgekd.device.bench.target import check_classes
from edgekd.device.runtimes import UnsupportedBatch, open_model, runtime_for, runtime_row

#: --profile's runs (and warm-up runs) at most: onnxruntime writes an event per node and run, and a
#: TFLite profile runs each op that often; --runs may be millions
PROFILE_RUNS = 200


def _stats(times_ns) -> dict:
    """min/p50/p90/p99/max/mean/std in ms, and every whole percentile (for plots); sorts in place."""
    t = np.frombuffer(times_ns, dtype=np.int64) if isinstance(times_ns, array) else np.asarray(times_ns, np.int64)
    n = int(t.size)
    mean = float(t.mean()) / 1e6
    std = float(t.std(ddof=1)) / 1e6 if n > 1 else 0.0
    t.sort()                                           # in place: no copy of a long sample
    pct = np.percentile(t, np.arange(101), overwrite_input=True) / 1e6
    return {"runs": n, "seconds": float(t.sum()) / 1e9,
            "min": float(t[0]) / 1e6, "p50": float(pct[50]), "p90": float(pct[90]), "p99": float(pct[99]),
            "max": float(t[-1]) / 1e6, "mean": mean, "std": std,
            "percentiles": [round(float(v), 6) for v in pct]}


def timed_loop(call, runs: int, min_seconds: float, max_runs: int):
    """Run ``call`` until both ``runs`` calls and ``min_seconds`` have passed; only the call is timed."""
    pc = time.perf_counter_ns
    times = array("q")          # 8 bytes a run: the harness adds little to the child's memory
    append = times.append
    deadline = pc() + int(min_seconds * 1e9)
    n = 0
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        while True:
            t0 = pc()
            call()
            t1 = pc()
            append(t1 - t0)
            n += 1
            if (n >= runs and t1 >= deadline) or n >= max_runs:
                break
    finally:
        if was:
            gc.enable()
    return times


def warm_up(call, count: int, seconds: float) -> dict:
    pc = time.perf_counter
    start = pc()
    n = 0
    while n < count or pc() - start < seconds:
        call()
        n += 1
    return {"runs": n, "seconds": pc() - start}


def measure(req: dict) -> dict:
    """One model, one setting: load, first inference, warm-up, the timed loop, memory, and (asked
    to) accuracy. Every setting is the parent's; one it did not send is taken from DEFAULTS."""
    # import the runtime's package before "before load", so the figure is the model's own
    runtime_row(runtime_for(req["path"], req.get("runtime"))).import_backend()
    x_eval, y_eval = _eval_data(req)
    gc.collect()
    rss_before = memory.rss_bytes()
    rt, init_ms = _load(req)
    rss_loaded = memory.rss_bytes()

    batch = int(req["batch"])
    prepared = rt.prepare(_batch_input(rt, req, batch, x_eval))        # quantized once, outside the timer
    call = rt.bind(prepared)
    t0 = time.perf_counter()
    raw = call()
    first_ms = (time.perf_counter() - t0) * 1e3
    out_shape = list(rt.fetch(raw).shape)
    if y_eval is not None:
        check_classes(y_eval, out_shape[-1], Path(req["data"]).name)   # a single file: its output tells

    warm = warm_up(call, int(_setting(req, "warmup")), float(_setting(req, "warmup_seconds")))
    peak_inference = memory.peak_rss_bytes()    # load + first inference + warm-up, before timing storage
    times = timed_loop(call, int(_setting(req, "runs")), float(_setting(req, "min_seconds")),
                       int(_setting(req, "max_runs")))
    latency = _stats(times)
    rss_after_runs = memory.rss_bytes()

    result = {"ok": True, "runtime": rt.info(), "threads": req.get("threads"), "batch": batch,
              "init_ms": init_ms, "first_inference_ms": first_ms, "output_shape": out_shape,
              "warmup": warm, "latency_ms": latency,
              "throughput_per_s": batch * 1e3 / latency["p50"] if latency["p50"] > 0 else None}
    if req.get("evaluate") and x_eval is not None:
        result["eval"] = _evaluate(rt, x_eval, y_eval)
    result["memory"] = {"rss_before_load": rss_before, "rss_after_load": rss_loaded,
                        "rss_peak_inference": peak_inference, "rss_after_runs": rss_after_runs,
                        "rss_peak": memory.peak_rss_bytes(), "source": memory.source()}
    if req.get("profile"):      # after the timing and the memory figures, which it must not touch
        runs, warmup = min(int(_setting(req, "runs")), PROFILE_RUNS), min(int(_setting(req, "warmup")), PROFILE_RUNS)
        result["profile"] = {**rt.profile(prepared, runs=runs, warmup=warmup),
                             "threads": req.get("threads"), "batch": batch, "p50_ms": latency["p50"]}
    return result


def _setting(req: dict, key: str):
    """A timing setting: the parent's (run_bench sends them all), else bench's own default."""
    return req[key] if key in req else DEFAULTS[key]


def _eval_data(req: dict):
    """(x, y) of the request's eval.npz, or (None, None) without one."""
    if not req.get("data"):
        return None, None
    x, y = load_eval_npz(Path(req["data"]))
    return (to_pixels(req["pixels"], x, "NHWC") if req.get("pixels") else x), y


def _load(req: dict):
    """The opened model and the milliseconds opening it took."""
    t0 = time.perf_counter()
    rt = open_model(req["path"], threads=req.get("threads"), providers=req.get("providers"),
                    runtime=req.get("runtime"))
    return rt, (time.perf_counter() - t0) * 1e3


def _batch_input(rt, req: dict, batch: int, x_eval):
    """``batch`` samples: the eval data's, repeated as needed, else seeded random input of the model's shape."""
    if x_eval is None:
        return rt.random_input(batch, seed=int(req.get("seed") or 0))
    rt.check_sample_shape(x_eval.shape[1:], what=f"'{Path(req['data']).name}'")
    if not len(x_eval):
        return rt.random_input(batch)
    return np.concatenate([x_eval] * -(-batch // len(x_eval)))[:batch]


def _evaluate(rt, x_eval, y_eval) -> dict:
    """Accuracy, the top-1 predictions (for agreement and lost classes) and the per-class counts, from
    one pass of logits (top-5 needs them; ``rt.predict`` is their argmax, in the same batches)."""
    t0 = time.perf_counter()
    logits = rt.logits(x_eval, 64)
    pred = np.argmax(logits, axis=1)
    seconds = time.perf_counter() - t0
    return {"samples": int(len(x_eval)), "seconds": seconds,
            "accuracy": float(np.mean(pred == y_eval)) if len(y_eval) else None,
            "predictions": pred.astype(int).tolist(), "classes": class_counts(logits, y_eval)}


def _die_with_parent(parent_pid: int | None) -> bool:
    """Ask Linux to SIGKILL this child when its parent dies: a parent killed outright (SIGKILL, the
    OOM killer) cannot end it, and it would measure on at full CPU. False when the parent is already
    gone. Elsewhere (no prctl) the parent's own cleanup on SIGTERM/Ctrl-C is all there is."""
    if not sys.platform.startswith("linux"):
        return True
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)    # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return True
    # the parent may have died before prctl ran: then this child has another parent already
    return parent_pid is None or os.getppid() == parent_pid


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    req_path, resp_path = argv
    with open(req_path) as f:
        req = json.load(f)
    if not _die_with_parent(req.get("parent_pid")):
        return 1
    try:
        resp = measure(req)
    except UnsupportedBatch as exc:
        resp = {"ok": False, "skip": exc.message}
    except EdgeKDError as exc:
        resp = {"ok": False, "error": {"kind": exc.kind, "message": exc.message, "hint": exc.hint}}
    except Exception as exc:  # a bug or an unexpected runtime failure: keep the traceback
        resp = {"ok": False, "crash": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    with open(resp_path, "w") as f:
        json.dump(resp, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
