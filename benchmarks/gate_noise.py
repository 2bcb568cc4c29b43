"""Does the CI gate's latency check hold still, and does it catch a real slow-down? Both rules side by side.

1. bench `make demo`'s bundle once and keep it as the baseline bench.json (what `--save-baseline`
   stores; benchmarks/results/gate_noise_baseline.json, which tests/test_gate.py checks the example
   budget against);
2. SELF rounds: `bench BUNDLE --against BUNDLE`, the unchanged bundle against itself in one run
   (pairs of fresh child processes, alternating order). Its latency checks are judged twice, from
   the same measurements: by the A/B rule (edgekd.device.bench.gate.paired) and, the new side alone, by the
   baseline rule against the bench.json of step 1. Every latency FAIL is a false alarm;
3. BUSY rounds: the SELF comparison again while two busy loops compete for the 2 cores (the shared
   CI runner: the baseline of step 1 was measured on a quiet machine, this run is not);
4. DETECT rounds: the same with a genuinely slower bundle as the new side: the demo's teacher (not
   retrained) with a wider student, cnn:width=24,depth=2 (made once under runs/gate_slower). Its
   student.onnx is the slow-down to catch (its size is measured in each round: median of the A/B
   estimates); student.int8.tflite's slow-down is small under XNNPACK and counted apart.

    .venv/bin/python benchmarks/gate_noise.py [--self-rounds 30] [--busy-rounds 10] [--detect-rounds 20] [--render]

Settings: 1 thread (the workflow's), 5 pairs (the default of --against), --min-seconds 0.5 and
--warmup-seconds 0.2 (instead of 2 and 0.5, so that 50 comparisons fit in half an hour), the
example budget's 10% tolerance. Writes benchmarks/results/gate_noise.json and rewrites the README's
section from it.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekd.device.bench.run import run_bench  # noqa: E402
from edgekd.device.bench.gate import check, load_budget  # noqa: E402
from edgekd.device.bench.gate.paired import PAIRS  # noqa: E402
from edgekd.device.bench.run import run_sides  # noqa: E402
from edgekd.device.bench.text import device_line  # noqa: E402
from edgekd.core.fsutil import atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RECORD = RESULTS / "gate_noise.json"
SECTION = "gate_noise"
BUDGET = ROOT / "examples" / "edgekd-budget.toml"
LATENCY = "max_latency_increase_percent"
SLOWER_STUDENT = "cnn:width=24,depth=2"
CAUGHT = "student.onnx"            # the model whose slow-down the detection rounds must catch
SETTINGS = dict(threads=[1], repeat=PAIRS, min_seconds=0.5, warmup_seconds=0.2, out=False)


def edgekd(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "edgekd", *args, "--quiet"], check=True, cwd=ROOT)


def bundles() -> tuple[Path, Path]:
    """`make demo`'s bundle and the slower one, each made when missing."""
    demo, slower = ROOT / "runs" / "demo", ROOT / "runs" / "gate_slower"
    if not (demo / "bundle" / "manifest.json").is_file():
        print("note: no runs/demo/bundle; making it as `make demo` does (edgekd distill + export --int8)")
        edgekd("distill", "--out", str(demo), "--force")
        edgekd("export", str(demo), "--int8", "--force")
    if not (slower / "bundle" / "manifest.json").is_file():
        print(f"note: making runs/gate_slower: the demo's teacher, student {SLOWER_STUDENT}")
        edgekd("distill", "--out", str(slower), "--teacher-from", str(demo), "--student", SLOWER_STUDENT,
               "--folds", "1", "--force")
        edgekd("export", str(slower), "--int8", "--force")
    return demo / "bundle", slower / "bundle"


def rows(report) -> list[dict]:
    return [{"model": c.model, "change_percent": c.measured, "lower_percent": c.lower, "spread_percent": c.spread,
             "detectable_percent": c.detectable, "passed": c.passed} for c in report.checks if c.key == LATENCY]


def compare(new: Path, old: Path, baseline: dict, budget: dict) -> dict:
    """One A/B run, its latency checks judged by both rules."""
    doc = run_sides([new, old], **SETTINGS)[0]
    alone = {k: v for k, v in doc.items() if k != "against"}
    return {"ab": rows(check(doc, budget=budget)), "baseline": rows(check(alone, budget=budget, baseline=baseline))}


