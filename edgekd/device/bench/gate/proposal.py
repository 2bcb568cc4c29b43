"""``edgekd init-budget``: a commented budget TOML proposed from a bench, every measured value with
the headroom of KEYS."""
from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from edgekd.core.bundle import refuse_overwriting_inputs
from edgekd.core.compat import tomllib
from edgekd.core.fsutil import atomic_write_text, refuse_existing
from edgekd.device.bench.text import device_line
from edgekd.device.bench.gate.budget import validate_budget
from edgekd.device.bench.gate.keys import BASELINE, KEYS, Context, shown
from edgekd.core.schema.bench import check_for_proposal, read as read_bench
from edgekd.device.bench.gate.checks import repeat_or_default
from edgekd.device.bench.run import run_bench


# rounded outward to 3 significant digits, so a limit never lands inside the measured value
def _outward(value: float, direction: str) -> float:
    if value <= 0:
        return 0.0
    step = 10 ** (math.floor(math.log10(value)) - 2)
    return round((math.ceil if direction == "max" else math.floor)(value / step) * step, 10)


class Proposal(NamedTuple):
    text: str           # the budget file's TOML
    check: str          # the command that checks a bench against it


def check_command(result: Mapping[str, Any], budget: str | Path) -> str:
    """``edgekd bench TARGET --budget BUDGET`` in the user's own paths: the bundle (or model file) that
    ``result`` benched, as it was given to bench, quoted for a shell."""
    target = result.get("target", {}).get("path") or "BUNDLE"        # a hand-made bench.json may not say
    return f"edgekd bench {shlex.quote(str(target))} --budget {shlex.quote(str(budget))}"


def propose(result: Mapping[str, Any], source: str, budget: str | Path = "THIS_FILE") -> str:
    """A commented budget TOML: every measured value with the headroom of KEYS, per model file;
    ``budget`` the file it goes to, named in the command that checks against it."""
    ctx = Context(result, None)
    reps = result["settings"].get("repeat", 1)
    out = [f"# edgekd budget, proposed by `edgekd init-budget` from {source}",
           f"# measured {result['created_utc']} on: {device_line(result)}",
           f"# latency: median of {reps} repetition{'s' if reps > 1 else ''} per setting, threads "
           f"{result['settings']['threads']}, batch {result['settings']['batch']}",
           "#",
           "# Each limit is the worst measured value plus headroom (size +10%, latency ×1.5, memory +25%,",
           "# accuracy −2 points, speed-up ×0.7). Tighten what matters for your device.",
           "# Tables: [student] / [teacher] hold limits for every model of that role, [\"FILE\"] for one",
           "# file (over its role's table), [baseline] the tolerances against --baseline previous-bench.json.",
           f"# Check with: {check_command(result, budget)} [--baseline previous-bench.json]"]
    for m in result["models"]:
        out += ["", f"[\"{m['file']}\"]  # {m['role']}, {m['format']} {m['precision'] or ''}".rstrip()]
        for key in KEYS:
            if key.section != "role" or key.propose is None or (key.vs_teacher and m["role"] == "teacher"):
                continue
            values = [r.value for r in key.measure(ctx, m) if r.value is not None]
            if not values:
                continue
            worst = max(values) if key.direction == "max" else min(values)
            limit = min(_outward(key.propose(worst), key.direction), key.high)
            out += [f"# {key.description}; measured {shown(worst, key.unit)}",
                    f"{key.name} = {_toml_number(limit, key.kind)}"]
    out += ["", f"[{BASELINE}]  # tolerances against --baseline (a change within this run's spread never fails)"]
    for key in KEYS:
        if key.section == BASELINE:
            line = f"{key.name} = {_toml_number(key.default, key.kind)}" if key.default is not None \
                else f"# {key.name} = 0"
            out += [f"# {key.description} ({key.unit})", line]
    return "\n".join(out) + "\n"


def _toml_number(v: float, kind: type) -> str:
    return str(math.ceil(v)) if kind is int else repr(float(v))


def init_budget(source, out, force: bool = False, repeat: int | None = None, **bench_options) -> Proposal:
    """Propose a budget from a bench.json file, or from benching a bundle or model file now; write it
    to ``out``."""
    out, source = Path(out), Path(source)
    refuse_existing(out, force, "budget file")
    refuse_overwriting_inputs([source], {"--out": out})
    if source.is_file() and source.suffix == ".json":
        result = check_for_proposal(read_bench(source), f"'{source}'")
    else:
        result = run_bench(source, out=False, repeat=repeat_or_default(repeat), **bench_options)
    text = propose(result, str(source), out)
    validate_budget(tomllib.loads(text), "proposed budget")   # what we write must load back
    atomic_write_text(out, text)
    return Proposal(text, check_command(result, out))


