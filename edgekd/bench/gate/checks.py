"""The checks: a bench result against a loaded budget and a checked baseline, one :class:`Check`
per key, model and setting; the noise rule (:func:`_evaluate`) lives here."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ...bundle import refuse_overwriting_inputs
from .baseline import as_baseline, baseline_notes, load_baseline, require_same_target
from .budget import limits_for, load_budget, require_models
from .outputs import output_paths
from .keys import BASELINE, KEYS, Context, Key, Reading, shown

#: repetitions per setting when a gate is asked for and --repeat is not given
REPEAT = 3


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
            text += f" but within this run's spread of {shown(self.spread, self.unit)}"
        return text

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

    def summary(self) -> str:
        n, bad = len(self.checks), len(self.failed)
        return f"gate {'FAILED' if bad else 'passed'}: {n - bad} of {n} checks passed" + (f", {bad} failed" if bad else "")


def _evaluate(key: Key, limit: float, reading: Reading) -> bool:
    """Within the limit passes. Otherwise a latency reading fails only when its miss also exceeds
    this run's own spread: against a baseline the miss is the change itself (it must exceed both the
    tolerance and the spread), against an absolute limit the distance beyond the limit."""
    if reading.value is None:
        return False
    if (reading.value <= limit) if key.direction == "max" else (reading.value >= limit):
        return True
    if key.section == BASELINE:
        miss = reading.value
    else:
        miss = reading.value - limit if key.direction == "max" else limit - reading.value
    return miss <= reading.spread


def check(result: dict, budget: dict | str | os.PathLike | None = None,
          baseline: dict | str | os.PathLike | None = None) -> GateReport:
    """Check a bench result (bench.json document) against a budget and/or a baseline bench.json."""
    if isinstance(budget, (str, os.PathLike)):
        budget = load_budget(budget)
    baseline = as_baseline(baseline)
    budget = budget or {}
    require_models(budget, result["models"], baseline)
    require_same_target(baseline, result["target"], result["models"])
    return _check(result, budget, baseline)


def _check(result: dict, budget: dict, baseline: dict | None) -> GateReport:
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
                                           key.direction, _evaluate(key, limits[key.name], r), r.detail, r.spread))
    if not report.checks:
        report.notes.append("no checks: the budget sets no limit for any model of this bench")
    return report


def _tolerances(given: dict) -> dict:
    """The defaults, less any that a key set without it replaces, then the budget's own."""
    replaced = {k.instead_of for k in KEYS if k.instead_of and k.name in given}
    defaults = {k.name: k.default for k in KEYS if k.default is not None and k.name not in replaced}
    return {**defaults, **given}


def bench_and_check(target, budget=None, baseline=None, repeat: int | None = None, junit=None,
                    step_summary=None, save_baseline=None, **bench_options) -> tuple[dict, GateReport]:
    """``edgekd bench --budget/--baseline``: every input is checked before anything is measured:
    the budget, the baseline (of this bundle?) and where ``write_outputs`` will write
    (``junit``, ``step_summary``, ``save_baseline``: not into the bundle)."""
    from ..run import run_bench
    gated = budget is not None or baseline is not None
    budget = load_budget(budget) if budget is not None else {}
    baseline = load_baseline(baseline) if baseline is not None else None

    def check_target(resolved: dict) -> None:
        data = bench_options["options"].data if "options" in bench_options else bench_options.get("data")
        refuse_overwriting_inputs(target, output_paths(junit, step_summary, save_baseline), data)
        if gated:
            require_models(budget, resolved["models"], baseline)
            require_same_target(baseline, resolved["target"], resolved["models"])

    result = run_bench(target, repeat=repeat_or_default(repeat), check_target=check_target, **bench_options)
    return result, _check(result, budget, baseline) if gated else GateReport()


def repeat_or_default(repeat: int | None) -> int:
    """A gate's repetitions: REPEAT unless asked for."""
    return REPEAT if repeat is None else repeat


