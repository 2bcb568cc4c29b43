"""Fashion-MNIST end to end with real models: distill → export --int8 → bench, on the official
60,000/10,000 split, augmented, 1 fold.

    apt-get install -y dataset-fashion-mnist          # → /usr/share/datasets/fashion-mnist
    python benchmarks/fashion_mnist.py                # IDX files; the target is 20 min on 2 cores (TARGETS)
    python benchmarks/fashion_mnist.py --source folder    # the same images as a folder of PNGs (written once)
    python benchmarks/fashion_mnist.py --device cuda      # a GPU: the longer schedule (SCHEDULES["cuda"])

The teacher is a ResNet-8 (78k parameters, 9.3M MACs), the student a MobileNetV3-Small at width
0.25 (0.85M MACs: at most 1/10 of the teacher's), the "simple" model the student trained without
the teacher. Recipe (SETTINGS): pad-and-crop by 4 px and horizontal flips (clothes are left-right
symmetric; digits are not), the teacher's logits cached for 4 augmented views of every image
(``--teacher-views``: most of augmentation's benefit at the cached path's cost), SGD with Nesterov
momentum, one warm-up epoch, cosine decay, label smoothing 0.1 on the hard labels.

Targets (printed as MET/MISSED, written to benchmarks/results/fashion_mnist[_folder].json):
teacher ≥ 93.0 % test accuracy; student within 1.5 points of the teacher; distilled student ≥
simple + 0.5 points; the int8 TFLite student within 0.5 points of its fp32 ONNX file; the whole
run (distill, export, bench) within 20 minutes, at held-out accuracies no more than 0.3 points
below the baseline (``previous``: the last record before the step modes, carried from record to
record, so that re-runs cannot each drift by the allowance). Each model trains in the step mode
``--precision auto --memory-format auto`` chooses for it, recorded per role (``modes``). The peak
RSS of the run is reported against the uint8 size of the data set (the process's own baseline,
torch loaded, apart: torch alone is several times Fashion-MNIST's 55 MB).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from edgekd.core.gap import gap_closed, gap_text

IDX = Path("/usr/share/datasets/fashion-mnist")
RESULTS = Path(__file__).parent / "results"
SECTIONS = {"fashion-mnist": RESULTS / "fashion_mnist.json", "fashion-mnist-folder": RESULTS / "fashion_mnist_folder.json"}
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
SETTINGS = dict(teacher="resnet:depth=8", student="mobilenetv3:variant=small,width=0.25", student_fraction=1.0,
                batch_size=128, lr=0.05, optimizer="sgd", weight_decay=5e-4, warmup_epochs=1, label_smoothing=0.1,
                augment="crop,flip", teacher_views=4, temperature=4.0, alpha=0.5, seed=0)
# the teacher gets the longer schedule: on this 2-core CPU a teacher epoch over 60,000 images took ~25 s and
# a student one ~50 s in fp32 (measured with --epochs 1)
SCHEDULES = {"cpu": dict(teacher_epochs=30, student_epochs=12), "cuda": dict(teacher_epochs=100, student_epochs=60)}
TARGETS = {"teacher_accuracy": 0.930, "student_behind_teacher": 0.015, "distillation_gain": 0.005,
           "int8_drop": 0.005, "total_minutes": 20.0, "behind_previous": 0.003}


def write_png_folder(root: Path) -> Path:
    """The IDX files as ``root/train/CLASS/N.png`` and ``root/test/CLASS/N.png`` (lossless: the
    same uint8 pixels), written once; a finished folder is kept (``.complete`` marks it)."""
    from PIL import Image

    if (root / ".complete").is_file():
        return root
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = _idx(IDX / f"{prefix}-images-idx3-ubyte.gz"), _idx(IDX / f"{prefix}-labels-idx1-ubyte.gz")
        for name in CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for index, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image).save(root / split / CLASSES[label] / f"{index:05d}.png")
    (root / ".complete").write_text("")
    return root


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def rss_mb() -> float:
    """This process's resident set now (Linux /proc), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def distill(data: str, out: Path, schedule: dict, device: str) -> dict:
    from edgekd.train.config import load_config
    from edgekd.train.distill import run_experiment

    def progress(event, **info):
        if event == "log":
            print(f"  {info['text']}", flush=True)

    cfg = load_config(None, data=data, folds=1, device=device, out=str(out), **{**SETTINGS, **schedule})
    return run_experiment(cfg, reporter=progress, force=True)


