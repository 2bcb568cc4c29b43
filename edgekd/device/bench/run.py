"""``edgekd bench``: accuracy, latency and memory of every model of a bundle, on this device.

Torch-free (the device side runs with numpy + a runtime). Every model is measured in its own fresh
child process (:mod:`edgekd.device.bench.worker`), once per (threads, batch) setting; this process only
verifies, orchestrates and reports. The result is the ``bench.json`` document
(:mod:`edgekd.core.schema.bench`, documented in docs/reference/schemas.md).
"""
from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from statistics import median_low
from typing import Callable, Mapping, Sequence

from edgekd.core.bundle import refuse_overwriting_inputs
from edgekd.core.fsutil import check_output_path
from edgekd.core.schema import SCHEMA_VERSION
from edgekd.core.schema.bench import SCHEMA, BenchDoc, Device, Model, Outputs, Settings
from edgekd.core.version import __version__
from edgekd.device.bench import device
from edgekd.device.bench.classes import lost_classes, per_class
from edgekd.device.bench.compare import build_comparisons, reference_teacher
from edgekd.device.bench.measure import spawn_worker
from edgekd.device.bench.options import BenchOptions
from edgekd.device.bench.pick import recommendations
from edgekd.device.bench.outputs import classes_plot_path, write_bench_outputs
from edgekd.device.bench.plots import require_matplotlib
from edgekd.device.bench.remote import bench_remote
from edgekd.device.bench.target import default_out, resolve_target
from edgekd.device.runtimes import runtime_row

Progress = Callable[[int, int, str], None]
Judge = Callable[[BenchDoc], Mapping[str, Sequence[str]]]
ISOLATION = "one fresh child process per (model, threads, batch)"
ORDER = "each repetition's two children back to back, who goes first alternating"


def run_bench(target, options: BenchOptions | None = None, *, out=None, markdown=None, plot=None,
              progress: Progress | None = None, check_target: Callable[[dict], None] | None = None,
              remote=None, **fields) -> BenchDoc:
    """Benchmark a bundle folder or a single .onnx/.tflite file; returns the bench.json document.

    ``options`` (or its ``fields`` as keywords, over it): :class:`BenchOptions`.
    ``out``: where bench.json goes (default: BUNDLE/bench.json, or MODEL.bench.json beside a
    single file; ``False`` writes nothing); ``markdown``/``plot``: optional extra outputs. No output
    may land in the bundle, but for its own bench.json, or on a file bench reads
    (:func:`edgekd.core.bundle.refuse_overwriting_inputs`).
    ``progress(done, total, label)`` is called before each child process and once at the end.
    ``check_target(resolved)`` sees the verified target (``resolve_target``'s answer: its models
    and facts) before anything is measured (the CI gate refuses a budget or a foreign baseline
    there). ``remote``: measure on a board over SSH (:func:`run_sides`).
    """
    return run_sides([target], options, out=out, markdown=markdown, plot=plot, progress=progress,
                     check_target=check_target, remote=remote, **fields)[0]


def run_sides(targets: list, options: BenchOptions | None = None, *, out=None, markdown=None, plot=None,
              progress: Progress | None = None, check_target: Callable[..., None] | None = None,
              remote=None, also_written: dict | None = None, judge: Judge | None = None,
              **fields) -> list[BenchDoc]:
    """``run_bench`` of several targets in one run, their child processes interleaved: for each
    repetition and setting, one child per target back to back, the order alternating from one
    (repetition, setting) to the next, so that drift of the machine hits every target alike and
    repetition i of each target forms a pair (the A/B gate, ``bench --against``). The outputs
    (``out``, ``markdown``, ``plot``) are the first target's; ``check_target`` sees every resolved
    target. ``remote``: a :class:`~edgekd.device.bench.remote.Remote`: the targets are checked here and
    measured by the board's edgekd over SSH (:mod:`.remote`). ``also_written``: the caller's own
    outputs (option → path: the gate's), checked with bench's before anything is measured.
    ``judge(doc)``: the budget's verdict on the first target's files (each file it checks → the
    lines of its failed checks) for the recommendation (:mod:`.pick`; the gate's). Returns one
    bench.json document per target."""
    options = replace(options, **fields) if options else BenchOptions(**fields)
    if plot:
        require_matplotlib()
    sides = [resolve_target(t, data=options.data, runtime=options.runtime) for t in targets]
    out = default_out(Path(targets[0]), sides[0]["target"]["kind"]) if out is None else out
    paths = {"--out": out, "--markdown": markdown, "--plot": plot}
    classes_plot = {"--plot (its confusion matrices)": classes_plot_path(plot) if plot else None}
    _check_outputs(targets, {**paths, **classes_plot, **(also_written or {})}, options.data)
    if check_target:
        check_target(*sides)
    docs: list[BenchDoc]
    if remote is not None:
        docs = bench_remote(remote, targets, options, progress)
        docs[0]["outputs"] = _outputs(paths, docs[0]["models"])
    else:       # the board's bench wrote its own against section
        docs = _bench_here(sides, options, paths, progress)
        if len(docs) == 2:
            docs[0]["against"] = {"path": str(targets[1]), "pairs": options.repeat, "order": ORDER,
                                  "bench": dict(docs[1])}
    docs[0]["recommendation"] = recommendations(docs[0], judge(docs[0]) if judge else None)
    write_bench_outputs(docs[0], out=out, markdown=markdown, plot=plot)
    return docs


