"""int8 speed: p50 latency at 1 thread of fp32 against int8 files of each zoo variant, in their runtimes.

    python benchmarks/int8_speed.py --profile                          # every variant at 32 and 224 px, the pair (long)
    python benchmarks/int8_speed.py --variants resnet18,mobilenetv2_100 --sizes 224 --only variants
    python benchmarks/int8_speed.py --only pair --profile              # the Fashion-MNIST pair (benchmarks/int8_pair.py)

For each (variant, size): the model with random weights and the BatchNorm statistics of one random
batch (latency does not depend on training), exported by edgekd's own exporters (the FORMATS table)
to fp32 ONNX, onnx-int8 with uint8 and with int8 activations (``--int8-activations u8|s8``), fp32
TFLite and full-integer tflite-int8, each opened by ``edgekd.device.runtimes.open_model`` at 1 thread.
The files of one row are timed side by side in the same process: rounds that call each file in turn,
so the shared machine's noise falls on all of them alike. Rows are merged into
benchmarks/results/int8_speed.json (a subset run replaces only its own rows). The issue's targets at
224 px for resnet18 and mobilenetv2_100 are checked: onnx-int8 at least 1.5x faster than fp32 ONNX,
tflite-int8 no slower than 1.1x the fp32 TFLite file; a missed target prints a MISSED line.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import int8_pair

RECORD = Path(__file__).parent / "results" / "int8_speed.json"
SECTIONS = {"int8-speed": RECORD, int8_pair.SECTION: int8_pair.RECORD}    # README marker → record
FILES = {  # column -> (format, --int8-activations)
    "onnx": ("onnx", None), "onnx-int8-u8": ("onnx-int8", "u8"), "onnx-int8-s8": ("onnx-int8", "s8"),
    "tflite": ("tflite", None), "tflite-int8": ("tflite-int8", None)}
TARGET_VARIANTS, TARGET_SIZE = ("resnet18", "mobilenetv2_100"), 224
ONNX_MIN_SPEEDUP, TFLITE_MAX_SLOWDOWN = 1.5, 1.1
FAMILIES = {"mlp", "cnn", "resnet", "mobilenetv2", "mobilenetv3", "efficientnet_lite"}  # builders, not variants
ROUNDS, CALIBRATION = 7, 16


def variants() -> list[str]:
    from edgekd.train.models import MODELS

    return [n for n in MODELS.names() if n not in FAMILIES]


def random_model(name: str, shape: tuple[int, ...], classes: int | None = None):
    """Random weights with BatchNorm statistics of one random batch (else activations fade to ~0)."""
    import torch
    from torch import nn

    from edgekd.train.models import build

    torch.manual_seed(0)
    model = build(name, shape, classes or (1000 if shape[-1] >= 224 else 10))
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None
            module.reset_running_stats()
    with torch.no_grad():
        model.train()(torch.randn(8, *shape))
    return model.eval()


def export_files(name: str, shape: tuple[int, ...], work: Path, model=None, columns=None) -> dict[str, Path]:
    """Every column's file (or those of ``columns``) of ``model`` (default: ``random_model(name, shape)``),
    made by edgekd's exporters as `edgekd export` makes them."""
    from edgekd.exporters.formats import get_format
    from edgekd.exporters.run import ExportContext
    from edgekd.exporters.source import Source

    calibration = np.random.default_rng(1).normal(0, 1, (CALIBRATION, *shape)).astype(np.float32)
    module = model if model is not None else random_model(name, shape)
    source = Source("student", work, {"input": {"shape": list(shape)}}, "torch", module=module)
    paths = {}
    for column, (fmt_name, activations) in FILES.items():
        if columns is not None and column not in columns:
            continue
        fmt = get_format(fmt_name)
        path = work / f"{column}{fmt.suffix}"
        t0 = time.perf_counter()
        fmt.exporter_function()(ExportContext(work, None, calibration, activations), source, path)
        print(f"  {name}@{shape[-1]} {column}: exported in {time.perf_counter() - t0:.0f} s", flush=True)
        paths[column] = path
    return paths


def p50_side_by_side(paths: dict[str, Path], shape: tuple[int, ...], budget_s: float) -> dict[str, float]:
    """p50 ms of one call per file, from ROUNDS rounds that time each file in turn."""
    from edgekd.device.runtimes import open_model

    x = np.random.default_rng(2).normal(0, 1, (1, *shape)).astype(np.float32)
    calls, times = {}, {column: [] for column in paths}
    for column, path in paths.items():
        runtime = open_model(path, threads=1)
        calls[column] = runtime.bind(runtime.prepare(x))
        for _ in range(3):      # warm-up: first calls allocate and pick kernels
            calls[column]()
    for _ in range(ROUNDS):
        for column, call in calls.items():
            t_end = time.perf_counter() + budget_s / ROUNDS
            while True:
                t0 = time.perf_counter()
                call()
                times[column].append(time.perf_counter() - t0)
                if t0 >= t_end:
                    break
    return {column: round(float(np.median(t)) * 1e3, 4) for column, t in times.items()}


