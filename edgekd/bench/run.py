"""``edgekd bench``: accuracy, latency and memory of every model of a bundle, on this device.

Torch-free (the device side runs with numpy + a runtime). Every model is measured in its own fresh
child process (:mod:`edgekd.bench.worker`), once per (threads, batch) setting; this process only
verifies, orchestrates and reports. The result is the ``bench.json`` document
(:mod:`edgekd.schema.bench`, documented in the README).
"""
from __future__ import annotations

import itertools
from datetime import datetime, timezone
from pathlib import Path
from statistics import median_low
from typing import Callable

from ..fsutil import check_output_path
from ..schema import SCHEMA_VERSION
from ..schema.bench import SCHEMA, BenchDoc
from .options import DEFAULTS, BenchOptions
from .target import default_out, resolve_target

Progress = Callable[[int, int, str], None]
ISOLATION = "one fresh child process per (model, threads, batch)"


def run_bench(target, options: BenchOptions | None = None, *, out=None, markdown=None, plot=None,
              progress: Progress | None = None, check_target: Callable[[dict], None] | None = None,
              **fields) -> BenchDoc:
    """Benchmark a bundle folder or a single .onnx/.tflite file; returns the bench.json document.

    ``options`` (or its ``fields`` as keywords, over it): :class:`BenchOptions`.
    ``out``: where bench.json goes (default: BUNDLE/bench.json, or MODEL.bench.json beside a
    single file; ``False`` writes nothing); ``markdown``/``plot``: optional extra outputs. No output
    may be a file bench reads (:func:`edgekd.bundle.refuse_overwriting_inputs`).
    ``progress(done, total, label)`` is called before each child process and once at the end.
    ``check_target(resolved)`` sees the verified target (``resolve_target``'s answer: its models
    and facts) before anything is measured (the CI gate refuses a budget, a foreign baseline or an
    output into the bundle there).
    """
    from dataclasses import replace

    from . import device
    from .report import write_outputs

    options = replace(options, **fields) if options else BenchOptions(**fields)
    if plot:
        from .plots import require_matplotlib
        require_matplotlib()
    resolved = resolve_target(target, data=options.data, runtime=options.runtime)
    out = default_out(Path(target), resolved["target"]["kind"]) if out is None else out
    paths = {"--out": out, "--markdown": markdown, "--plot": plot}
    _check_outputs(target, paths, options.data)
    if check_target:
        check_target(resolved)
    facts = {**device.collect(), "thermal_before": device.thermal()}
    models, predictions = _measure(resolved, options, progress)
    facts["thermal_after"] = device.thermal()
    teacher = _agreement(models, predictions)
    result = _document(resolved, _settings(options, resolved["eval_path"]), facts, teacher, models, paths)
    write_outputs(result, out=out, markdown=markdown, plot=plot)
    return result


def _check_outputs(target, paths: dict, data) -> None:
    """Before measuring, not after: each path must be one we can write, and none a file bench reads."""
    from ..bundle import refuse_overwriting_inputs

    for flag, path in paths.items():
        if path:
            check_output_path(Path(path), f"{flag} file")
    refuse_overwriting_inputs(target, paths, data)


