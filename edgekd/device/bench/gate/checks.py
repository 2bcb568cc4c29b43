"""The checks: a bench result against a loaded budget and a checked baseline, one :class:`Check`
per key, model and setting; the noise rule (:func:`_evaluate`) lives here."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from edgekd.core.errors import ConfigError
from edgekd.core.schema.bench import BenchDoc
from edgekd.device.bench.gate.baseline import as_baseline, baseline_notes, load_baseline, require_same_target
from edgekd.device.bench.gate.budget import limits_for, load_budget, require_models
from edgekd.device.bench.gate.outputs import output_paths
from edgekd.device.bench.gate.keys import BASELINE, KEYS, Context, Key, Reading, shown
from edgekd.device.bench.gate.paired import MIN_PAIRS, PAIRS
from edgekd.device.bench.run import run_sides

#: repetitions per setting when a gate is asked for and --repeat is not given
REPEAT = 3
LATENCY_CHANGE = "max_latency_increase_percent"
AGAINST_AND_BASELINE = "--against and --baseline both say what to compare with; pass one"
AGAINST_HINT = ("--against OLD_BUNDLE measures the old models in this same run (the sharper latency check); "
                "--baseline bench.json is for when no old bundle is kept")


@dataclass
class Check:
    model: str
    key: str
    setting: str
    measured: float | None
    limit: float
    unit: str
    direction: str
    passed: bool
    detail: str = ""
    spread: float = 0.0           # this run's noise in the measured value's unit (0: none allowed for)
    lower: float | None = None    # A/B latency: the lower end of the change's confidence interval

    @property
    def name(self) -> str:
        return f"{self.model} {self.key}" + (f" [{self.setting}]" if self.setting else "")

    def verdict(self) -> str:
        """'6.1 kB ≤ 20.0 kB', '+3.2% ≤ 10%', 'not measured'."""
        if self.measured is None:
            return f"not measured (limit {shown(self.limit, self.unit)})"
        within = self.measured <= self.limit if self.direction == "max" else self.measured >= self.limit
        sign = ("≤" if within else ">") if self.direction == "max" else ("≥" if within else "<")
        text = f"{shown(self.measured, self.unit, self.key)} {sign} {shown(self.limit, self.unit)}"
        if self.passed and not within:      # only the noise rule lets it pass: say so
            text += (f" but its interval reaches down to {shown(self.lower, self.unit, self.key)}"
                     if self.lower is not None else f" but within this run's spread of {shown(self.spread, self.unit)}")
        if self.key == LATENCY_CHANGE and self.measured is not None:
            text += f"; smallest detectable slow-down {self.detectable:.1f}%"
        return text

    @property
    def detectable(self) -> float:
        """The smallest slow-down (%) this run's latency rule could have failed: against a baseline
        bench.json the tolerance or the run's spread, whichever is larger; A/B the tolerance plus the
        interval's reach below its estimate."""
        return self.limit + self.spread if self.lower is not None else max(self.limit, self.spread)

    def line(self) -> str:
        return (f"{'PASS' if self.passed else 'FAIL'}  {self.name}  {self.verdict()}"
                + (f"  ({self.detail})" if self.detail else ""))


@dataclass
class GateReport:
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failed

    def failed_by_model(self) -> dict[str, list[str]]:
        """Each model file the checks cover → the lines of its failed checks (empty: all passed)."""
        out: dict[str, list[str]] = {}
        for c in self.checks:
            out.setdefault(c.model, []).extend([] if c.passed else [c.line()])
        return out

    def summary(self) -> str:
        n, bad = len(self.checks), len(self.failed)
        return f"gate {'FAILED' if bad else 'passed'}: {n - bad} of {n} checks passed" + (f", {bad} failed" if bad else "")


def _evaluate(key: Key, limit: float, reading: Reading) -> bool:
    """Within the limit passes. Otherwise a latency reading fails only when its miss also exceeds
    this run's own spread: against a baseline the miss is the change itself (it must exceed both the
    tolerance and the spread), against an absolute limit the distance beyond the limit."""
    if reading.value is None:
        return False
    if reading.lower is not None:           # A/B: fails when the whole interval is above the limit
        return reading.lower <= limit
    if (reading.value <= limit) if key.direction == "max" else (reading.value >= limit):
        return True
    if key.section == BASELINE:
        miss = reading.value
    else:
        miss = reading.value - limit if key.direction == "max" else limit - reading.value
    return miss <= reading.spread