def tally(rounds: list[dict], rule: str, model: str | None = None) -> dict:
    checks = [r for rd in rounds for r in rd[rule] if model is None or r["model"] == model]
    return {"checks": len(checks), "failed": sum(not r["passed"] for r in checks),
            "median_detectable_percent": statistics.median(r["detectable_percent"] for r in checks),
            "median_change_percent": statistics.median(r["change_percent"] for r in checks)}


def summarize(rounds: dict) -> dict:
    return {rule: {"self": tally(rounds["self"], rule), "busy": tally(rounds["busy"], rule),
                   "detect": tally(rounds["detect"], rule, CAUGHT),
                   "detect_int8": tally(rounds["detect"], rule, "student.int8.tflite")}
            for rule in ("ab", "baseline")}


class BusyLoops:
    """Two processes spinning on the CPU while the block runs."""

    def __enter__(self):
        self.loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]

    def __exit__(self, *exc):
        for loop in self.loops:
            loop.kill()
            loop.wait()


def render(record: dict) -> str:
    s, n = record["summary"], record["rounds"]
    out = [f"{record['device']}; 1 thread, {PAIRS} pairs, --min-seconds {SETTINGS['min_seconds']}, tolerance 10%. "
           f"The same measurements judged by both rules: {n['self']} self-comparisons (every latency FAIL a false "
           f"alarm), {n['busy']} more while two busy loops share the 2 cores (the baseline bench.json was measured "
           f"quiet), and {n['detect']} runs of a bundle whose `{CAUGHT}` is "
           f"{s['ab']['detect']['median_change_percent']:+.1f}% slower (median A/B estimate):", "",
           "| rule | false failures, quiet | false failures, busy | slow-down caught | smallest detectable "
           "slow-down, median (quiet / busy) | int8 student (+" +
           f"{s['ab']['detect_int8']['median_change_percent']:.1f}%) failed |",
           "|---|---:|---:|---:|---:|---:|"]
    for rule, name in (("ab", "A/B, `--against OLD_BUNDLE`"), ("baseline", "baseline, `--baseline bench.json`")):
        r = s[rule]
        out.append(f"| {name} | **{r['self']['failed']} of {r['self']['checks']}** | "
                   f"**{r['busy']['failed']} of {r['busy']['checks']}** | "
                   f"**{r['detect']['failed']} of {r['detect']['checks']}** | "
                   f"{r['self']['median_detectable_percent']:.1f}% / {r['busy']['median_detectable_percent']:.1f}% | "
                   f"{r['detect_int8']['failed']} of {r['detect_int8']['checks']} |")
    out += ["", f"Whole run: {record['minutes']:.0f} min. Record: `benchmarks/results/gate_noise.json`."]
    return "\n".join(out)


def main() -> None:
    import time

    from readme_section import render_records, write_record

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--self-rounds", type=int, default=30)
    ap.add_argument("--busy-rounds", type=int, default=10)
    ap.add_argument("--detect-rounds", type=int, default=20)
    ap.add_argument("--render", action="store_true", help="only re-render the README's section from the record")
    args = ap.parse_args()
    if args.render:
        render_records({SECTION: RECORD}, render)
        return
    started = time.monotonic()
    demo, slower = bundles()
    baseline = run_bench(demo, **SETTINGS)
    atomic_write_json(RESULTS / "gate_noise_baseline.json", baseline)
    budget = load_budget(BUDGET)
    rounds = {"self": [], "busy": [], "detect": []}
    for phase, new, count in (("self", demo, args.self_rounds), ("busy", demo, args.busy_rounds),
                              ("detect", slower, args.detect_rounds)):
        for i in range(count):
            with BusyLoops() if phase == "busy" else contextlib.nullcontext():
                rounds[phase].append(compare(new, demo, baseline, budget))
            print(f"{phase} {i + 1}/{count}: " + "  ".join(
                f"{rule} {r['model']} {r['change_percent']:+.1f}% {'PASS' if r['passed'] else 'FAIL'}"
                for rule in ("ab", "baseline") for r in rounds[phase][-1][rule]), flush=True)
    record = {"device": device_line(baseline), "settings": {k: v for k, v in SETTINGS.items() if k != "out"},
              "slower_student": SLOWER_STUDENT, "rounds": {k: len(v) for k, v in rounds.items()},
              "summary": summarize(rounds),
              "minutes": (time.monotonic() - started) / 60, "runs": rounds}
    write_record(RECORD, record, SECTION, render)


if __name__ == "__main__":
    main()
