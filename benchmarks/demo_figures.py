"""The README's "What `make demo` shows" section, measured, never hand-copied.

    python benchmarks/demo_figures.py            # run make demo's three commands, record, rewrite the README
    python benchmarks/demo_figures.py --render   # only rewrite the README from the recorded figures

It runs the commands of the Makefile's ``demo`` target one by one (read from the Makefile, so
the two cannot drift), times each, reads what they wrote (cv.json, export.json, bench.json),
records the figures with the machine and its load in ``benchmarks/results/demo_figures.json``
and replaces the README's text between the two ``demo-figures`` markers with their rendering.
tests/test_readme.py checks that the README's section is exactly the rendering of the record.
Accuracies are identical run to run on a CPU (fixed seeds); times depend on the machine and on
whatever else runs on it, which is why the record keeps the load average beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from edgekd.core.fsutil import atomic_write_text
from edgekd.core.gap import gap_closed, gap_closed_spread, gap_spread_text, gap_text, split_gap_closed
from edgekd.core.numbers import size
from edgekd.core.errors import BundleError, ModelError
from edgekd.core.schema import TRAINED_ROLES as ROLES
from edgekd.core.schema import bench as bench_schema
from edgekd.core.schema import cv as cv_schema
from edgekd.core.schema.export import EXPORT_REPORT, ExportReport
from edgekd.core.schema.jsonfile import read_json
from readme_section import rewrite_readme

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "demo_figures.json"
SECTION = "demo-figures"    # the README markers


def demo_run(makefile: Path = ROOT / "Makefile") -> str:
    """The Makefile's run folder (``RUN := runs/demo``)."""
    return next(line.split(":=")[1].strip() for line in makefile.read_text().splitlines() if line.startswith("RUN "))


def demo_commands(makefile: Path = ROOT / "Makefile") -> list[list[str]]:
    """The recipe lines of the Makefile's ``demo`` target, with make's variables filled in."""
    lines = makefile.read_text().splitlines()
    variables = {"$(BIN)": ".venv/bin", "$(RUN)": demo_run(makefile)}
    start = lines.index(next(line for line in lines if line.startswith("demo:"))) + 1
    commands = []
    for line in lines[start:]:
        if not line.startswith("\t"):
            break
        for name, value in variables.items():
            line = line.replace(name, value)
        commands.append(shlex.split(line.strip()))
    return commands


def run_demo() -> dict:
    """Run the demo's commands from the repository root; the seconds and load around each."""
    steps = []
    for command in demo_commands():
        start, load = time.perf_counter(), os.getloadavg()[0]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        steps.append({"command": " ".join(command[:2]).replace(".venv/bin/", ""),
                      "seconds": round(time.perf_counter() - start, 1),
                      "load_average": round(max(load, os.getloadavg()[0]), 1)})
    return {"steps": steps, "machine": _machine()}


def _machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    return {"cpu": model, "cores": os.cpu_count(), "system": platform.system(), "python": platform.python_version()}


def collect(run: Path, timing: dict) -> dict:
    """The figures the section shows, from the documents the demo wrote."""
    cv = cv_schema.from_json(read_json(run / cv_schema.CV_FILE, "cv.json", ModelError), "cv.json")
    export = ExportReport.from_json(read_json(run / "bundle" / EXPORT_REPORT, "export report", BundleError),
                                    "export.json").as_dict()
    bench = bench_schema.read(run / "bundle" / "bench.json")
    models = {role: {"arch": cv["models"][role]["arch"], "parameters": cv["models"][role]["parameters"],
                     "macs": cv["models"][role]["macs"], "cv_mean": cv["cv"][role]["mean"],
                     "cv_std": cv["cv"][role]["std"], "test": cv["test"][role],
                     "precision": cv["final"][role].get("precision", "fp32")} for role in ROLES}
    folds = [f["student"]["accuracy"] - f["simple"]["accuracy"] for f in cv["folds"]]
    gaps = [split_gap_closed(f) for f in cv["folds"]]
    files = [{"file": m["file"], "precision": m["precision"], "bytes": m["bytes"],
              "max_abs_diff": m["parity"]["max_abs_diff"], "top1_agreement": m["parity"]["top1_agreement"],
              "accuracy": m["parity"]["accuracy"], "accuracy_delta": m["parity"]["accuracy_delta"]}
             for m in export["models"]]
    p50 = {m["file"]: m["measurements"][0]["latency_ms"]["p50"] for m in bench["models"]
           if m["measurements"] and "latency_ms" in m["measurements"][0]}
    config = {k: cv["config"][k] for k in ("temperature", "alpha", "student_fraction", "unlabelled")}
    return {"data": cv["data"], "config": {**config, "unlabelled_samples": cv["final"].get("unlabelled_samples", 0)},
            "models": models, "gain": cv["cv"]["distillation_gain"], "fold_gains": folds, "fold_gaps_closed": gaps,
            "files": files,
            "p50_ms": p50, "bench_setting": {k: bench["models"][0]["measurements"][0][k] for k in ("threads", "batch")},
            **timing}


def _precisions(models: dict) -> str:
    """The roles' training precisions as cv.json recorded them (``--precision auto``: bf16 only where the
    CPU has it natively); nothing for a record made before they were recorded."""
    if not all("precision" in model for model in models.values()):
        return ""
    return " (here: " + ", ".join(f"{role} {model['precision']}" for role, model in models.items()) + ")"