def _bench_here(sides: list[dict], options: BenchOptions, paths: dict, progress: Progress | None) -> list[BenchDoc]:
    facts = device.collect()
    facts["thermal_before"] = device.thermal()
    measured = _measure(sides, options, progress)
    facts["thermal_after"] = device.thermal()
    settings = _settings(options, sides[0]["eval_path"])
    return [_document(s, settings, facts, _agreement(*m), m[0], paths if i == 0 else _NO_OUTPUTS,
                      _lost(m[0], m[1], s["eval_y"]))
            for i, (s, m) in enumerate(zip(sides, measured))]


_NO_OUTPUTS = {"--out": None, "--markdown": None, "--plot": None}


def _check_outputs(targets: list, paths: dict, data) -> None:
    """Before measuring, not after: each path must be one we can write, and none land in a bundle
    measured (but for the first one's own bench.json, as --out) or on a file bench reads."""
    for flag, path in paths.items():
        if path:
            check_output_path(Path(path), f"{flag} file")
    refuse_overwriting_inputs(targets, paths, data, report="--out")


def _measure(sides: list[dict], options: BenchOptions, progress: Progress | None) -> list[tuple[list, dict]]:
    """Every (model, threads, batch) setting of every side, ``repeat`` times, interleaved over the
    models (and the sides, in alternating order) so that a burst of load elsewhere hits every model
    alike: per side, the models' entries and each one's predictions on the eval data (evaluated
    once, in its first child)."""
    threads, batches = options.grid
    settings = list(dict.fromkeys((m["file"], t, b) for s in sides for m in s["models"]
                                  for t in threads for b in batches))
    by_file = [{m["file"]: m for m in s["models"]} for s in sides]
    jobs = []
    for rep, (k, (file, t, b)) in itertools.product(range(options.repeat), enumerate(settings)):
        order = range(len(sides)) if (rep + k) % 2 == 0 else reversed(range(len(sides)))
        jobs += [(i, rep, by_file[i][file], t, b) for i in order if file in by_file[i]]
    entries = [{m["file"]: _entry(m) for m in s["models"]} for s in sides]
    predictions: list[dict[str, list]] = [{} for _ in sides]
    answers: dict[tuple, list] = {}
    for done, (i, rep, m, t, b) in enumerate(jobs):
        if progress:
            progress(done, len(jobs), _label(m, t, b, rep, options.repeat, sides, i))
        eval_path = sides[i]["eval_path"]
        evaluate = eval_path is not None and m["file"] not in predictions[i]
        # the first setting's first repetition: at 1 thread (bench's first by default) node times add up
        profile = options.profile and rep == 0 and (t, b) == (threads[0], batches[0])
        request = {"path": m["path"], "runtime": m["runtime"], "threads": t, "batch": b, **options.worker_fields(),
                   "data": eval_path, "evaluate": evaluate, "profile": profile, "pixels": m.get("pixels")}
        resp, _ = spawn_worker(request, timeout=options.timeout)
        if "eval" in resp:
            predictions[i][m["file"]] = _record_eval(entries[i][m["file"]], resp["eval"],
                                                     sides[i]["target"].get("labels"))
        if "profile" in resp:
            entries[i][m["file"]]["profile"] = resp["profile"]
        answers.setdefault((i, m["file"], t, b), []).append(resp)
    for (i, file, t, b), responses in answers.items():
        entry = entries[i][file]
        entry["measurements"].append(_measurement(entry, by_file[i][file], t, b, responses))
    if progress:
        progress(len(jobs), len(jobs), "done")
    return [(list(e.values()), p) for e, p in zip(entries, predictions)]


