"""``edgekd bench``: accuracy, latency and memory of every model of a bundle, on this device.

Torch-free (the device side runs with numpy + a runtime). Every model is measured in
its own fresh child process (:mod:`edgekd.bench.worker`), once per (threads, batch)
setting; this process only verifies, orchestrates and reports. The result is the
``bench.json`` document (schema :data:`SCHEMA_VERSION`, documented in the README).
"""
from __future__ import annotations

import math
import numbers
import os
from datetime import datetime, timezone
from pathlib import Path
from statistics import median_low
from typing import Callable, Iterable

from ..errors import BundleError, ConfigError, DataError, EdgeKDError
from ..fsutil import check_output_path

SCHEMA = "edgekd.bench"
SCHEMA_VERSION = 1

#: max_runs caps the timed calls of a fast model (a 1 µs call would reach 2 s after 2 million):
#: 100,000 samples give stable percentiles and keep the stored timings (8 bytes each) under 1 MB
#: of the child's memory, which is measured alongside
DEFAULTS = {"warmup": 10, "warmup_seconds": 0.5, "runs": 100, "min_seconds": 2.0, "max_runs": 100_000}

#: the largest sane value of each numeric option: beyond it a value is a typo, not a wish (--threads
#: 100000 hung a worker, --warmup-seconds inf warmed up forever); threads: THREADS_PER_CORE × cores
LIMITS = {"threads": None, "batch": 65536, "warmup": 1e6, "warmup_seconds": 3600.0, "runs": 1e7,
          "min_seconds": 3600.0, "max_runs": 1e7, "repeat": 1000, "timeout": 86400.0, "seed": 2**32 - 1}
THREADS_PER_CORE = 4

Progress = Callable[[int, int, str], None]


def default_threads() -> list[int]:
    """1 and all cores (just [1] on a single-core device)."""
    from .device import cores
    return sorted({1, cores()})


def parse_list(text: str | Iterable | None, what: str, allow_all: bool = False) -> list[int] | None:
    """'1,4' → [1, 4]; 'all' → the core count (threads). None stays None (the default).
    Each must be from 1 to LIMITS[what] (threads: THREADS_PER_CORE × the cores here)."""
    if text is None:
        return None
    from .device import cores
    top, why = LIMITS[what], ""
    if what == "threads":
        top, why = THREADS_PER_CORE * cores(), f" ({THREADS_PER_CORE} × the {cores()} cores here)"
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        s = str(item).strip().lower()
        if allow_all and s in ("all", "max"):
            from .device import cores
            out.append(cores())
            continue
        try:
            v = int(s)
        except ValueError:
            raise ConfigError(f"{what} must be whole numbers separated by commas, got '{text}'",
                              hint=f"e.g. --{what} 1,4" + (" (or 'all')" if allow_all else "")) from None
        if not 1 <= v <= top:
            raise ConfigError(f"{what} must be at least 1 and at most {top}{why}, got {v}")
        out.append(v)
    if not out:
        raise ConfigError(f"{what} is empty")
    return list(dict.fromkeys(out))


def _check_number(name: str, value, minimum: float, whole: bool = False) -> None:
    """A finite number (a whole one for counts) from ``minimum`` to LIMITS[name]."""
    fine = isinstance(value, numbers.Integral if whole else numbers.Real) and not isinstance(value, bool) \
        and (isinstance(value, numbers.Integral) or math.isfinite(value))
    if not (fine and minimum <= value <= LIMITS[name]):
        raise ConfigError(f"{name} must be at least {_shown(minimum)} and at most {_shown(LIMITS[name])}"
                          f"{' (a whole number)' if whole else ''}, got {value}")


def _shown(bound: float) -> str:
    return f"{bound:,.0f}" if float(bound).is_integer() else f"{bound:g}"


def _default_out(target: Path, kind: str) -> Path:
    return target / "bench.json" if kind == "bundle" else target.with_name(target.name + ".bench.json")