def render(fig: dict) -> str:
    """The README section, from the record alone."""
    data, cfg, gain = fig["data"], fig["config"], fig["gain"]
    lines = [f"Digits ({data['cv_samples'] + data['test_samples']:,} 8×8 images, {data['classes']} classes): "
             f"{data['cv_samples']:,} for {len(fig['fold_gains'])}-fold cross-validation, {data['test_samples']} "
             f"held out. Same seed, same accuracies on every run on CPUs alike in bf16 support{_precisions(fig['models'])}:", "",
             "| role | model | parameters | MACs | CV accuracy (mean ± std) | held-out accuracy |",
             "|---|---|---:|---:|---:|---:|"]
    transfer = f", + {cfg['unlabelled_samples']:,} images without labels" if cfg.get("unlabelled") else ""
    names = {"teacher": "teacher", "student": f"student (distilled, T={cfg['temperature']:g}, alpha={cfg['alpha']:g}"
                                              f"{transfer})", "simple": "simple (same net, labels only)"}
    for role in ROLES:
        m = fig["models"][role]
        lines.append(f"| {names[role]} | `{m['arch']}` | {m['parameters']:,} | {m['macs']:,} | "
                     f"{100 * m['cv_mean']:.2f} ± {100 * m['cv_std']:.2f} % | {100 * m['test']:.2f} % |")
    wins = sum(g > 0 for g in fig["fold_gains"])
    per_fold = ", ".join(f"{100 * g:+.1f}" for g in fig["fold_gains"])
    held_out = 100 * (fig["models"]["student"]["test"] - fig["models"]["simple"]["test"])
    lines += ["", _gap_closed(fig), "", f"Distillation gain (student − simple, per fold): **{100 * gain['mean']:+.2f} ± "
              f"{100 * gain['std']:.2f} points**, the student ahead in {wins} of {len(fig['fold_gains'])} folds "
              f"({per_fold}); on the single held-out split it is {held_out:+.2f} points. {_labels(cfg)}", "",
              _bundle_table(fig), "", _timing(fig)]
    return "\n".join(lines)


def _labels(cfg: dict) -> str:
    """What the student and the simple model learn from."""
    share = f"{100 * cfg['student_fraction']:.0f} %"
    if not cfg.get("unlabelled"):
        return (f"The student and simple model see only {share} of each training part, so read the gain with "
                "its spread.")
    return (f"The student and simple model get the labels of only {share} of each training part; the student "
            f"also learns from the teacher's soft targets on the other {100 - 100 * cfg['student_fraction']:.0f} "
            f"%, their labels withheld (`--unlabelled {cfg['unlabelled']}`, a transfer set), and the simple model "
            "takes as many steps on its labels alone.")


def _gap_closed(fig: dict) -> str:
    """The gap closed per fold (recorded since it existed) and on the held-out split (from its accuracies)."""
    test = {role: fig["models"][role]["test"] for role in ROLES}
    words = "Gap closed, the share of the simple→teacher gap the student closed ((student − simple) / (teacher − simple)): "
    held_out = f"{gap_text(gap_closed(**test))} on the held-out split."
    if "fold_gaps_closed" not in fig:       # a record from before the gap closed was recorded per fold
        return words + held_out
    gaps = fig["fold_gaps_closed"]
    return (f"{words}**{gap_spread_text(gap_closed_spread(gaps))}** per fold ({', '.join(gap_text(g) for g in gaps)}); "
            + held_out)


def _bundle_table(fig: dict) -> str:
    lines = ["The bundle (`edgekd export`), every file checked in its own runtime on the "
             f"{fig['data']['test_samples']} held-out images:", "",
             "| file | size | vs PyTorch | accuracy |", "|---|---:|---|---:|"]
    for f in fig["files"]:
        check = (f"top-1 agreement {100 * f['top1_agreement']:.1f} %" if f["precision"] == "int8"
                 else f"max abs Δ {f['max_abs_diff']:.1e}")
        delta = f" ({100 * f['accuracy_delta']:+.1f} pt)" if f["precision"] == "int8" else ""
        lines.append(f"| `{f['file']}` ({f['precision']}) | {size(f['bytes'])} | {check} | "
                     f"{100 * f['accuracy']:.2f} %{delta} |")
    return "\n".join(lines)


def _timing(fig: dict) -> str:
    setting, machine = fig["bench_setting"], fig["machine"]
    p50 = ", ".join(f"`{name}` {1000 * ms:.1f} µs" for name, ms in fig["p50_ms"].items())
    steps = ", ".join(f"`{s['command']}` {s['seconds']:.0f} s (load average {s['load_average']:g})"
                      for s in fig["steps"])
    threads = f"{setting['threads']} thread{'s' if setting['threads'] > 1 else ''}"
    return (f"Measured on {machine['cores']} cores ({machine['cpu']}); absolute times depend on the machine "
            f"and on what else runs on it. `edgekd bench` ({threads}, batch {setting['batch']}, "
            f"p50 per call): {p50}. Wall time of each `make demo` step once installed: {steps}. The first run "
            "adds a few minutes to create `.venv` and install the pinned wheels.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true", help="only re-render the README from the record")
    args = parser.parse_args(argv)
    if not args.render:
        timing = run_demo()
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(RECORD, json.dumps(collect(ROOT / demo_run(), timing), indent=2) + "\n")
    section = render(json.loads(RECORD.read_text()))
    rewrite_readme(SECTION, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