def _label(m: dict, threads: int, batch: int, rep: int, repeat: int, sides: list[dict], i: int) -> str:
    side = f" ({'new' if i == 0 else 'against'})" if len(sides) > 1 else ""
    return (f"{m['file']}{side} · {threads} thread{'s' if threads > 1 else ''} · batch {batch}"
            + (f" · repetition {rep + 1}/{repeat}" if repeat > 1 else ""))


def _entry(m: dict) -> dict:
    """A model's bench.json entry before any measurement: the target's facts, the rest unknown."""
    return {**{k: v for k, v in m.items() if k not in ("path", "pixels")}, "backend": None, "accuracy": None,
            "eval_samples": None, "agreement_with_teacher": None, "measurements": []}


def _record_eval(entry: dict, ev: dict, labels: list | None) -> list:
    """The child's score into the model's entry, per class by the manifest's labels; returns its
    predictions (kept out of bench.json)."""
    entry["accuracy"] = ev["accuracy"]
    entry["eval_samples"] = ev["samples"]
    entry["eval_seconds"] = ev["seconds"]
    counts = ev["classes"]
    if counts["top5_accuracy"] is not None:
        entry["top5_accuracy"] = counts["top5_accuracy"]
    scores = per_class(counts, labels)
    if scores is not None:
        entry["per_class"] = scores
    entry["confusion"] = counts["confusion"]
    return ev.pop("predictions")


def _settings(options: BenchOptions, eval_path: str | None) -> Settings:
    threads, batch = options.grid
    return Settings(threads=threads, batch=batch, warmup=options.warmup,
                    warmup_seconds=options.warmup_seconds, runs=options.runs, min_seconds=options.min_seconds,
                    max_runs=options.max_runs, runtime=options.runtime, providers=options.providers, data=eval_path,
                    repeat=options.repeat, isolation=ISOLATION)


def _document(resolved: dict, settings: Settings, facts: Device, teacher: dict | None, models: list[Model],
              paths: dict, lost: dict) -> BenchDoc:
    return BenchDoc(schema=SCHEMA, schema_version=SCHEMA_VERSION, edgekd_version=__version__,
                    created_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    target=resolved["target"], settings=settings, device=facts,
                    teacher=teacher["file"] if teacher else None, models=models,
                    comparisons=build_comparisons(models, lost), outputs=_outputs(paths, models))


def _outputs(paths: dict, models: list[Model]) -> Outputs:
    def named(flag: str) -> str | None:
        return str(paths[flag]) if paths[flag] else None
    outputs = Outputs(json=named("--out"), markdown=named("--markdown"), plot=named("--plot"))
    if paths["--plot"] and any(m.get("confusion") for m in models):      # drawn only where there is one
        outputs["classes_plot"] = str(classes_plot_path(paths["--plot"]))
    return outputs


def _lost(models: list[dict], predictions: dict, y: list | None) -> dict[tuple[str, str], list]:
    """(model file, teacher file) → the classes the model lost against that teacher
    (:func:`~edgekd.device.bench.classes.lost_classes`), for each pair both evaluated."""
    out = {}
    for t in (m for m in models if m["role"] == "teacher" and m["file"] in predictions):
        for m in (m for m in models if m["role"] != "teacher" and m.get("per_class") and m["file"] in predictions):
            names = [c["label"] for c in m["per_class"]]
            out[m["file"], t["file"]] = lost_classes(y or [], predictions[m["file"]], predictions[t["file"]], names)
    return out


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
        entry["format"] = runtime_row(m["runtime"]).format_of(quantized)


def _reference_teacher(models: list[dict], predictions: dict) -> dict | None:
    """The reference teacher (:func:`reference_teacher`) among those evaluated."""
    return reference_teacher([m for m in models if m["file"] in predictions])
