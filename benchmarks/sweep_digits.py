"""``edgekd sweep`` on digits at distill's default settings: five students of two zoo families
(cnn, mlp) against the default teacher, each distilled with 5-fold CV, exported and benched, the
pick made by ``examples/sweep-budget.toml``; the target is the whole sweep within 15 minutes on
this 2-core machine.

    python benchmarks/sweep_digits.py            # run the sweep (the real command), record, rewrite the README
    python benchmarks/sweep_digits.py --render   # only rewrite the README's section from the record

Records the wall time, the machine's load and the sweep's own table in
``benchmarks/results/sweep_digits.json`` (its plot: ``sweep_digits.png``) and rewrites the README
between the ``sweep-digits`` markers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edgekd.core.schema.cv import read as read_cv
from edgekd.app.sweep.outputs import COLUMNS, pick_line, table_rows

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECORD = RESULTS / "sweep_digits.json"
SECTION = "sweep-digits"
STUDENTS = "cnn:width=4,depth=1;cnn:width=8,depth=2;cnn:width=16,depth=2;mlp:hidden=16;mlp:hidden=64"
BUDGET = "examples/sweep-budget.toml"
TARGET_MINUTES = 15


def command(out: Path) -> list[str]:
    return [sys.executable, "-m", "edgekd", "sweep", "--students", STUDENTS, "--budget", BUDGET,
            "--out", str(out), "--force", "--quiet", "--json"]


def render(record: dict) -> str:
    doc, bench = record["sweep"], record["sweep"]["bench_settings"]
    out = [f"`edgekd sweep --students '{STUDENTS}' --budget {BUDGET}` (distill's defaults: 5 folds, "
           f"150 student epochs; bench: threads {' and '.join(map(str, bench['threads']))}, {bench['repeat']} "
           f"repetitions each, the fronts at {bench['threads'][0]} thread) took "
           f"**{record['minutes']:.1f} min** on {doc['device']} (target: {TARGET_MINUTES} min; load average "
           f"{record['load'][0]:.2f} at the start). The teacher trained once: "
           f"{record['teacher_seconds']:.0f} s of the {record['distill_seconds']:.0f} s of distilling.", "",
           "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(row) + " |" for row in table_rows(doc)]
    out += ["", pick_line(doc) + ". Plot: `benchmarks/results/sweep_digits.png`; record: "
            "`benchmarks/results/sweep_digits.json`."]
    return "\n".join(out)


def teacher_seconds(folder: Path, doc: dict) -> float:
    """The teacher's training time: in the first student's run, the only one that trained it."""
    cv = read_cv(folder / doc["students"][0]["run"])
    return sum(split["teacher"]["seconds"] for split in [*cv["folds"], cv["final"]])


def main() -> None:
    from readme_section import render_records, write_record

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--render", action="store_true",
                    help="only re-render the docs section and redraw sweep_digits.png from the record")
    ap.add_argument("--out", default="runs/sweep_digits", help="the sweep folder")
    args = ap.parse_args()
    if args.render:
        from edgekd.app.sweep.plot import sweep_png

        render_records({SECTION: RECORD}, render)
        (RESULTS / "sweep_digits.png").write_bytes(sweep_png(json.loads(RECORD.read_text())["sweep"]))
        return
    load, started = os.getloadavg(), time.monotonic()
    result = subprocess.run(command(ROOT / args.out), capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(result.stderr)
    minutes = (time.monotonic() - started) / 60
    doc = json.loads(result.stdout)
    folder = ROOT / args.out
    RESULTS.mkdir(exist_ok=True)
    shutil.copyfile(folder / "sweep.png", RESULTS / "sweep_digits.png")
    record = {"minutes": minutes, "load": load, "teacher_seconds": teacher_seconds(folder, doc),
              "distill_seconds": sum(s["seconds"]["distill"] for s in doc["students"]), "sweep": doc}
    write_record(RECORD, record, SECTION, render)


if __name__ == "__main__":
    main()
