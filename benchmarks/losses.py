"""What each registered distillation loss buys on digits: the demo's experiment (5 folds, the
default teacher and student, 10 % of each training part for the student) once per ``--loss``.

    python benchmarks/losses.py                 # kd, dkd, fitnet; writes benchmarks/results/losses.json
    python benchmarks/losses.py --render        # only re-render the README's table from the record

Every loss sees the same splits, seeds, teacher (retrained per run, bit-identical on CPU) and
simple model, so the simple model's accuracy is the same in every row and the gain is the loss's.
``dkd`` runs with the paper's settings (alpha 1, beta 8, T 4, 20 warm-up epochs of the 150);
``fitnet`` with mdistiller's weights (features 100, CE 1).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from edgekd.core.gap import gap_closed, gap_text
from edgekd.train.options import SEPARATOR, split_spec, split_specs

RECORD = Path(__file__).parent / "results" / "losses.json"
SECTION = "losses"    # the README markers
LOSSES = ("kd", "dkd", "fitnet")


def run_loss(work: Path, loss: str) -> dict:
    """One distill run with ``loss`` (the demo's settings otherwise): its cv.json figures and time."""
    from edgekd.train.config import load_config
    from edgekd.train.distill import run_experiment

    started = time.perf_counter()
    doc = run_experiment(load_config(None, loss=loss, out=str(work / split_spec(loss)[0])), force=True)
    cv = doc["cv"]
    return {"loss": loss, "student_cv_mean": cv["student"]["mean"], "student_cv_std": cv["student"]["std"],
            "simple_cv_mean": cv["simple"]["mean"], "gain_mean": cv["distillation_gain"]["mean"],
            "gain_std": cv["distillation_gain"]["std"], "student_test": doc["test"]["student"],
            "simple_test": doc["test"]["simple"], "teacher_test": doc["test"]["teacher"],
            "seconds": round(time.perf_counter() - started, 1)}


def render(record: dict) -> str:
    lines = ["| `--loss` | student CV accuracy | simple CV accuracy | gain (CV, mean ± std over 5 folds) | "
             "student held-out | simple held-out | gap closed (held-out) | run time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in record["rows"]:
        gap = gap_closed(row["teacher_test"], row["student_test"], row["simple_test"])
        lines.append(f"| `{row['loss']}` | {row['student_cv_mean']:.2%} ± {100 * row['student_cv_std']:.1f} | "
                     f"{row['simple_cv_mean']:.2%} | {100 * row['gain_mean']:+.1f} ± {100 * row['gain_std']:.1f} "
                     f"points | {row['student_test']:.2%} | {row['simple_test']:.2%} | {gap_text(gap)} | "
                     f"{row['seconds']:.0f} s |")
    lines.append(f"\nMeasured on {record['machine']}, load average {record['load_start'][0]} at the start.")
    return "\n".join(lines)


def main() -> None:
    from readme_section import render_records, write_record

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/losses"))
    parser.add_argument("--losses", default=SEPARATOR.join(LOSSES), help=f"--loss specs, separated by '{SEPARATOR}'")
    parser.add_argument("--render", action="store_true", help="only re-render the README from the record")
    args = parser.parse_args()
    if not args.render:
        load_start = [round(v, 2) for v in os.getloadavg()]
        rows = []
        for loss in split_specs(args.losses):
            rows.append(run_loss(args.work, loss))
            print(json.dumps(rows[-1]), flush=True)
        record = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "load_start": load_start, "rows": rows}
        write_record(RECORD, record, SECTION, render)
    else:
        render_records({SECTION: RECORD}, render)


if __name__ == "__main__":
    main()