def verdicts(summary: dict, bench: dict, minutes: float, previous: dict | None) -> dict:
    """Each target: the measured value, the limit and whether it is met (against the previous record's
    held-out accuracies where there is one)."""
    test = summary["test"]
    accuracy = {m["file"]: m["accuracy"] for m in bench["models"]}
    int8_drop = accuracy["student.onnx"] - accuracy["student.int8.tflite"]
    checks = {"teacher_accuracy": (test["teacher"], test["teacher"] >= TARGETS["teacher_accuracy"]),
              "student_behind_teacher": (test["teacher"] - test["student"],
                                         test["teacher"] - test["student"] <= TARGETS["student_behind_teacher"]),
              "distillation_gain": (test["student"] - test["simple"],
                                    test["student"] - test["simple"] >= TARGETS["distillation_gain"]),
              "int8_drop": (int8_drop, int8_drop <= TARGETS["int8_drop"]),
              "total_minutes": (minutes, minutes <= TARGETS["total_minutes"])}
    if previous is not None:
        behind = max(previous["test"][role] - test[role] for role in test)
        checks["behind_previous"] = (behind, behind <= TARGETS["behind_previous"])
    return {name: {"value": value, "target": TARGETS[name], "met": bool(met)} for name, (value, met) in checks.items()}


def macs_check(summary: dict) -> dict:
    teacher, student = summary["models"]["teacher"]["macs"], summary["models"]["student"]["macs"]
    return {"teacher_macs": teacher, "student_macs": student, "student_over_teacher": student / teacher,
            "met": student * 10 <= teacher}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=["idx", "folder"], default="idx")
    parser.add_argument("--png-folder", default="runs/fashion_mnist_png", help="where --source folder writes the PNGs")
    parser.add_argument("--out", default="runs/fashion_mnist", help="run folder (overwritten)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--epochs", type=int, help="a shorter check of the pipeline: N epochs per model, its own "
                                                   "results file (…_epochsN.json)")
    parser.add_argument("--render", action="store_true", help="only re-render the README's sections from the records")
    args = parser.parse_args()
    if not args.render:
        measure(args)
    from readme_section import render_records

    render_records(SECTIONS, render)


def measure(args) -> None:
    """Distill, export and bench; print the verdicts and write the results file."""
    schedule = SCHEDULES[args.device] if not args.epochs else dict(
        teacher_epochs=args.epochs, student_epochs=args.epochs, warmup_epochs=min(SETTINGS["warmup_epochs"], args.epochs - 1))

    import edgekd
    import edgekd.train.distill  # noqa: F401  (torch and the models loaded: the baseline the data adds to)
    from edgekd.device.bench.run import run_bench

    data = f"idx:{IDX}" if args.source == "idx" else f"folder:{write_png_folder(Path(args.png_folder))}"
    load_start, baseline = os.getloadavg(), rss_mb()
    run, started = Path(args.out), time.perf_counter()
    print(f"distill {data} → {run}", flush=True)
    summary = distill(data, run, schedule, args.device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    distilled = time.perf_counter()
    edgekd.export(run, force=True)
    exported = time.perf_counter()
    bench = run_bench(run / "bundle", threads=[1], out=run / "bundle" / "bench.json")
    finished = time.perf_counter()
    uint8_mb = 70_000 * 28 * 28 / 1e6        # 60,000 + 10,000 images of 28×28 bytes
    path = RESULTS / ("fashion_mnist" + ("_folder" if args.source == "folder" else "")
                      + ("_cuda" if args.device == "cuda" else "")
                      + (f"_epochs{args.epochs}" if args.epochs else "") + ".json")
    previous = _previous(path)
    result = {
        "data": data, "settings": {**SETTINGS, **schedule}, "device": args.device,
        "distill": {k: summary[k] for k in ("data", "models", "cv", "test", "samples_per_second", "seconds")},
        "bench": [{k: m[k] for k in ("role", "file", "format", "precision", "bytes", "accuracy")} for m in bench["models"]],
        "modes": {role: {key: summary["final"][role][key] for key in ("precision", "memory_format", "mode_why")}
                  for role in ("teacher", "student", "simple")},
        "previous": previous,
        "targets": verdicts(summary, bench, (finished - started) / 60, previous), "macs": macs_check(summary),
        "memory_mb": {"peak_rss": peak, "rss_before_data": baseline, "data_uint8": uint8_mb,
                      "peak_above_baseline_over_data": (peak - baseline) / uint8_mb},
        "seconds": {"distill": distilled - started, "export": exported - distilled, "bench": finished - exported,
                    "total": finished - started},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": cpu_name(),
                    "python": platform.python_version(), "load_start": [round(v, 2) for v in load_start],
                    "load_end": [round(v, 2) for v in os.getloadavg()]},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"wrote {path}")