def resolve_target(target: str | os.PathLike, data=None, runtime: str | None = None) -> dict:
    """What to bench: the verified bundle's models (sha256 checked first) or one model file."""
    from .. import bundle as bundle_mod
    from ..runtimes import canonical_runtime, runtime_for
    from ..runtimes.onnx_external import refuse_external_data

    path = Path(target)
    want = canonical_runtime(runtime) if runtime else None
    if not path.exists():
        hint = "create a bundle with: edgekd export RUN_DIR" if not path.suffix else None
        raise BundleError(f"'{path}' not found (expected a bundle folder or a .onnx/.tflite file)", hint=hint)
    if path.is_dir():
        bundle = bundle_mod.read_manifest(path)
        bundle_mod.verify(bundle)                      # sha256 of every file, before anything runs
        files = bundle.manifest["files"]             # read_manifest: lists every model and the eval data
        models, inputs = [], {}
        for m in bundle.models:
            rt = runtime_for(m["file"], m.get("runtime"))
            if want and rt != want:
                continue
            if rt == "onnxruntime":
                refuse_external_data(path / m["file"], m["file"])
            inputs[m["file"]] = (m.get("input") or {}).get("shape")
            models.append({"file": m["file"], "path": str(path / m["file"]), "role": m.get("role", "model"),
                           "format": m.get("format"), "precision": m.get("precision"), "runtime": rt,
                           "bytes": files[m["file"]]["bytes"], "sha256": files[m["file"]]["sha256"],
                           "parameters": m.get("parameters"), "macs": m.get("macs"),
                           "reference_accuracy": m.get("reference_accuracy")})
        if not models:
            raise ConfigError(f"the bundle has no model for runtime '{runtime}'" if want
                              else "the bundle lists no models")
        eval_path = Path(data) if data else path / bundle.manifest["eval"]["file"]
        info = {"kind": "bundle", "path": str(path), "manifest_schema_version": bundle.manifest["schema_version"],
                "labels": bundle.manifest.get("labels"), "created_utc": bundle.manifest.get("created_utc"),
                "edgekd_version": bundle.manifest.get("edgekd_version")}
    else:
        rt = runtime_for(path, runtime)
        digest = bundle_mod.file_digest(path)
        models = [{"file": path.name, "path": str(path), "role": "model", "format": None, "precision": None,
                   "runtime": rt, **digest, "parameters": None, "macs": None, "reference_accuracy": None}]
        eval_path = Path(data) if data else None
        info, inputs = {"kind": "model", "path": str(path)}, {}     # the child checks the file's own input
    if eval_path is not None:
        if not eval_path.is_file():
            raise DataError(f"eval data '{eval_path}' not found")
        x, y = bundle_mod.load_eval_npz(eval_path)    # readable, has x and y — before any child runs
        labels = info.get("labels")
        check_eval(x, y, eval_path, inputs, len(labels) if isinstance(labels, list) else None)
        # the digest lets the gate tell a baseline measured on other eval data
        info["eval"] = {"file": str(eval_path), "samples": int(len(x)), "sample_shape": list(x.shape[1:]),
                        "sha256": bundle_mod.file_digest(eval_path)["sha256"]}
    return {"target": info, "models": models, "eval_path": str(eval_path) if eval_path else None}


def check_eval(x, y, where: Path, inputs: dict, classes: int | None = None) -> None:
    """x: a batch of finite samples that fit each model's input shape (``inputs``: file → the
    manifest's shape, batch first); y: one class index per sample, below ``classes`` when known
    (a label no model can predict, or a NaN input, would be scored as a silent miss)."""
    import numpy as np

    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"'{where}': x must be a non-empty batch of samples, got shape {x.shape}",
                        hint="x is (samples, ...) like the model's input, y is (samples,)")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"'{where}': y must hold one class index per sample, shape ({len(x)},), "
                        f"got shape {y.shape}", hint="y is (samples,) of whole numbers")
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))      # one pass over the eval data
    if bad:
        raise DataError(f"'{where}': x holds {bad} values that are not "
                        "finite (NaN or infinity)", hint="eval data must be preprocessed, finite numbers")
    check_classes(y, classes, where)
    from ..runtimes.base import check_sample_shape

    for file, want in inputs.items():
        if isinstance(want, list) and want:
            check_sample_shape(x.shape[1:], want, file, f"'{where}'")


def check_classes(y, classes: int | None, where) -> None:
    """Every label names one of the model's ``classes`` (None: not known here)."""
    if classes is not None and len(y) and int(y.max()) >= classes:
        raise DataError(f"'{where}': y holds class {int(y.max())}, but the model has {classes} classes "
                        f"(0 to {classes - 1})", hint="is this eval data for another model or label set?")