def row_for(name: str, size: int, budget_s: float) -> dict:
    shape = (3, size, size)
    with tempfile.TemporaryDirectory(prefix="int8-speed-") as work:
        paths = export_files(name, shape, Path(work))
        sizes = {column: path.stat().st_size for column, path in paths.items()}
        p50 = p50_side_by_side(paths, shape, budget_s)
    return {"variant": name, "input": list(shape), "p50_ms": p50, "bytes": sizes,
            "onnx_int8_speedup": {a: round(p50["onnx"] / p50[f"onnx-int8-{a}"], 3) for a in ("u8", "s8")},
            "tflite_int8_vs_fp32": round(p50["tflite-int8"] / p50["tflite"], 3),
            "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def missed_targets(rows: dict) -> list[str]:
    """The issue's targets on this CPU, for the rows that were measured."""
    lines = []
    for name in TARGET_VARIANTS:
        row = rows.get(f"{name}@{TARGET_SIZE}")
        if row is None:
            continue
        best = max(row["onnx_int8_speedup"].items(), key=lambda kv: kv[1])
        if best[1] < ONNX_MIN_SPEEDUP:
            lines.append(f"MISSED {name}@{TARGET_SIZE}: onnx-int8 ({best[0]}) is {best[1]:.2f}x fp32 ONNX's speed, "
                         f"target >= {ONNX_MIN_SPEEDUP}x")
        if row["tflite_int8_vs_fp32"] > TFLITE_MAX_SLOWDOWN:
            lines.append(f"MISSED {name}@{TARGET_SIZE}: tflite-int8 takes {row['tflite_int8_vs_fp32']:.2f}x the fp32 "
                         f"TFLite file's time, target <= {TFLITE_MAX_SLOWDOWN}x")
    return lines


def machine() -> dict:
    from edgekd.device.bench import device

    facts = device.collect()
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = next((line for line in cpuinfo.splitlines() if line.startswith(("flags", "Features"))), "").split()
    facts["int8_instructions"] = sorted(f for f in flags if "vnni" in f or f in ("avx2", "avx512bw", "amx_int8", "asimddp", "i8mm"))
    return facts


def table(rows: dict) -> str:
    cols = list(FILES)
    lines = ["| variant | px | " + " | ".join(f"{c} ms" for c in cols) + " | ONNX int8 speed-up u8 / s8 | "
             "TFLite int8 / fp32 |", "|---|---:|" + "---:|" * len(cols) + "---:|---:|"]
    for row in sorted(rows.values(), key=lambda r: (r["input"][-1], r["variant"])):
        speed = row["onnx_int8_speedup"]
        lines.append(f"| {row['variant']} | {row['input'][-1]} | " + " | ".join(f"{row['p50_ms'][c]:.2f}" for c in cols)
                     + f" | {speed['u8']:.2f}x / {speed['s8']:.2f}x | {row['tflite_int8_vs_fp32']:.2f} |")
    return "\n".join(lines)


def render(record: dict) -> str:
    """A README section: the pair's (its record has "pair") or the variants' table, the machine it ran
    on, and any missed target."""
    if "pair" in record:
        return int8_pair.render(record)
    m = record["machine"]
    load = f", load average {record['load_average']:.1f}" if "load_average" in record else ""
    lines = [table(record["rows"]), "",
             f"Measured on {m['cores']} cores ({m['cpu']}, int8 instructions: {', '.join(m['int8_instructions'])}"
             f"{load}), {record['threads']} thread, batch 1."]
    lines += [f"- {line}" for line in record["missed"]] or ["- every target at 224 px met"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=None, help="a,b (default: every zoo variant)")
    parser.add_argument("--sizes", default="32,224", help="image sizes in px, a,b")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per file and row")
    parser.add_argument("--only", choices=("variants", "pair"), help="measure only the zoo variants or only the pair")
    parser.add_argument("--profile", action="store_true", help="the pair's three most expensive op types per file")
    parser.add_argument("--render", action="store_true", help="only re-render the README from the records")
    args = parser.parse_args(argv)
    if not args.render and args.only != "pair":
        measure(args)
    if not args.render and args.only != "variants":
        int8_pair.write({**int8_pair.measure(args.seconds, args.profile), "machine": machine(),
                         "load_average": os.getloadavg()[0]})
    from readme_section import render_records

    render_records(SECTIONS, render)
    for record in SECTIONS.values():
        if record.is_file():
            print(render(json.loads(record.read_text())))
    import zoo_table      # its p50 columns read this record; imported here, as it imports this script

    zoo_table.main([])
    return 0


def measure(args) -> None:
    names = args.variants.split(",") if args.variants else variants()
    unknown = sorted(set(names) - set(variants()))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(variants())}")
    record = json.loads(RECORD.read_text()) if RECORD.is_file() else {"rows": {}}
    for size in (int(s) for s in args.sizes.split(",")):
        for name in names:
            print(f"{name} at {size} px ...", flush=True)
            record["rows"][f"{name}@{size}"] = row_for(name, size, args.seconds)
    record.update(threads=1, machine=machine(), missed=missed_targets(record["rows"]), load_average=os.getloadavg()[0],
                  targets={"onnx_int8_min_speedup": ONNX_MIN_SPEEDUP, "tflite_int8_max_slowdown": TFLITE_MAX_SLOWDOWN,
                           "variants": list(TARGET_VARIANTS), "size": TARGET_SIZE})
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
