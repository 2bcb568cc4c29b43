"""Does the CI gate's latency check hold still on a noisy machine? The demo bundle against itself.

Nothing changes between the runs, so every latency FAIL here would be a false alarm:

1. bench the demo bundle once and keep it as the baseline (what `--save-baseline` stores);
2. bench it again ROUNDS times in a row, each time checked with `edgekd.bench.gate.check`
   against that baseline and the committed example budget (examples/edgekd-budget.toml,
   whose [baseline] holds the latency tolerance);
3. print each round's latency verdicts: the p50 change, the tolerance and this run's spread.

    .venv/bin/python benchmarks/gate_noise.py [BUNDLE] [--rounds 5] [--threads 1] [--results DIR]

Bench settings are the example workflow's (threads 1, 3 repetitions, bench's default runs).
Writes benchmarks/results/gate_noise.json and the baseline itself,
benchmarks/results/gate_noise_baseline.json (a real bench of `make demo`'s bundle, which
tests/test_gate.py checks the example budget against). Exit 1 if any latency check fails.
Without BUNDLE it uses runs/demo/bundle, made as `make demo` makes it when missing.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd.bench import run_bench  # noqa: E402
from edgekd.bench.gate import REPEAT, check, lines, load_budget  # noqa: E402
from edgekd.bench.text import device_line  # noqa: E402
from edgekd.fsutil import atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BUDGET = ROOT / "examples" / "edgekd-budget.toml"
LATENCY = "max_latency_increase_percent"


def demo_bundle(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    run = ROOT / "runs" / "demo"
    if not (run / "bundle" / "manifest.json").is_file():
        print("note: no runs/demo/bundle; making it as `make demo` does (edgekd distill + export --int8)")
        for cmd in (["distill", "--out", str(run), "--force", "--quiet"], ["export", str(run), "--int8", "--force",
                                                                             "--quiet"]):
            subprocess.run([sys.executable, "-m", "edgekd", *cmd], check=True, cwd=ROOT)
    return run / "bundle"


def latency_rows(report) -> list[dict]:
    return [{"model": c.model, "setting": c.setting, "change_percent": c.measured, "tolerance_percent": c.limit,
             "spread_percent": c.spread, "detail": c.detail, "passed": c.passed} for c in report.checks if c.key == LATENCY]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", help="bundle folder [default: runs/demo/bundle]")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--results", default=str(RESULTS), help="folder for the two JSON files")
    args = ap.parse_args()
    bundle = demo_bundle(args.bundle)
    settings = dict(threads=[int(t) for t in args.threads.split(",")], repeat=REPEAT, out=False)

    print(f"baseline: bench {bundle} (threads {args.threads}, {REPEAT} repetitions)")
    baseline = run_bench(bundle, **settings)
    results = Path(args.results)
    atomic_write_json(results / "gate_noise_baseline.json", baseline)
    print(device_line(baseline))

    rounds, budget = [], load_budget(BUDGET)
    for i in range(1, args.rounds + 1):
        result = run_bench(bundle, **settings)
        report = check(result, budget=budget, baseline=baseline)
        rows = latency_rows(report)
        print(f"\nround {i}/{args.rounds}: gate {'passed' if report.passed else 'FAILED'}")
        for line in lines(report, result):
            if LATENCY in line or line.startswith(("gate ", "note:")) or line.startswith("FAIL"):
                print("  " + line)
        rounds.append({"round": i, "gate_passed": report.passed, "latency": rows,
                       "failed_checks": [c.line() for c in report.failed]})

    every = [r for rd in rounds for r in rd["latency"]]
    spreads = [r["spread_percent"] for r in every]
    summary = {
        "rounds": args.rounds, "latency_checks": len(every),
        "latency_failures": sum(not r["passed"] for r in every),
        "beyond_tolerance_but_within_spread": sum(r["passed"] and r["change_percent"] > r["tolerance_percent"]
                                                  for r in every),
        "max_abs_change_percent": max(abs(r["change_percent"]) for r in every),
        "median_abs_change_percent": statistics.median(abs(r["change_percent"]) for r in every),
        "max_spread_percent": max(spreads), "median_spread_percent": statistics.median(spreads),
        "gates_passed": sum(rd["gate_passed"] for rd in rounds),
    }
    doc = {"what": "the demo bundle benched against its own baseline, round after round; every latency FAIL "
                   "would be a false alarm",
           "bundle": str(bundle), "budget": str(BUDGET.relative_to(ROOT)), "device": device_line(baseline),
           "settings": {"threads": args.threads, "repeat": REPEAT, "runs": baseline["settings"]["runs"],
                        "min_seconds": baseline["settings"]["min_seconds"]},
           "summary": summary, "rounds": rounds}
    atomic_write_json(results / "gate_noise.json", doc)
    print(f"\n{summary['latency_failures']} latency failures in {summary['latency_checks']} checks over "
          f"{args.rounds} rounds; |p50 change| median {summary['median_abs_change_percent']:.1f}%, max "
          f"{summary['max_abs_change_percent']:.1f}%; spread median {summary['median_spread_percent']:.1f}%, max "
          f"{summary['max_spread_percent']:.1f}%; {summary['beyond_tolerance_but_within_spread']} changes beyond "
          f"the tolerance were within the run's spread; whole gate passed {summary['gates_passed']}/{args.rounds}")
    print(f"wrote {results / 'gate_noise.json'}")
    return 1 if summary["latency_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