def _previous(path: Path) -> dict | None:
    """The baseline: the record's own baseline, kept, or (a record from before the step modes, which has
    none) that record in brief: held-out accuracies, total time, samples/s."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if "previous" in record:
        return record["previous"]
    return {"test": record["distill"]["test"], "total_minutes": record["seconds"]["total"] / 60,
            "samples_per_second": record["distill"]["samples_per_second"]}


def render(record: dict) -> str:
    """The README's section of one run: the three models, the exported files, the targets, time and memory."""
    distilled, test, cv = record["distill"], record["distill"]["test"], record["distill"]["cv"]
    modes = record.get("modes", {})
    lines = ["| role | model | parameters | MACs | held-out accuracy | CV-fold accuracy | training samples/s |"
             + (" step mode |" if modes else ""), "|---|---|---:|---:|---:|---:|---:|" + ("---|" if modes else "")]
    for role, model in distilled["models"].items():
        mode = f" {modes[role]['precision']}, {modes[role]['memory_format']} |" if modes else ""
        lines.append(f"| {role} | `{model['arch']}` | {model['parameters']:,} | {model['macs'] / 1e6:.2f}M | "
                     f"{test[role]:.2%} | {cv[role]['mean']:.2%} | {distilled['samples_per_second'][role]:,.0f} |{mode}")
    lines += ["", _gap_closed(distilled)]
    lines += ["", "| file | format | size | held-out accuracy |", "|---|---|---:|---:|"]
    lines += [f"| `{m['file']}` | {m['format']} {m['precision']} | {m['bytes'] / 1e3:,.0f} kB | {m['accuracy']:.2%} |"
              for m in record["bench"]]
    lines += ["", "| target | measured | limit | |", "|---|---:|---:|---|"]
    lines += [_target_row(name, verdict) for name, verdict in record["targets"].items()]
    macs, memory, seconds, machine = record["macs"], record["memory_mb"], record["seconds"], record["machine"]
    lines += [f"| student MACs / teacher MACs | {macs['student_over_teacher']:.3f} | ≤ 0.1 | "
              f"{'met' if macs['met'] else '**missed**'} |", "",
              f"{record['data']}, {record['device']}: total {seconds['total'] / 60:.1f} min (distill "
              f"{seconds['distill']:.0f} s, export {seconds['export']:.0f} s, bench {seconds['bench']:.0f} s) on "
              f"{machine['cpus']} cores of an {machine['processor']}, load average {machine['load_start'][0]} at the "
              f"start and {machine['load_end'][0]} at the end. Peak RSS {memory['peak_rss']:.0f} MB, "
              f"{memory['rss_before_data']:.0f} MB of it before the data (torch and the models); the data set as "
              f"uint8 is {memory['data_uint8']:.0f} MB."]
    previous = record.get("previous")
    if previous:
        lines += ["", "The baseline, the last run before the step modes, from an earlier session whose CPU may differ "
                      "(same-machine ratios of the "
                      "step modes: [training speed](../guides/scale.md#training-speed---precision---memory-format---compile)): "
                      f"{previous['total_minutes']:.1f} min, held-out accuracies "
                      + ", ".join(f"{role} {value:.2%}" for role, value in previous["test"].items())
                      + ", training samples/s " + ", ".join(f"{role} {value:,.0f}" for role, value
                                                           in previous["samples_per_second"].items()) + "."]
    return "\n".join(lines)


def _gap_closed(distilled: dict) -> str:
    """The gap closed on the held-out split and on the CV fold, from the recorded accuracies (the
    benchmark runs one fold: its CV means are that fold's accuracies)."""
    test, cv = distilled["test"], distilled["cv"]
    held_out = gap_closed(test["teacher"], test["student"], test["simple"])
    fold = gap_closed(cv["teacher"]["mean"], cv["student"]["mean"], cv["simple"]["mean"])
    return (f"Gap closed, (student − simple) / (teacher − simple): {gap_text(held_out)} on the held-out split, "
            f"{gap_text(fold)} on the CV fold.")


def _target_row(name: str, verdict: dict) -> str:
    sign = "≥" if name in ("teacher_accuracy", "distillation_gain") else "≤"
    if name == "teacher_accuracy":
        measured, limit = f"{verdict['value']:.2%}", f"{verdict['target']:.1%}"
    elif name == "total_minutes":
        measured, limit = f"{verdict['value']:.1f} min", f"{verdict['target']:.0f} min"
    elif name == "behind_previous":
        name = "accuracy behind the baseline (worst role)"
        measured, limit = f"{100 * verdict['value']:+.2f} points", f"{100 * verdict['target']:.1f} points"
    else:
        measured, limit = f"{100 * verdict['value']:+.2f} points", f"{100 * verdict['target']:.1f} points"
    return f"| {name.replace('_', ' ')} | {measured} | {sign} {limit} | {'met' if verdict['met'] else '**missed**'} |"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()