def run_bench(target, threads=None, batch=None, warmup: int = DEFAULTS["warmup"],
              warmup_seconds: float = DEFAULTS["warmup_seconds"], runs: int = DEFAULTS["runs"],
              min_seconds: float = DEFAULTS["min_seconds"], data=None, out=None, markdown=None, plot=None,
              runtime: str | None = None, providers: list[str] | None = None,
              progress: Progress | None = None, timeout: float | None = None,
              max_runs: int = DEFAULTS["max_runs"], seed: int = 0, repeat: int | None = None,
              check_target: Callable[[dict], None] | None = None) -> dict:
    """Benchmark a bundle folder or a single .onnx/.tflite file; returns the bench.json document.

    ``threads`` / ``batch``: lists or "1,4" strings (default: 1 and all cores / [1]). Warm-up
    runs until both ``warmup`` calls and ``warmup_seconds`` have passed; the timed loop until
    both ``runs`` calls and ``min_seconds``, or ``max_runs`` calls, whichever comes first.
    ``out``: where bench.json goes (default: BUNDLE/bench.json, or MODEL.bench.json beside a
    single file; ``False`` writes nothing).
    ``repeat``: fresh child processes per setting, interleaved over the models so that a burst of
    load elsewhere hits every model alike; the measurement kept is the one with the median p50,
    and ``repeats`` records every repetition's p50/p90 and their spread (what the CI gate reads).
    ``markdown``/``plot``: optional extra outputs. ``progress(done, total, label)`` is called
    before each child process and once at the end. ``check_target(resolved)`` sees the verified
    target (``resolve_target``'s answer: its models and facts) before anything is measured (the CI
    gate refuses a budget, a foreign baseline or an output into the bundle there). No output may
    be a file bench reads (:func:`edgekd.bundle.refuse_overwriting_inputs`).
    """
    from ..bundle import refuse_overwriting_inputs
    from . import device
    from .measure import spawn_worker
    from .report import build_comparisons, require_matplotlib, write_outputs

    if isinstance(providers, str):
        providers = [p.strip() for p in providers.split(",") if p.strip()] or None
    threads = parse_list(threads, "threads", allow_all=True) if threads is not None else default_threads()
    batch = parse_list(batch, "batch") if batch is not None else [1]
    _check_number("warmup", warmup, 0, whole=True)
    _check_number("warmup_seconds", warmup_seconds, 0)
    _check_number("runs", runs, 1, whole=True)
    _check_number("min_seconds", min_seconds, 0)
    _check_number("max_runs", max_runs, runs, whole=True)
    repeat = 1 if repeat is None else repeat
    _check_number("repeat", repeat, 1, whole=True)
    _check_number("seed", seed, 0, whole=True)
    if timeout is not None:
        _check_number("timeout", timeout, 1)
    if plot:
        require_matplotlib()

    resolved = resolve_target(target, data=data, runtime=runtime)
    if out is None:
        out = _default_out(Path(target), resolved["target"]["kind"])
    for path, what in ((out, "--out file"), (markdown, "--markdown file"), (plot, "--plot file")):
        if path:            # before measuring, not after: the path must be one we can write
            check_output_path(Path(path), what)
    refuse_overwriting_inputs(target, {"--out": out, "--markdown": markdown, "--plot": plot}, data)
    if check_target:
        check_target(resolved)
    settings = {"threads": threads, "batch": batch, "warmup": warmup, "warmup_seconds": warmup_seconds,
                "runs": runs, "min_seconds": min_seconds, "max_runs": max_runs, "runtime": runtime,
                "providers": providers, "data": resolved["eval_path"], "repeat": repeat,
                "isolation": "one fresh child process per (model, threads, batch)"}
    facts = device.collect()
    thermal_before = device.thermal()

    configs = [(m, t, b) for m in resolved["models"] for t in threads for b in batch]
    total = len(configs) * repeat
    predictions: dict[str, list] = {}
    entries = {}
    for m in resolved["models"]:
        entries[m["file"]] = {**{k: v for k, v in m.items() if k != "path"}, "backend": None,
                              "accuracy": None, "eval_samples": None, "agreement_with_teacher": None,
                              "measurements": []}
    answers: dict[tuple, list] = {(m["file"], t, b): [] for m, t, b in configs}
    done = 0
    for rep in range(repeat):
        for m, t, b in configs:
            if progress:
                progress(done, total, f"{m['file']} · {t} thread{'s' if t > 1 else ''} · batch {b}"
                         + (f" · repetition {rep + 1}/{repeat}" if repeat > 1 else ""))
            done += 1
            evaluate = resolved["eval_path"] is not None and m["file"] not in predictions
            req = {"path": m["path"], "runtime": m["runtime"], "threads": t, "batch": b, "providers": providers,
                   "warmup": warmup, "warmup_seconds": warmup_seconds, "runs": runs, "min_seconds": min_seconds,
                   "max_runs": max_runs, "data": resolved["eval_path"], "evaluate": evaluate, "seed": seed}
            resp, _ = spawn_worker(req, timeout=timeout)
            if "eval" in resp:
                predictions[m["file"]] = resp["eval"].pop("predictions")
                entry = entries[m["file"]]
                entry["accuracy"] = resp["eval"]["accuracy"]
                entry["eval_samples"] = resp["eval"]["samples"]
                entry["eval_seconds"] = resp["eval"]["seconds"]
            answers[(m["file"], t, b)].append(resp)
    for m, t, b in configs:
        entry = entries[m["file"]]
        entry["measurements"].append(_measurement(entry, m, t, b, answers[(m["file"], t, b)]))
    if progress:
        progress(total, total, "done")

    models = list(entries.values())
    teacher = _reference_teacher(models, predictions)
    if teacher is not None:
        ref = predictions[teacher["file"]]
        for e in models:
            p = predictions.get(e["file"])
            if p is not None and len(p) == len(ref) and ref:
                e["agreement_with_teacher"] = sum(a == b for a, b in zip(p, ref)) / len(ref)

    from .. import __version__
    result = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "edgekd_version": __version__,
              "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "target": resolved["target"], "settings": settings,
              "device": {**facts, "thermal_before": thermal_before, "thermal_after": device.thermal()},
              "teacher": teacher["file"] if teacher else None,
              "models": models, "comparisons": build_comparisons(models),
              "outputs": {"json": str(out) if out else None, "markdown": str(markdown) if markdown else None,
                          "plot": str(plot) if plot else None}}
    write_outputs(result, out=out, markdown=markdown, plot=plot)
    return result


