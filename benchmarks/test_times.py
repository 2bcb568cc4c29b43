"""How long the two test commands take from a fresh clone: `make test-fast` and `make test`.

Clones this checkout's HEAD into a temporary folder and runs, one after the other, `make install`
(the fresh venv), `make test-fast` (two pytest-xdist workers), the same fast lane in one process (what
the workers buy) and `make test` there, each timed, and records the pytest summary of each. Run it on a quiet machine: nothing else may use the cores meanwhile (a second suite on the
same 2 cores doubled the time in our measurements). `--render` only re-renders the README section.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "test_times.json"
SECTION = "test-times"
#: what a pytest summary line says, e.g. "1254 passed, 2 skipped, 24 deselected, 10 warnings in 627.12s"
COUNTS = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?)\b")
INSTRUCTIONS = ("avx2", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "asimddp", "i8mm")


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 "unknown CPU")
    flags = next((line for line in cpuinfo.splitlines() if line.startswith(("flags", "Features"))), "").split()
    return {"cpu": model, "cores": os.cpu_count(), "instructions": [f for f in INSTRUCTIONS if f in flags],
            "load_average_before": round(os.getloadavg()[0], 2)}   # 1-minute: quiet is well below 1


#: what is timed, in this order (the venv first: the others then measure tests, not the install)
COMMANDS = {"install": ["make", "install"], "test-fast": ["make", "test-fast"],
            "fast-one-process": [".venv/bin/python", "-m", "pytest", "tests", "-q", "-m", "not slow"],
            "test": ["make", "test"]}


def timed(clone: Path, name: str) -> dict:
    started = time.monotonic()
    done = subprocess.run(COMMANDS[name], cwd=clone, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode:
        sys.exit(f"{name} failed in the fresh clone:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    summary = [line for line in done.stdout.splitlines() if COUNTS.search(line) and " in " in line]
    counts = {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
              for n, kind in COUNTS.findall(summary[-1])} if summary else {}
    return {"seconds": round(seconds, 1), "counts": counts}


def measure() -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="edgekd-test-times-") as tmp:
        clone = Path(tmp) / "edgekd"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        runs = {name: timed(clone, name) for name in COMMANDS}
    return {"commit": commit, "machine": machine(), "runs": runs}


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _tests(counts: dict) -> str:
    text = f"{counts.get('passed', 0):,} tests passed"
    extra = [f"{counts[k]} {k}" for k in ("failed", "skipped") if counts.get(k)]
    return text + (f" ({', '.join(extra)})" if extra else "")


def render(record: dict) -> str:
    m, runs = record["machine"], record["runs"]
    flags = ", ".join(m["instructions"]) or "no int8/bf16 extensions"
    return "\n".join([
        f"From a fresh clone of {record['commit']} on {m['cpu']} ({m['cores']} cores; {flags}; load average "
        f"{m['load_average_before']} before), after "
        f"the venv install ({_minutes(runs['install']['seconds'])}):", "",
        f"- `make test-fast` (ruff, lint-imports, mypy from a cold cache, then the fast tests on two workers): "
        f"{_tests(runs['test-fast']['counts'])} in {_minutes(runs['test-fast']['seconds'])}; the same tests alone, "
        f"pytest in one process: {_minutes(runs['fast-one-process']['seconds'])}.",
        f"- `make test` (the same checks, then every test in one process): {_tests(runs['test']['counts'])} in "
        f"{_minutes(runs['test']['seconds'])}."])


def main() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from readme_section import render_records, write_record

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--render", action="store_true", help="only re-render the README's section from the record")
    if ap.parse_args().render:
        render_records({SECTION: RECORD}, render)
        return
    write_record(RECORD, measure(), SECTION, render)


if __name__ == "__main__":
    main()