def check(result: Mapping[str, Any], budget: dict | str | os.PathLike | None = None,
          baseline: dict | str | os.PathLike | None = None) -> GateReport:
    """Check a bench result (bench.json document) against a budget and/or a baseline bench.json;
    a result of ``bench --against`` is checked against its own old side (no other baseline)."""
    if isinstance(budget, (str, os.PathLike)):
        budget = load_budget(budget)
    if result.get("against"):
        if baseline is not None:
            raise ConfigError(AGAINST_AND_BASELINE, hint=AGAINST_HINT)
        baseline = result["against"]["bench"]
    base = as_baseline(baseline)
    budget = budget or {}
    require_models(budget, result["models"], base)
    require_same_target(base, result["target"], result["models"])
    return _check(result, budget, base)


def _check(result: Mapping[str, Any], budget: dict, baseline: Mapping[str, Any] | None) -> GateReport:
    """``check`` on a loaded budget and a validated baseline that ``require_models`` accepted."""
    ctx = Context(result, baseline)
    report = GateReport()
    tolerances = {}
    if baseline is not None:
        tolerances = _tolerances(budget.get(BASELINE, {}))
        report.notes += baseline_notes(result, baseline)
    elif budget.get(BASELINE):
        report.notes.append("the budget's [baseline] tolerances were not used: no --baseline given")
    for m in result["models"]:
        limits = limits_for(budget, m)
        if baseline is not None and ctx.base_model(m) is not None:
            limits.update(tolerances)
        for key in KEYS:
            if key.name not in limits:
                continue
            for r in key.measure(ctx, m):
                report.checks.append(Check(m["file"], key.name, r.setting, r.value, limits[key.name], key.unit,
                                           key.direction, _evaluate(key, limits[key.name], r), r.detail, r.spread,
                                           r.lower))
    if not report.checks:
        report.notes.append("no checks: the budget sets no limit for any model of this bench")
    return report


def _tolerances(given: dict) -> dict:
    """The defaults, less any that a key set without it replaces, then the budget's own."""
    replaced = {k.instead_of for k in KEYS if k.instead_of and k.name in given}
    defaults = {k.name: k.default for k in KEYS if k.default is not None and k.name not in replaced}
    return {**defaults, **given}


def bench_and_check(target, budget=None, baseline=None, repeat: int | None = None, junit=None,
                    step_summary=None, save_baseline=None, against=None,
                    **bench_options) -> tuple[BenchDoc, GateReport]:
    """``edgekd bench --budget/--baseline/--against``: every input is checked before anything is
    measured: the budget, the baseline (of this bundle?) or the ``against`` bundle (same labels and
    eval data?) and where ``write_gate_outputs`` will write (``junit``, ``step_summary``,
    ``save_baseline``: into neither bundle, checked with bench's own outputs). With ``against`` the old bundle is measured in the
    same run, pair by pair, and is the baseline (:mod:`.paired`'s latency rule)."""
    if against is not None and baseline is not None:
        raise ConfigError(AGAINST_AND_BASELINE, hint=AGAINST_HINT)
    gated = budget is not None or baseline is not None or against is not None
    budget = load_budget(budget, target) if budget is not None else {}
    baseline = load_baseline(baseline) if baseline is not None else None
    repeat = repeat_or_default(repeat, against is not None)

    def check_target(resolved: dict, old: dict | None = None) -> None:
        if old is not None:
            require_same_target(old, resolved["target"], resolved["models"], "the --against bundle")
        if gated:
            require_models(budget, resolved["models"], baseline or old)
            require_same_target(baseline, resolved["target"], resolved["models"])

    targets = [target] if against is None else [target, against]
    # the recommendation reads the budget alone: a slow-down against a baseline rules out no file
    docs = run_sides(targets, repeat=repeat, check_target=check_target,
                     also_written=output_paths(junit, step_summary, save_baseline),
                     judge=lambda doc: _check(doc, budget, None).failed_by_model(), **bench_options)
    baseline = docs[1] if against is not None else baseline
    return docs[0], _check(docs[0], budget, baseline) if gated else GateReport()


def repeat_or_default(repeat: int | None, paired: bool = False) -> int:
    """A gate's repetitions: REPEAT (PAIRS with --against) unless asked for; --against needs
    MIN_PAIRS for an interval."""
    if paired and repeat is not None and repeat < MIN_PAIRS:
        raise ConfigError(f"--against needs at least {MIN_PAIRS} repetitions (pairs) for its interval, got --repeat "
                          f"{repeat}", hint=f"leave --repeat out ({PAIRS} pairs) or pass --repeat {MIN_PAIRS} or more")
    if repeat is None:
        return PAIRS if paired else REPEAT
    return repeat