def _measurement(entry: dict, m: dict, threads: int, batch: int, responses: list[dict]) -> dict:
    """One setting's record: the repetition with the median p50, and the spread of all of them."""
    if "skip" in responses[0]:
        return {"threads": threads, "batch": batch, "skipped": responses[0]["skip"]}
    p50s = [r["latency_ms"]["p50"] for r in responses]
    resp = responses[p50s.index(median_low(p50s))]
    _fill_model(entry, m, resp["runtime"])
    mem = resp["memory"]
    mem["model_bytes"] = max(0, mem["rss_peak_inference"] - mem["rss_before_load"])
    return {"threads": threads, "batch": batch, "delegate": resp["runtime"].get("delegate"),
            "init_ms": resp["init_ms"], "first_inference_ms": resp["first_inference_ms"], "warmup": resp["warmup"],
            "latency_ms": resp["latency_ms"], "throughput_per_s": resp["throughput_per_s"], "memory": mem,
            "repeats": {"count": len(responses), "p50": p50s,
                        "p90": [r["latency_ms"]["p90"] for r in responses],
                        "spread_ms": max(p50s) - min(p50s)}}


def _fill_model(entry: dict, m: dict, rt: dict) -> None:
    """Backend facts and, for a single file, format/precision, from the first successful child."""
    if entry["backend"] is None:
        entry["backend"] = {k: rt.get(k) for k in ("backend", "module", "version", "delegate", "providers",
                                                   "delegated_nodes")}
        entry["input"], entry["output"] = rt["input"], rt["output"]
    quantized = bool(rt["input"].get("scale"))
    if entry["precision"] is None:
        entry["precision"] = rt["input"]["dtype"] if quantized else "fp32"
    if entry["format"] is None:
        entry["format"] = "onnx" if m["runtime"] == "onnxruntime" else ("tflite-int8" if quantized else "tflite")


def _reference_teacher(models: list[dict], predictions: dict) -> dict | None:
    """The teacher whose predictions define agreement: fp32 ONNX first."""
    teachers = [m for m in models if m["role"] == "teacher" and m["file"] in predictions]
    teachers.sort(key=lambda m: (m.get("precision") not in (None, "fp32", "float32"),
                                 m["runtime"] != "onnxruntime"))
    return teachers[0] if teachers else None


__all__ = ["run_bench", "resolve_target", "parse_list", "default_threads", "SCHEMA", "SCHEMA_VERSION",
           "DEFAULTS", "EdgeKDError"]
