"""Training speed: samples/s of edgekd's training step (``fit``) for each zoo family, for every
precision × memory format, eager and compiled, beside the setting edgekd chooses by default.

    python benchmarks/train_speed.py               # ~15 min on 2 cores; writes results/train_speed.json
    python benchmarks/train_speed.py --render      # the README's section from the record
    python benchmarks/train_speed.py --cold-compile    # only the pair's cold compilations, into the record

- 28×28 (1 channel, batch 128, 12 steps) and 224×224 (3 channels, batch 16, 4 steps); each setting
  trains four epochs of those steps on synthetic uint8 images; the median of the last three counts (the
  first warms up, and compiles with ``--compile``: its extra time is the compilation, recorded apart).
  Compiled settings are timed at 28 px only, in channels_last (the layout every convolutional model
  trained fastest in), each fit with dynamo started afresh (as ``edgekd distill`` does). Their first-epoch extra is what a compilation costs with
  inductor's on-disk cache warm (every compile after the first of a model in one session); the pair's
  cold compilations, each in a fresh process with the caches off, are recorded apart (``cold_compile``).
- The Fashion-MNIST pair's student phase as ``edgekd distill`` runs it (cached teacher logits, KD,
  gradient clipping, the per-epoch curve on 2,000 evaluation rows, the epoch checkpoint) against a plain
  PyTorch loop over the same batches (the PyTorch distillation tutorial's loop, in the same precision and
  memory format), 24,000 rows an epoch.

Targets on a CPU with native bf16: edgekd's defaults within 5 % of the best setting per model; the pair's
student ≥ 2× the teacher's samples/s at the defaults; edgekd's student phase within 5 % of the plain loop.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.core.preprocess import fit_standardize
from edgekd.train.distill.checkpoints import EpochCheckpoint
from edgekd.train.distill.fastpath import native_bf16, step_mode
from edgekd.train.distill.losses import LossInputs, build_loss
from edgekd.train.distill.samples import Samples
from edgekd.train.distill.train import FitSettings, KDTarget, fit
from edgekd.train.models import build

RESULTS = Path(__file__).parent / "results"
RECORD, SECTION = RESULTS / "train_speed.json", "train-speed"
PAIR = {"teacher": "resnet:depth=8", "student": "mobilenetv3:variant=small,width=0.25"}
SIZES = {28: dict(shape=(1, 28, 28), batch=128, steps=12, compiled=True,
                  models=[PAIR["teacher"], PAIR["student"], "mobilenetv2:width=0.35", "efficientnet_lite0", "cnn", "mlp"]),
         224: dict(shape=(3, 224, 224), batch=16, steps=4, compiled=False,
                   models=["resnet18", "mobilenetv3_small_100", "mobilenetv2_100", "efficientnet_lite0"])}
EPOCHS = 4          # the first warms up (and compiles); the median of the others counts
SETTINGS = [(p, m) for p in ("fp32", "bf16") for m in ("contiguous", "channels_last")]
PHASE_ROWS, CURVE = 24_000, 2_000
DEFAULT_WITHIN, PAIR_RATIO, LOOP_WITHIN = 0.95, 2.0, 0.95


def images(rows: int, shape: tuple[int, ...], seed: int = 0) -> tuple[Samples, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (rows, *shape), dtype=np.uint8)
    return Samples(x, fit_standardize(x[:256]), "cpu"), torch.from_numpy(rng.integers(0, 10, rows))


def timed_fit(spec: str, size: dict, precision: str, memory: str, compiled: bool) -> dict:
    """samples/s of the median of epochs 2..EPOCHS, and the first epoch's extra seconds over it (the
    compilation)."""
    x, y = images(size["batch"] * size["steps"], size["shape"])
    torch.manual_seed(0)
    model = build(spec, size["shape"], 10)
    settings = FitSettings(EPOCHS, size["batch"], 0.01, 5e-4, 0, optimizer="sgd", precision=precision,
                           memory_format=memory, compile=compiled)
    result = fit(model, x, y, settings)
    steady = statistics.median(result.epoch_seconds[1:])
    return {"samples_per_second": round(len(y) / steady, 1), "first_epoch_extra_s": round(result.compile_seconds(), 2)}


def cold_compile(spec: str) -> dict:
    """``timed_fit`` of ``spec`` compiled in edgekd's default mode, in a fresh process with inductor's
    caches off: what the first ``--compile`` run of a model costs."""
    mode = step_mode(build(spec, SIZES[28]["shape"], 10), "cpu")
    code = (f"import json, train_speed as t; print(json.dumps(t.timed_fit({spec!r}, t.SIZES[28], "
            f"{mode.precision!r}, {mode.memory_format!r}, True)))")
    env = {**os.environ, "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, env=env, capture_output=True,
                          text=True, check=True)
    return {"model": spec, **json.loads(done.stdout.strip().splitlines()[-1])}


def model_row(spec: str, px: int) -> dict:
    size = SIZES[px]
    row: dict = {"model": spec, "px": px, "batch": size["batch"], "settings": {}}
    for precision, memory in SETTINGS:
        # compiled in channels_last alone, the layout every convolutional model trained fastest in
        for compiled in ((False, True) if size["compiled"] and memory == "channels_last" else (False,)):
            key = f"{precision}+{memory}" + ("+compile" if compiled else "")
            row["settings"][key] = timed_fit(spec, size, precision, memory, compiled)
            print(f"  {spec} {px}px {key}: {row['settings'][key]['samples_per_second']:.0f}/s", flush=True)
    mode = step_mode(build(spec, size["shape"], 10), "cpu")
    row["default"] = f"{mode.precision}+{mode.memory_format}"
    row["default_why"] = mode.why
    speeds = {key: value["samples_per_second"] for key, value in row["settings"].items()}
    row["best"] = max(speeds, key=lambda key: speeds[key])
    row["default_vs_best"] = round(speeds[row["default"]] / speeds[row["best"]], 3)
    eager = [key for key in speeds if not key.endswith("+compile")]      # --compile is off by default
    row["default_vs_best_eager"] = round(speeds[row["default"]] / max(speeds[key] for key in eager), 3)
    return row


def plain_loop(model: nn.Module, x: Samples, y: torch.Tensor, logits: torch.Tensor, mode, batch: int) -> float:
    """One epoch of the tutorial's loop (shuffle, KD at T=4 against cached logits, SGD step): seconds."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    kd = build_loss("kd", temperature=4.0, alpha=0.5)
    order = torch.randperm(len(y))
    started = time.perf_counter()
    for step in range(0, len(y), batch):
        index = order[step:step + batch]
        with mode.autocast("cpu"):
            out = model(mode.layout(x[index]))
        loss = kd(LossInputs(out.float(), {"logits": logits[index]}, y[index]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def phase_row(spec: str) -> dict:
    """edgekd's student phase against the plain loop on the same rows: samples/s of each, second epoch."""
    size = SIZES[28]
    x, y = images(PHASE_ROWS, size["shape"])
    xe, ye = images(CURVE, size["shape"], seed=1)
    logits = torch.randn(PHASE_ROWS, 10)
    torch.manual_seed(0)
    model = build(spec, size["shape"], 10)
    mode = step_mode(model, "cpu")
    mode.lay_out(model, training=True)
    model.train()
    plain = [plain_loop(model, x, y, logits, mode, size["batch"]) for _ in range(2)][1]
    torch.manual_seed(0)
    model, stamps = build(spec, size["shape"], 10), [time.perf_counter()]
    settings = FitSettings(2, size["batch"], 0.01, 5e-4, 0, optimizer="sgd", validation=(xe, ye), clip_grad=10.0)
    with tempfile.TemporaryDirectory() as folder:
        fit(model, x, y, settings, kd=KDTarget(build_loss("kd", temperature=4.0, alpha=0.5), {"logits": logits}),
            checkpoint=EpochCheckpoint(Path(folder)), on_epoch=lambda _: stamps.append(time.perf_counter()))
    edgekd = stamps[2] - stamps[1]
    return {"model": spec, "rows": PHASE_ROWS, "curve_rows": CURVE, "mode": mode.record(),
            "plain_samples_per_second": round(PHASE_ROWS / plain, 1),
            "edgekd_samples_per_second": round(PHASE_ROWS / edgekd, 1), "ratio": round(plain / edgekd, 3)}


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    lines = cpuinfo.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return {"cpu": name, "cores": os.cpu_count(), "torch": torch.__version__, "native_bf16": native_bf16("cpu"),
            "flags": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile") if f in flags]}


def verdicts(record: dict) -> list[str]:
    lines = []
    for row in record["rows"]:
        met = row["default_vs_best"] >= DEFAULT_WITHIN
        lines.append(f"{'MET' if met else 'MISSED'} {row['model']}@{row['px']}: the default ({row['default']}) "
                     f"runs at {row['default_vs_best']:.2f}x the best setting ({row['best']}), target >= {DEFAULT_WITHIN}")
    speeds = {r["model"]: r["settings"][r["default"]]["samples_per_second"] for r in record["rows"] if r["px"] == 28}
    ratio = speeds[PAIR["student"]] / speeds[PAIR["teacher"]]
    lines.append(f"{'MET' if ratio >= PAIR_RATIO else 'MISSED'} the Fashion-MNIST pair's student trains at "
                 f"{ratio:.2f}x the teacher's samples/s at the defaults, target >= {PAIR_RATIO}x")
    for phase in record["phases"]:
        met = phase["ratio"] >= LOOP_WITHIN
        lines.append(f"{'MET' if met else 'MISSED'} {phase['model']}: edgekd's student phase at {phase['ratio']:.2f}x "
                     f"a plain loop's samples/s, target >= {LOOP_WITHIN}")
    return lines


def render(record: dict) -> str:
    """The README's section: one table per input size, the plain-loop rows, the machine and the verdicts."""
    lines = []
    for px in sorted({row["px"] for row in record["rows"]}):
        rows = [row for row in record["rows"] if row["px"] == px]
        keys = list(rows[0]["settings"])
        compiled = ("; compiled: the first epoch's extra seconds in brackets, inductor's cache warm after a model's "
                    "first compilation" if any(key.endswith("+compile") for key in keys) else "")
        lines += [f"{px}×{px}, batch {rows[0]['batch']}, samples/s (**bold**: edgekd's default{compiled}):", "",
                  "| model | " + " | ".join(keys) + " | default / best | default / best eager |",
                  "|---|" + "---:|" * (len(keys) + 2)]
        for row in rows:
            cells = []
            for key in keys:
                cell = row["settings"][key]
                text = f"{cell['samples_per_second']:,.0f}"
                text += f" ({max(0.0, cell['first_epoch_extra_s']):.0f} s)" if key.endswith("+compile") else ""
                cells.append(f"**{text}**" if key == row["default"] else text)
            lines.append(f"| `{row['model']}` | " + " | ".join(cells) + f" | {row['default_vs_best']:.2f} | "
                         f"{row['default_vs_best_eager']:.2f} |")
        lines.append("")
    lines += ["The student phase as `edgekd distill` runs it, against a plain PyTorch loop on the same batches "
              f"({record['phases'][0]['rows']:,} rows an epoch, same precision and memory format):", "",
              "| model | mode | plain loop | edgekd | edgekd / plain |", "|---|---|---:|---:|---:|"]
    for phase in record["phases"]:
        lines.append(f"| `{phase['model']}` | {phase['mode']['precision']}, {phase['mode']['memory_format']} | "
                     f"{phase['plain_samples_per_second']:,.0f} | {phase['edgekd_samples_per_second']:,.0f} | "
                     f"{phase['ratio']:.2f} |")
    lines += ["", "Compiled, the first time (a fresh process, inductor's caches off; epochs of "
              f"{SIZES[28]['steps']} steps): " + "; ".join(
                  f"`{c['model']}` {c['first_epoch_extra_s']:.0f} s of compilation, then "
                  f"{c['samples_per_second']:,.0f} samples/s" for c in record["cold_compile"]) + "."]
    m = record["machine"]
    lines += ["", f"Measured on {m['cores']} cores of an {m['cpu']} ({', '.join(m['flags'])}; native bf16: "
              f"{m['native_bf16'] or 'none'}), torch {m['torch']}, nothing else running; the CPU only (GPU "
              "training: [GPU](#gpu---device-cuda-or-auto)).", ""]
    lines += [f"- {line}" for line in verdicts(record)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true", help="only rewrite the README's section from the record")
    parser.add_argument("--cold-compile", action="store_true", help="only time the pair's cold compilations")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from readme_section import write_record

    warnings.filterwarnings("ignore")
    if args.cold_compile:
        record = json.loads(RECORD.read_text())
        record["cold_compile"] = [cold_compile(PAIR["teacher"]), cold_compile(PAIR["student"])]
    elif args.render:
        record = json.loads(RECORD.read_text())
    else:
        record = {"machine": machine(), "rows": [model_row(spec, px) for px, size in SIZES.items()
                                                 for spec in size["models"]],
                  "phases": [phase_row(PAIR["student"]), phase_row(PAIR["teacher"])],
                  "cold_compile": [cold_compile(PAIR["teacher"]), cold_compile(PAIR["student"])]}
    write_record(RECORD, record, SECTION, render)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
