"""What does distillation cost per epoch, compared with training the student on labels alone?

The same student on the same data, epochs and batch size, five ways:
  simple        labels only (cross-entropy), no augmentation
  cached        edgekd's distillation without augmentation: the teacher's logits computed once
  simple+aug    labels only, with ``--augment`` (default crop; flip for non-digit images)
  online+aug    distillation with augmentation, the teacher run on every augmented batch
                (consistent teaching; edgekd distill's path for --augment)
  views+aug     distillation with augmentation from ``--teacher-views K`` cached views
The student trains, as in ``edgekd distill``, on a stratified ``--student-fraction`` of the
training part; each cache is computed inside the timed region. The variants are timed in turns
(simple, cached, ..., simple, ...) so that a burst of load from elsewhere hits all of them
alike; each variant's median counts. ``--compile`` times every variant again with the training
step compiled (``edgekd distill --compile``): its first epoch (the compilation) apart, its
steady epochs against eager's. Every variant clips the gradient's norm as ``edgekd distill`` does
(``--clip-grad``, its default); ``--clip-off`` times every variant again unclipped, in the same
turns: what the clipping costs, each variant against itself.
Targets: cached ≤ 1.10× the time of simple; views+aug against simple+aug is reported beside
online+aug against simple+aug. Writes benchmarks/results/distill_overhead[_<source>].json.

    python benchmarks/distill_overhead.py --epochs 20 --repeats 5     # digits (README's run)
    python benchmarks/distill_overhead.py --epochs 20 --repeats 5 --clip-off    # and what clipping costs
    python benchmarks/distill_overhead.py --data idx:/usr/share/datasets/fashion-mnist \
        --teacher resnet:depth=8 --student mobilenetv3:variant=small,width=0.25 --batch-size 128 \
        --student-fraction 0.1 --epochs 3 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from edgekd.train.config import DistillConfig
from edgekd.train.data import load_dataset
from edgekd.core.preprocess import fit_standardize
from edgekd.train.data.split import holdout, stratified_subset
from edgekd.train.distill.losses import build_loss
from edgekd.train.distill.samples import Samples
from edgekd.train.distill.augment import Augmenter, parse_augment
from edgekd.train.distill.inference import cached_views, predict_logits
from edgekd.train.distill.train import FitSettings, KDTarget, fit
from edgekd.train.models import build

RESULTS = Path(__file__).parent / "results"
SECTIONS = {"distill-overhead": RESULTS / "distill_overhead.json",      # the README markers → their records
            "distill-overhead-fashion-mnist": RESULTS / "distill_overhead_fashion_mnist.json"}
TWINS = {"simple": "simple", "cached": "simple", "simple+aug": "simple+aug", "online+aug": "simple+aug",
         "views+aug": "simple+aug"}    # each variant's plain-training twin: same augmentation, no teacher


def _kd(logits=None, teacher=None, views=None) -> KDTarget:
    """Hinton's KD at the demo's T=4, alpha=0.1."""
    outputs = {"logits": logits} if logits is not None else None
    return KDTarget(build_loss("kd", temperature=4.0, alpha=0.1), outputs=outputs, teacher=teacher, views=views)


def variants(teacher, x, augment: tuple[str, ...], views: int) -> dict:
    """name → (augmentation, a function making the KD target inside the timed region)."""
    def cached_views_target():
        made, outputs = cached_views(teacher, x, Augmenter(augment, torch.zeros(1)), views,
                                     torch.Generator().manual_seed(0), ("logits",))
        return _kd(outputs["logits"], views=made)

    return {"simple": ((), lambda: None), "cached": ((), lambda: _kd(predict_logits(teacher, x))),
            "simple+aug": (augment, lambda: None), "online+aug": (augment, lambda: _kd(teacher=teacher)),
            "views+aug": (augment, cached_views_target)}


def timed(args, data, x, y, augment, make_kd, compiled: bool, clip_grad: float) -> dict:
    """One training of the student: seconds per epoch (cache included), and the epochs' own times."""
    torch.manual_seed(1)
    student = build(args.student, data.input_shape, len(data.labels))
    stamps = [time.perf_counter()]
    kd = make_kd()
    settings = FitSettings(args.epochs, args.batch_size, 0.01, 0.0, seed=0, augment=augment, compile=compiled,
                           clip_grad=clip_grad)
    fit(student, x, y, settings, kd=kd, on_epoch=lambda _record: stamps.append(time.perf_counter()))
    later = [b - a for a, b in zip(stamps[1:], stamps[2:])]      # epochs 2..E: no cache, no compilation
    first = stamps[1] - stamps[0]                                # the cache (or compilation) and epoch 1
    return {"per_epoch": (stamps[-1] - stamps[0]) / args.epochs, "first_epoch": first,
            "steady_epoch": statistics.median(later) if later else first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--teacher", default="cnn:width=64,depth=3")
    parser.add_argument("--student", default="cnn:width=8,depth=2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--student-fraction", type=float, default=1.0,
                        help="part of the training data the student sees (edgekd distill's default is 0.1)")
    parser.add_argument("--augment", default=None, help="the +aug variants' list [default: crop; crop,flip off digits]")
    parser.add_argument("--views", type=int, default=4, help="K of the views+aug variant")
    parser.add_argument("--compile", action="store_true", help="also time every variant with the step compiled")
    parser.add_argument("--clip-grad", type=float, default=DistillConfig.clip_grad, metavar="NORM",
                        help="the gradient-norm clip of every variant, as edgekd distill's --clip-grad "
                             "[default: distill's, %(default)g]; 0 = off")
    parser.add_argument("--clip-off", action="store_true",
                        help="also time every variant unclipped (eager): what --clip-grad costs")
    parser.add_argument("--repeats", type=int, default=3, help="each variant is timed this many times; the median counts")
    parser.add_argument("--render", action="store_true", help="only re-render the README's sections from the records")
    args = parser.parse_args()
    if not args.render:
        measure(args)
    from readme_section import render_records

    render_records(SECTIONS, render)


def measure(args) -> None:
    """Time every variant in turns; print and write the results file."""

    data = load_dataset(args.data)
    train_x, train_y, _, _ = holdout(data, 0.2, 0)
    subset = stratified_subset(train_y, args.student_fraction, 0)
    x, y = Samples(train_x[subset], fit_standardize(train_x), "cpu"), torch.from_numpy(train_y[subset])
    torch.manual_seed(0)
    teacher = build(args.teacher, data.input_shape, len(data.labels)).eval()   # speed does not depend on its weights
    augment = parse_augment(args.augment or ("crop" if args.data == "digits" else "crop,flip"))
    table = variants(teacher, x, augment, args.views)
    modes = [(False, True)]         # (compiled, clipped): eager and clipped, as edgekd distill trains
    if args.compile:
        modes.append((True, True))
    if args.clip_off and args.clip_grad:
        modes.append((False, False))
    warm = x[:4 * args.batch_size], y[:4 * args.batch_size]     # first calls pay one-time kernel set-up
    fit(build(args.student, data.input_shape, len(data.labels)), *warm,
        FitSettings(1, args.batch_size, 0.01, 0.0, 0, clip_grad=args.clip_grad), kd=_kd(predict_logits(teacher, warm[0])))
    load_start = os.getloadavg()
    runs: dict[str, list[dict]] = {_key(name, *mode): [] for mode in modes for name in table}
    for _ in range(args.repeats):
        for compiled, clipped in modes:
            for name, (aug, make_kd) in table.items():
                runs[_key(name, compiled, clipped)].append(
                    timed(args, data, x, y, aug, make_kd, compiled, args.clip_grad if clipped else 0.0))
    result = summarize(args, augment, runs, len(y), load_start)
    _print(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.data == "digits" else "_" + _source_name(args.data)
    path = RESULTS / f"distill_overhead{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def render(record: dict) -> str:
    """The README's table of one results file: each variant's time against its plain twin's, eager and compiled."""
    seconds = record["seconds_per_epoch"]
    steady = {name: times["steady_epoch"] for name, times in record["first_and_steady_epoch_seconds"].items()}
    compiled = "simple compiled" in seconds
    header = "| variant | s/epoch, cache included | time vs plain training | steady epochs (2nd on) vs plain |"
    lines = [header + (" compiled s/epoch | compiled, vs plain compiled | compiled steady epochs vs eager |"
                       if compiled else ""),
             "|---|---:|---:|---:|" + ("---:|---:|---:|" if compiled else "")]
    for name, twin in TWINS.items():
        row = f"| {name} | {seconds[name]:.3f} | {seconds[name] / seconds[twin]:.2f}× | {steady[name] / steady[twin]:.2f}× |"
        if compiled:
            row += (f" {seconds[_key(name, True)]:.3f} | {seconds[_key(name, True)] / seconds[_key(twin, True)]:.2f}× | "
                    f"{record['compiled'][name]['steady_speedup']:.2f}× as fast |")
        lines.append(row)
    cached = seconds["cached"] / seconds["simple"]
    machine = record["machine"]
    lines += ["", f"{record['data']}: {record['samples']:,} student samples, `{record['student']}` student, "
              f"`{record['teacher']}` teacher, {record['epochs']} epochs of batch {record['batch_size']}, median of "
              f"{record['repeats']} runs timed in turns; augmentation `{','.join(record['augment'])}`, "
              f"{record['views']} cached views. Target cached ≤ 1.10× plain: {cached:.2f}× "
              f"({'met' if cached <= 1.10 else '**missed**'}). {machine['cpu_threads']} threads, torch "
              f"{machine['torch']}, load average {machine['load_start'][0]} at the start and {machine['load_end'][0]} "
              "at the end."]
    return "\n".join(lines) + _clipping(record)


def _clipping(record: dict) -> str:
    """The clip the variants trained with, and (``--clip-off``) each one's time against itself unclipped;
    nothing for a record made before ``--clip-grad``."""
    if "clip_grad" not in record:
        return ""
    text = f" Gradients clipped at norm {record['clip_grad']:g} (`--clip-grad`)" if record["clip_grad"] else \
        " Gradients not clipped (`--clip-grad 0`)"
    costs = record.get("clipping") or {}
    if costs:
        text += ": time against the same training unclipped " + ", ".join(
            f"{name} {value['time_vs_unclipped']:.2f}× (steady epochs {value['steady_vs_unclipped']:.2f}×)"
            for name, value in costs.items())
    return text + "."


def _key(name: str, compiled: bool, clipped: bool = True) -> str:
    return name + (" compiled" if compiled else "") + ("" if clipped else " unclipped")


def summarize(args, augment, runs: dict[str, list[dict]], samples: int, load_start) -> dict:
    median = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    speed = {name: samples / m["per_epoch"] for name, m in median.items()}
    ratio = {"cached / simple": speed["cached"] / speed["simple"],
             "online+aug / simple+aug": speed["online+aug"] / speed["simple+aug"],
             "views+aug / simple+aug": speed["views+aug"] / speed["simple+aug"]}
    compiled = {name: {"steady_speedup": median[name]["steady_epoch"] / median[_key(name, True)]["steady_epoch"],
                       # compiled once per process: the first repeat's first epoch holds the compilation
                       "first_epoch_seconds": max(r["first_epoch"] for r in runs[_key(name, True)])}
                for name in median if not name.endswith("compiled") and _key(name, True) in median}
    # what --clip-grad costs: each variant clipped against the same variant unclipped
    clipping = {name: {"time_vs_unclipped": median[name]["per_epoch"] / median[_key(name, False, False)]["per_epoch"],
                       "steady_vs_unclipped": median[name]["steady_epoch"] / median[_key(name, False, False)]["steady_epoch"]}
                for name in TWINS if _key(name, False, False) in median}
    return {"data": args.data, "samples": samples, "student_fraction": args.student_fraction,
            "teacher": args.teacher, "student": args.student, "augment": list(augment), "views": args.views,
            "epochs": args.epochs, "batch_size": args.batch_size, "repeats": args.repeats,
            "seconds_per_epoch": {name: m["per_epoch"] for name, m in median.items()},
            "first_and_steady_epoch_seconds": median, "every_repeat": runs, "samples_per_second": speed,
            "samples_per_second_ratios": ratio, "target_cached_over_simple_samples_per_second": round(1 / 1.10, 4),
            "compiled": compiled, "clip_grad": args.clip_grad, "clipping": clipping,
            "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                        "torch": torch.__version__, "platform": platform.platform(),
                        "load_start": [round(v, 2) for v in load_start],
                        "load_end": [round(v, 2) for v in os.getloadavg()]}}


def _print(result: dict) -> None:
    for name, seconds in result["seconds_per_epoch"].items():
        print(f"{name:>20}: {1000 * seconds:9.1f} ms/epoch  {result['samples_per_second'][name]:9.0f} samples/s")
    for name, value in result["samples_per_second_ratios"].items():
        print(f"{name:>24} samples/s = {value:.3f}")
    print(f"target: cached / simple >= {1 / 1.10:.3f} (at most 1.10x the time)")
    for name, value in result["compiled"].items():
        print(f"--compile, {name}: steady epochs {value['steady_speedup']:.2f}x as fast "
              f"(first epoch, with the compilation: {value['first_epoch_seconds']:.1f} s)")
    for name, value in result["clipping"].items():
        print(f"--clip-grad {result['clip_grad']:g}, {name}: {value['time_vs_unclipped']:.3f}x the time unclipped "
              f"(steady epochs {value['steady_vs_unclipped']:.3f}x)")


def _source_name(spec: str) -> str:
    """``idx:/usr/share/datasets/fashion-mnist`` → ``fashion_mnist``: one results file per data set."""
    return Path(spec.partition(":")[2] or spec).stem.replace("-", "_") or spec.partition(":")[0]


if __name__ == "__main__":
    main()