def _measure(resolved: dict, options: BenchOptions, progress: Progress | None) -> tuple[list[dict], dict]:
    """Every (model, threads, batch) setting, ``repeat`` times, interleaved over the models so that a
    burst of load elsewhere hits every model alike: the models' entries, and each one's predictions
    on the eval data (evaluated once, in its first child)."""
    from .measure import spawn_worker

    configs = [(m, t, b) for m in resolved["models"] for t in options.threads for b in options.batch]
    total = len(configs) * options.repeat
    entries = {m["file"]: _entry(m) for m in resolved["models"]}
    predictions: dict[str, list] = {}
    answers: dict[tuple, list] = {(m["file"], t, b): [] for m, t, b in configs}
    for done, (rep, (m, t, b)) in enumerate(itertools.product(range(options.repeat), configs)):
        if progress:
            progress(done, total, _label(m, t, b, rep, options.repeat))
        evaluate = resolved["eval_path"] is not None and m["file"] not in predictions
        request = {"path": m["path"], "runtime": m["runtime"], "threads": t, "batch": b, **options.worker_fields(),
                   "data": resolved["eval_path"], "evaluate": evaluate}
        resp, _ = spawn_worker(request, timeout=options.timeout)
        if "eval" in resp:
            predictions[m["file"]] = _record_eval(entries[m["file"]], resp["eval"])
        answers[(m["file"], t, b)].append(resp)
    for m, t, b in configs:
        entry = entries[m["file"]]
        entry["measurements"].append(_measurement(entry, m, t, b, answers[(m["file"], t, b)]))
    if progress:
        progress(total, total, "done")
    return list(entries.values()), predictions


def _label(m: dict, threads: int, batch: int, rep: int, repeat: int) -> str:
    return (f"{m['file']} · {threads} thread{'s' if threads > 1 else ''} · batch {batch}"
            + (f" · repetition {rep + 1}/{repeat}" if repeat > 1 else ""))


def _entry(m: dict) -> dict:
    """A model's bench.json entry before any measurement: the target's facts, the rest unknown."""
    return {**{k: v for k, v in m.items() if k != "path"}, "backend": None, "accuracy": None,
            "eval_samples": None, "agreement_with_teacher": None, "measurements": []}


def _record_eval(entry: dict, ev: dict) -> list:
    """The child's score into the model's entry; returns its predictions (kept out of bench.json)."""
    entry["accuracy"] = ev["accuracy"]
    entry["eval_samples"] = ev["samples"]
    entry["eval_seconds"] = ev["seconds"]
    return ev.pop("predictions")


def _settings(options: BenchOptions, eval_path: str | None) -> dict:
    return {"threads": options.threads, "batch": options.batch, **{k: getattr(options, k) for k in DEFAULTS},
            "runtime": options.runtime, "providers": options.providers, "data": eval_path,
            "repeat": options.repeat, "isolation": ISOLATION}


def _document(resolved: dict, settings: dict, device: dict, teacher: dict | None, models: list[dict],
              paths: dict) -> BenchDoc:
    from .. import __version__
    from .report import build_comparisons

    return BenchDoc(schema=SCHEMA, schema_version=SCHEMA_VERSION, edgekd_version=__version__,
                    created_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    target=resolved["target"], settings=settings, device=device,
                    teacher=teacher["file"] if teacher else None, models=models,
                    comparisons=build_comparisons(models),
                    outputs={key: str(paths[flag]) if paths[flag] else None
                             for key, flag in (("json", "--out"), ("markdown", "--markdown"), ("plot", "--plot"))})


def _agreement(models: list[dict], predictions: dict) -> dict | None:
    """Each model's agreement with the reference teacher's predictions; returns that teacher."""
    teacher = _reference_teacher(models, predictions)
    if teacher is not None:
        ref = predictions[teacher["file"]]
        for e in models:
            p = predictions.get(e["file"])
            if p is not None and len(p) == len(ref) and ref:
                e["agreement_with_teacher"] = sum(a == b for a, b in zip(p, ref)) / len(ref)
    return teacher


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
        from ..runtimes import runtime_row
        entry["format"] = runtime_row(m["runtime"]).format_of(quantized)


def _reference_teacher(models: list[dict], predictions: dict) -> dict | None:
    """The teacher whose predictions define agreement: fp32 ONNX first."""
    teachers = [m for m in models if m["role"] == "teacher" and m["file"] in predictions]
    teachers.sort(key=lambda m: (m.get("precision") not in (None, "fp32", "float32"),
                                 m["runtime"] != "onnxruntime"))
    return teachers[0] if teachers else None


