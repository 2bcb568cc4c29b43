"""What does distillation cost per epoch, compared with training the simple model?

Three ways to train the same student on the same data, epochs and batch size:
  simple   labels only (cross-entropy)
  cached   edgekd's distillation: the teacher's logits computed once, sliced per batch
  naive    distillation that runs the teacher forward on every batch
Prints seconds per epoch and the ratios; target: cached / simple <= 1.10.
Writes benchmarks/results/distill_overhead[_<data>].json.

    python benchmarks/distill_overhead.py                     # digits
    python benchmarks/distill_overhead.py --data idx:/usr/share/datasets/fashion-mnist --epochs 2
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from edgekd.data import load_dataset
from edgekd.data.preprocess import fit_standardize, standardize
from edgekd.data.split import holdout
from edgekd.distill.train import FitSettings, KDTarget, fit, predict_logits, to_tensors
from edgekd.models import build

RESULTS = Path(__file__).parent / "results"


class LiveTeacherLogits:
    """Looks like the cached logits tensor, but runs the teacher for every batch it is indexed by."""

    def __init__(self, teacher, x):
        self.teacher, self.x = teacher, x

    def __getitem__(self, index):
        with torch.no_grad():
            return self.teacher(self.x[index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--teacher", default="cnn:width=64,depth=3")
    parser.add_argument("--student", default="cnn:width=8,depth=2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="each variant is timed this many times; the median counts")
    args = parser.parse_args()

    data = load_dataset(args.data)
    train_x, train_y, _, _ = holdout(data, 0.2, 0)
    x, y = to_tensors(standardize(fit_standardize(train_x), train_x), train_y, "cpu")
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
        "cached": lambda: KDTarget(4.0, 0.1, logits=predict_logits(teacher, x)),   # the cache is timed too
        "naive": lambda: KDTarget(4.0, 0.1, logits=LiveTeacherLogits(teacher, x)),
    }
    seconds = {name: statistics.median(timed(make) for _ in range(args.repeats)) for name, make in variants.items()}
    result = {
        "data": args.data, "samples": len(y), "teacher": args.teacher, "student": args.student,
        "epochs": args.epochs, "batch_size": args.batch_size, "repeats": args.repeats,
        "seconds_per_epoch": seconds,
        "samples_per_second": {k: len(y) / v for k, v in seconds.items()},
        "cached_over_simple": seconds["cached"] / seconds["simple"],
        "naive_over_simple": seconds["naive"] / seconds["simple"],
        "naive_over_cached": seconds["naive"] / seconds["cached"],
        "target_cached_over_simple": 1.10,
        "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "platform": platform.platform()},
    }
    for name, value in seconds.items():
        print(f"{name:>7}: {1000 * value:8.1f} ms/epoch  {len(y) / value:9.0f} samples/s")
    print(f"cached / simple = {result['cached_over_simple']:.3f}  (target <= 1.10)")
    print(f"naive  / simple = {result['naive_over_simple']:.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.data == "digits" else "_" + args.data.split(":")[0]
    path = RESULTS / f"distill_overhead{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
