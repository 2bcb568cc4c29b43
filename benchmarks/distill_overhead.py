"""What does distillation cost per epoch, compared with training the simple model?

Three ways to train the same student on the same data, epochs and batch size:
  simple   labels only (cross-entropy)
  cached   edgekd's distillation: the teacher's logits computed once, sliced per batch
  naive    distillation that runs the teacher forward on every batch
The student trains, as in ``edgekd distill``, on a stratified ``--student-fraction`` of the
training part, and the cache is computed for that subset inside the timed region. The
variants are timed in turns (simple, cached, naive, simple, ...) so that a burst of load
from elsewhere hits all of them alike; each variant's median counts.
Prints seconds per epoch, samples/s and the ratios; target: cached / simple samples/s >= 1/1.10
(at most 1.10x the time).
Writes benchmarks/results/distill_overhead[_<source>].json.

    python benchmarks/distill_overhead.py --epochs 20 --repeats 5     # digits (README's run)
    python benchmarks/distill_overhead.py --data idx:/usr/share/datasets/fashion-mnist \
        --teacher cnn:width=16,depth=3 --student-fraction 0.1 --batch-size 64 --epochs 20
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

from edgekd.data import load_dataset
from edgekd.data.preprocess import fit_standardize
from edgekd.data.split import holdout, stratified_subset
from edgekd.distill.losses import build_loss
from edgekd.distill.samples import Samples
from edgekd.distill.train import FitSettings, KDTarget, fit, predict_logits
from edgekd.models import build

RESULTS = Path(__file__).parent / "results"


class LiveTeacherLogits:
    """Looks like the cached logits tensor, but runs the teacher for every batch it is indexed by."""

    def __init__(self, teacher, x):
        self.teacher, self.x = teacher, x

    def __getitem__(self, index):
        with torch.no_grad():
            return self.teacher(self.x[index])


def _kd(logits) -> KDTarget:
    """Hinton's KD at the demo's T=4, alpha=0.1, learning from ``logits``."""
    return KDTarget(build_loss("kd", temperature=4.0, alpha=0.1), outputs={"logits": logits})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--teacher", default="cnn:width=64,depth=3")
    parser.add_argument("--student", default="cnn:width=8,depth=2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--student-fraction", type=float, default=1.0,
                        help="part of the training data the student sees (edgekd distill's default is 0.1)")
    parser.add_argument("--repeats", type=int, default=3, help="each variant is timed this many times; the median counts")
    args = parser.parse_args()

    data = load_dataset(args.data)
    train_x, train_y, _, _ = holdout(data, 0.2, 0)
    subset = stratified_subset(train_y, args.student_fraction, 0)
    x, y = Samples(train_x[subset], fit_standardize(train_x), "cpu")[:], torch.from_numpy(train_y[subset])
    torch.manual_seed(0)
    teacher = build(args.teacher, data.input_shape, len(data.labels)).eval()   # speed does not depend on its weights
    settings = FitSettings(args.epochs, args.batch_size, 0.01, 0.0, seed=0)

    def timed(kd_factory) -> float:
        torch.manual_seed(1)
        student = build(args.student, data.input_shape, len(data.labels))
        started = time.perf_counter()
        kd = kd_factory()
        fit(student, x, y, settings, kd=kd)
        return (time.perf_counter() - started) / args.epochs

    variants = {
        "simple": lambda: None,
        "cached": lambda: _kd(predict_logits(teacher, x)),   # the cache is timed too
        "naive": lambda: _kd(LiveTeacherLogits(teacher, x)),
    }
    warm = x[:4 * args.batch_size], y[:4 * args.batch_size]     # first calls pay one-time kernel set-up
    fit(build(args.student, data.input_shape, len(data.labels)), *warm, FitSettings(1, args.batch_size, 0.01, 0.0, 0),
        kd=_kd(predict_logits(teacher, warm[0])))
    load_start = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, make in variants.items():
            times[name].append(timed(make))
    seconds = {name: statistics.median(values) for name, values in times.items()}
    speed = {name: len(y) / value for name, value in seconds.items()}
    result = {
        "data": args.data, "samples": len(y), "student_fraction": args.student_fraction,
        "teacher": args.teacher, "student": args.student,
        "epochs": args.epochs, "batch_size": args.batch_size, "repeats": args.repeats,
        "seconds_per_epoch": seconds, "seconds_per_epoch_every_repeat": times,
        "samples_per_second": speed,
        "cached_over_simple_samples_per_second": speed["cached"] / speed["simple"],
        "naive_over_simple_samples_per_second": speed["naive"] / speed["simple"],
        "target_cached_over_simple_samples_per_second": round(1 / 1.10, 4),
        "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "platform": platform.platform(),
                    "load_start": [round(v, 2) for v in load_start],
                    "load_end": [round(v, 2) for v in os.getloadavg()]},
    }
    for name, value in seconds.items():
        print(f"{name:>7}: {1000 * value:8.1f} ms/epoch  {speed[name]:9.0f} samples/s")
    print(f"cached / simple samples/s = {result['cached_over_simple_samples_per_second']:.3f}  "
          f"(target >= {1 / 1.10:.3f}: at most 1.10x the time)")
    print(f"naive  / simple samples/s = {result['naive_over_simple_samples_per_second']:.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.data == "digits" else "_" + _source_name(args.data)
    path = RESULTS / f"distill_overhead{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def _source_name(spec: str) -> str:
    """``idx:/usr/share/datasets/fashion-mnist`` → ``fashion_mnist``: one results file per data set."""
    return Path(spec.partition(":")[2] or spec).stem.replace("-", "_") or spec.partition(":")[0]


if __name__ == "__main__":
    main()
