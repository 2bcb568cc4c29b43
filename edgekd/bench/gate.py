"""The CI gate: a bench result checked against a budget file and/or a baseline bench.json. Torch-free.

    edgekd bench BUNDLE --budget edgekd-budget.toml --baseline previous-bench.json

:data:`KEYS` is the one table of budget keys. It drives the budget file's validation, the
checks themselves, ``edgekd init-budget``'s commented TOML and the README's key table.

A budget file has one table per role (``[student]``, ``[teacher]``: every model of that role),
per model file (``["student.int8.tflite"]``: that file, over its role's table) and
``[baseline]`` (tolerances against ``--baseline``).

Latency is noisy on shared CI runners, so every latency number here is the median over
repeated measurements (fresh child processes, ``bench --repeat``), and a baseline latency
check fails only when the slow-down exceeds both its tolerance and the spread (max − min of
the repetitions' p50) measured in this same run.
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median_low
from typing import Callable

from ..bundle import refuse_overwriting_inputs
from ..compat import tomllib
from ..errors import ConfigError, closest
from ..fsutil import atomic_write_bytes, atomic_write_text, refuse_existing
from .report import MB, _ok, _size, device_line, to_json

ROLES = ("student", "teacher", "simple", "model")
BASELINE = "baseline"
MODEL_SUFFIXES = (".onnx", ".tflite")
#: repetitions per setting when a gate is asked for and --repeat is not given
REPEAT = 3


# -- readings: what a key measures on one model ------------------------------------------------

@dataclass
class Reading:
    setting: str                  # "" or "1 thread, batch 1"
    value: float | None           # None: could not be measured (the check fails)
    detail: str = ""
    spread: float = 0.0           # this run's noise in the value's unit (latency readings only)


@dataclass
class Context:
    result: dict
    baseline: dict | None

    def teacher(self) -> dict | None:
        return next((m for m in self.result["models"] if m["file"] == self.result.get("teacher")), None)

    def base_model(self, m: dict) -> dict | None:
        return next((b for b in self.baseline["models"] if b["file"] == m["file"]), None)


def _ms3(v: float) -> str:
    """Three significant digits, no exponent: CI models can take a microsecond, and 0.0000 ms says nothing."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    return f"{v:.{max(0, 2 - math.floor(math.log10(abs(v))))}f}"


def _setting(x: dict) -> str:
    return f"{x['threads']} thread{'s' if x['threads'] > 1 else ''}, batch {x['batch']}"


def _latency(x: dict, stat: str) -> float:
    """The median over repetitions (median_low: always a measured value), or the one measurement."""
    reps = x.get("repeats")
    return median_low(reps[stat]) if reps else x["latency_ms"][stat]


def _repetitions(x: dict, stat: str = "p50") -> tuple[int, float]:
    """How many repetitions, and their spread (max − min) of ``stat``; one measurement has none."""
    reps = x.get("repeats")
    if not reps:
        return 1, 0.0
    return reps["count"], max(reps[stat]) - min(reps[stat])


def _percent(fraction):
    return None if fraction is None else fraction * 100


def _bytes(ctx, m):
    return [Reading("", m["bytes"])]


def _latency_of(stat: str):
    def measure(ctx, m):
        out = []
        for x in _ok(m):
            n, spread = _repetitions(x, stat)
            out.append(Reading(_setting(x), _latency(x, stat), f"median of {n}, spread {_ms3(spread)} ms",
                               spread=spread))
        return out
    return measure


def _peak_mib(x: dict) -> float:
    return x["memory"]["rss_peak_inference"] / MB


def _memory(ctx, m):
    return [Reading(_setting(x), _peak_mib(x)) for x in _ok(m)]


def _accuracy(ctx, m):
    return [Reading("", _percent(m["accuracy"]), "" if m["accuracy"] is not None else "no eval data")]


def _drop_vs_teacher(ctx, m):
    t = ctx.teacher()
    if t is None or None in (t["accuracy"], m["accuracy"]):
        return [Reading("", None, "no teacher accuracy in this run")]
    return [Reading("", (t["accuracy"] - m["accuracy"]) * 100, f"teacher {t['file']} {_percent(t['accuracy']):.2f}%")]


def _speedup(ctx, m):
    t = ctx.teacher()
    rows = [c for c in ctx.result["comparisons"] if t and c["model"] == m["file"] and c["teacher"] == t["file"]]
    if not rows:
        return [Reading("", None, "no teacher measured in this run")]
    out = []
    for c in rows:
        xs = next(x for x in _ok(m) if (x["threads"], x["batch"]) == (c["threads"], c["batch"]))
        xt = next(x for x in _ok(t) if (x["threads"], x["batch"]) == (c["threads"], c["batch"]))
        # relative spreads add up in a ratio of two noisy medians
        rel = sum(_repetitions(x)[1] / x["latency_ms"]["p50"] for x in (xs, xt))
        out.append(Reading(_setting(xs), c["speedup"], f"teacher p50 / model p50, same run, vs {t['file']}; "
                           f"spread ±{c['speedup'] * rel:.2f}×", spread=c["speedup"] * rel))
    return out


def _base_pairs(ctx, m):
    """(this run's measurement, the baseline's) at the same threads and batch."""
    b = ctx.base_model(m)
    for x in _ok(m):
        bx = next((y for y in _ok(b) if y["threads"] == x["threads"] and y["batch"] == x["batch"]), None)
        if bx is not None:
            yield x, bx


def _size_increase_bytes(ctx, m):
    b = ctx.base_model(m)
    return [Reading("", m["bytes"] - b["bytes"], f"{_size(m['bytes'])} vs {_size(b['bytes'])} baseline")]


def _size_increase_percent(ctx, m):
    b = ctx.base_model(m)
    return [Reading("", (m["bytes"] / b["bytes"] - 1) * 100, f"{_size(m['bytes'])} vs {_size(b['bytes'])} baseline")]


def _accuracy_drop(ctx, m):
    b = ctx.base_model(m)
    if None in (b["accuracy"], m["accuracy"]):
        return [Reading("", None, "accuracy missing here or in the baseline")]
    return [Reading("", (b["accuracy"] - m["accuracy"]) * 100,
                    f"{_percent(m['accuracy']):.2f}% vs {_percent(b['accuracy']):.2f}% baseline")]


def _latency_increase(ctx, m):
    out = []
    for x, bx in _base_pairs(ctx, m):
        now, base = _latency(x, "p50"), _latency(bx, "p50")
        n, spread = _repetitions(x)
        out.append(Reading(_setting(x), (now / base - 1) * 100,
                           f"p50 {_ms3(now)} ms vs {_ms3(base)} ms baseline; spread {_ms3(spread)} ms "
                           f"({spread / base * 100:.1f}%) over {n} repetition{'s' if n > 1 else ''}",
                           spread=spread / base * 100))
    return out


def _memory_increase(ctx, m):
    return [Reading(_setting(x), (_peak_mib(x) / _peak_mib(bx) - 1) * 100,
                    f"peak {_peak_mib(x):.1f} MiB vs {_peak_mib(bx):.1f} MiB baseline")
            for x, bx in _base_pairs(ctx, m)]


# -- headroom for init-budget: rounded outward to 3 significant digits --------------------------

def _outward(value: float, direction: str) -> float:
    if value <= 0:
        return 0.0
    step = 10 ** (math.floor(math.log10(value)) - 2)
    return round((math.ceil if direction == "max" else math.floor)(value / step) * step, 10)


def _times(factor: float):
    return lambda v: v * factor


def _plus(points: float):
    return lambda v: max(v, 0.0) + points


# -- the table ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    name: str
    section: str                  # "role": in a role or file table; "baseline": in [baseline]
    kind: type                    # int or float (a whole number is fine for a float)
    direction: str                # "max": passes when measured ≤ limit; "min": when measured ≥ limit
    unit: str
    description: str
    measure: Callable[[Context, dict], list[Reading]]
    propose: Callable[[float], float] | None = None   # init-budget: worst measured value → limit
    default: float | None = None  # [baseline] tolerance used when the budget sets none
    vs_teacher: bool = False      # compares with the teacher: meaningless in [teacher]
    instead_of: str | None = None  # set without that key, this one replaces its default
    high: float = math.inf        # the largest limit that means something (accuracy: 100 %)
    positive: bool = False        # measured values are > 0, so a "max" limit of 0 could never pass


KEYS = [
    Key("max_bytes", "role", int, "max", "bytes", "file size on disk", _bytes, _times(1.10), positive=True),
    Key("max_p50_ms", "role", float, "max", "ms", "median latency per call (median over repetitions; "
        "a miss within their spread passes)",
        _latency_of("p50"), _times(1.5), positive=True),
    Key("max_p90_ms", "role", float, "max", "ms", "90th-percentile latency per call (likewise)",
        _latency_of("p90"), _times(1.5), positive=True),
    Key("max_peak_memory_mib", "role", float, "max", "MiB",
        "peak RSS of the model's own process during inference", _memory, _times(1.25), positive=True),
    Key("min_accuracy_percent", "role", float, "min", "%", "accuracy on the bundle's eval set",
        _accuracy, _plus(-2.0), high=100),
    Key("max_accuracy_drop_vs_teacher_points", "role", float, "max", "points",
        "teacher accuracy − this model's, same run", _drop_vs_teacher, _plus(2.0), vs_teacher=True, high=100),
    Key("min_speedup_vs_teacher", "role", float, "min", "×", "teacher p50 / this model's p50, same run "
        "(a miss within the two models' spreads passes)",
        _speedup, _times(0.7), vs_teacher=True),
    Key("max_size_increase_bytes", BASELINE, int, "max", "bytes", "file size growth against the baseline",
        _size_increase_bytes, instead_of="max_size_increase_percent"),
    Key("max_size_increase_percent", BASELINE, float, "max", "%", "file size growth against the baseline",
        _size_increase_percent, default=5.0),
    Key("max_accuracy_drop_points", BASELINE, float, "max", "points", "accuracy lost against the baseline",
        _accuracy_drop, default=1.0, high=100),
    Key("max_latency_increase_percent", BASELINE, float, "max", "%",
        "p50 slow-down against the baseline; fails only beyond this run's spread too",
        _latency_increase, default=10.0),
    Key("max_memory_increase_percent", BASELINE, float, "max", "%", "peak memory growth against the baseline",
        _memory_increase, default=10.0),
]
BY_NAME = {k.name: k for k in KEYS}


# -- the budget file ---------------------------------------------------------------------------

def load_budget(path) -> dict:
    """Read and validate a budget file; every mistake is one ConfigError naming the file."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"budget file '{path}' not found",
                          hint="propose one with: edgekd init-budget BUNDLE") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return validate_budget(doc, str(path))


def validate_budget(doc: dict, where: str = "budget") -> dict:
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: '{section}' must be inside a table such as [student]",
                              hint="tables: [student], [teacher], [\"FILE.tflite\"], [baseline]")
        kind = _section_kind(section, where)
        for name, value in table.items():
            if isinstance(value, dict):     # [student.int8.tflite] unquoted is three nested tables
                raise ConfigError(f"{where}: [{section}.{name}] is not a table edgekd knows",
                                  hint="a file name with dots needs quotes: [\"student.int8.tflite\"]")
            _check_value(_key_for(section, kind, name, where), section, value, where)
    return doc


def _section_kind(section: str, where: str) -> str:
    if section == BASELINE:
        return BASELINE
    if section in ROLES or section.endswith(MODEL_SUFFIXES):
        return "role"
    guess = closest(section, (*ROLES, BASELINE))
    raise ConfigError(f"{where}: unknown role [{section}]",
                      hint=(f"did you mean [{guess}]? " if guess else "") + "tables: " + ", ".join(
                          f"[{r}]" for r in ROLES) + ", [\"FILE.onnx\" or \"FILE.tflite\"], [baseline]")


def _key_for(section: str, kind: str, name: str, where: str) -> Key:
    key = BY_NAME.get(name)
    if key is not None and key.section == kind:
        if key.vs_teacher and section == "teacher":
            raise ConfigError(f"{where}: '{name}' compares a model with the teacher; it has no meaning in [teacher]")
        return key
    if key is not None:
        raise ConfigError(f"{where}: '{name}' belongs in " + ("[baseline]" if key.section == BASELINE
                                                              else "a role or file table") + f", not in [{section}]")
    known = [k.name for k in KEYS if k.section == kind]
    guess = closest(name, known)
    raise ConfigError(f"{where}: unknown key '{name}' in [{section}]",
                      hint=(f"did you mean '{guess}'? " if guess else "") + "known: " + ", ".join(known))


def _check_value(key: Key, section: str, value, where: str) -> None:
    what = "a whole number" if key.kind is int else "a number"
    ok = not isinstance(value, bool) and isinstance(value, int if key.kind is int else (int, float))
    if not ok:
        raise ConfigError(f"{where}: [{section}] {key.name} must be {what} ({key.unit}), "
                          f"got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: [{section}] {key.name} must be a finite number ≥ 0, got {value}")
    if key.positive and value == 0:
        raise ConfigError(f"{where}: [{section}] {key.name} must be > 0: a limit of 0 {key.unit} can never pass")
    if value > key.high:
        raise ConfigError(f"{where}: [{section}] {key.name} must be at most {key.high:g} ({key.unit}), got "
                          f"{value}: " + ("it could never pass" if key.direction == "min" else "it checks nothing"))


def require_models(budget: dict, models: list[dict], baseline: dict | None = None) -> None:
    """Checked before measuring: a file table must name a model the bench measures, and the budget
    or the baseline must hold something to check for at least one of them."""
    files = [m["file"] for m in models]
    for section in budget:
        if section.endswith(MODEL_SUFFIXES) and section not in files:
            guess = closest(section, files)
            raise ConfigError(f"the budget has a table [\"{section}\"] but the bundle has no such model",
                              hint=(f"did you mean \"{guess}\"? " if guess else "") + "models: " + ", ".join(files))
    for m in models:
        against_teacher = [k.name for k in KEYS if k.vs_teacher and k.name in budget.get(m["file"], {})]
        if m["role"] == "teacher" and against_teacher:
            raise ConfigError(f"'{against_teacher[0]}' compares a model with the teacher, "
                              f"and '{m['file']}' is a teacher")
    in_baseline = {b["file"] for b in baseline["models"]} if baseline else set()
    if not any(_limits(budget, m) or m["file"] in in_baseline for m in models):
        raise ConfigError(*_nothing_to_check(budget, models, baseline))


def _nothing_to_check(budget: dict, models: list[dict], baseline: dict | None) -> tuple[str, str]:
    here = ", ".join(f"{m['file']} ({m['role']})" for m in models)
    if baseline is not None:
        return ("no model of this bench is in the baseline and the budget sets no limit for them: "
                "the gate would check nothing", f"models here: {here}")
    if BASELINE in budget:
        return ("the budget's [baseline] tolerances need --baseline, and no other table sets a limit for "
                "these models: the gate would check nothing",
                "add --baseline previous-bench.json, or limits in [student], [teacher] or [\"FILE\"]")
    return "the budget sets no limit for any model of this bench: the gate would check nothing", f"models: {here}"


# -- the baseline: the fields the checks read, validated when it is loaded ---------------------

class _Invalid(Exception):
    pass


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_OBJECT = (lambda v: isinstance(v, dict), "an object")
_OBJECTS = (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "a list of objects")
_TEXT = (lambda v: isinstance(v, str), "a string")
_WHOLE = (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a whole number > 0")
_POSITIVE = (lambda v: _number(v) and v > 0, "a number > 0")
_POSITIVES = (lambda v: isinstance(v, list) and v != [] and all(_POSITIVE[0](x) for x in v), "a list of numbers > 0")
_FRACTION = (lambda v: v is None or (_number(v) and 0 <= v <= 1), "null or a fraction from 0 to 1")


def _field(obj: dict, key: str, at: str, ok: Callable, what: str):
    if key not in obj:
        raise _Invalid(f"{at} has no '{key}'")
    if not ok(obj[key]):
        raise _Invalid(f"{at}.{key} must be {what}, got {obj[key]!r}")
    return obj[key]


def _check_base_measurement(x: dict, at: str) -> None:
    if "skipped" in x:
        return
    for key in ("threads", "batch"):
        _field(x, key, at, *_WHOLE)
    _field(_field(x, "latency_ms", at, *_OBJECT), "p50", f"{at}.latency_ms", *_POSITIVE)
    _field(_field(x, "memory", at, *_OBJECT), "rss_peak_inference", f"{at}.memory", *_POSITIVE)
    if x.get("repeats"):            # the median of the repetitions is the p50 compared with
        _field(_field(x, "repeats", at, *_OBJECT), "p50", f"{at}.repeats", *_POSITIVES)


def validate_baseline(doc: dict, where: str = "the baseline") -> dict:
    """Every field the baseline checks read, so a bad baseline fails before anything is measured."""
    try:
        for key in ("device", "target"):
            if key in doc:
                _field(doc, key, "the document", *_OBJECT)
        if (doc.get("target") or {}).get("eval") is not None:
            _field(doc["target"], "eval", "target", *_OBJECT)
        for i, m in enumerate(_field(doc, "models", "the document", *_OBJECTS)):
            at = f"models[{i}]"
            _field(m, "file", at, *_TEXT)
            _field(m, "bytes", at, *_WHOLE)
            _field(m, "accuracy", at, *_FRACTION)
            for j, x in enumerate(_field(m, "measurements", at, *_OBJECTS)):
                _check_base_measurement(x, f"{at}.measurements[{j}]")
    except _Invalid as exc:
        raise ConfigError(f"{where} is not a usable baseline: {exc}",
                          hint="pass a bench.json written by edgekd bench (--out or --save-baseline)") from None
    return doc


def load_baseline(path) -> dict:
    from .report import load
    return validate_baseline(load(path), f"'{path}'")


def require_same_target(baseline: dict | None, target: dict, models: list[dict]) -> None:
    """A bench of another bundle is no baseline: compared file by file, the difference between two
    bundles (other eval data, labels or models under the same names) would read as a regression."""
    if baseline is None:
        return
    problem = _foreign(baseline.get("target") or {}, target, baseline["models"], models)
    if problem:
        raise ConfigError(f"the baseline is a bench of another bundle: {problem}",
                          hint="pass a bench of this bundle; after an intended change, store a new baseline "
                               "with --save-baseline")


def _foreign(then: dict, now: dict, base_models: list[dict], models: list[dict]) -> str | None:
    if "labels" in then and "labels" in now and then["labels"] != now["labels"]:
        return f"its labels differ ({then['labels']} there, {now['labels']} here)"
    ev_then, ev_now = then.get("eval"), now.get("eval")
    if ev_then and ev_now:
        # a baseline from before eval digests has only the size and shape to compare (see the notes)
        for key in ("sha256", "samples", "sample_shape"):
            if key in ev_then and ev_then[key] != ev_now.get(key):
                return f"its eval data differs ({key} {ev_then[key]} there, {ev_now.get(key)} here)"
    kinds = {m["file"]: m for m in base_models}
    for m in models:
        b = kinds.get(m["file"])
        if b is not None and (b.get("role") != m["role"]
                              or None not in (b.get("format"), m["format"]) and b.get("format") != m["format"]):
            return (f"'{m['file']}' is a {b.get('role')} ({b.get('format')}) there and a {m['role']} "
                    f"({m['format']}) here")
    return None


def _baseline(baseline: dict | str | os.PathLike | None) -> dict | None:
    if isinstance(baseline, (str, os.PathLike)):
        return load_baseline(baseline)
    return None if baseline is None else validate_baseline(baseline)


# -- checking ----------------------------------------------------------------------------------

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
            return f"not measured (limit {_value(self.limit, self.unit)})"
        within = self.measured <= self.limit if self.direction == "max" else self.measured >= self.limit
        sign = ("≤" if within else ">") if self.direction == "max" else ("≥" if within else "<")
        text = f"{_value(self.measured, self.unit, self.key)} {sign} {_value(self.limit, self.unit)}"
        if self.passed and not within:      # only the noise rule lets it pass: say so
            text += f" but within this run's spread of {_value(self.spread, self.unit)}"
        return text

    def line(self) -> str:
        return (f"{'PASS' if self.passed else 'FAIL'}  {self.name}  {self.verdict()}"
                + (f"  ({self.detail})" if self.detail else ""))


def _value(v: float, unit: str, key: str = "") -> str:
    signed = key.startswith("max_") and key.endswith(("_increase_percent", "_increase_bytes"))
    if unit == "bytes":
        return f"{v:+,.0f} bytes" if signed else f"{v:,.0f} bytes"
    if unit == "ms":
        return f"{_ms3(v)} ms"
    if unit == "×":
        return f"{v:.2f}×"
    text = f"{v:+.2f}" if signed else f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{text}%" if unit == "%" else f"{text} {unit}"


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


def _limits(budget: dict, m: dict) -> dict:
    """The model's role table, then its file table over it."""
    return {**budget.get(m["role"], {}), **budget.get(m["file"], {})}


def check(result: dict, budget: dict | str | os.PathLike | None = None,
          baseline: dict | str | os.PathLike | None = None) -> GateReport:
    """Check a bench result (bench.json document) against a budget and/or a baseline bench.json."""
    if isinstance(budget, (str, os.PathLike)):
        budget = load_budget(budget)
    baseline = _baseline(baseline)
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
        report.notes += _baseline_notes(result, baseline)
    elif budget.get(BASELINE):
        report.notes.append("the budget's [baseline] tolerances were not used: no --baseline given")
    for m in result["models"]:
        limits = _limits(budget, m)
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


def _baseline_notes(result: dict, baseline: dict) -> list[str]:
    notes = []
    here = {m["file"] for m in result["models"]}
    there = {m["file"] for m in baseline["models"]}
    notes += [f"{f} is not in the baseline: no baseline checks for it" for f in sorted(here - there)]
    notes += [f"{f} is in the baseline but was not measured now" for f in sorted(there - here)]
    ev = (baseline.get("target") or {}).get("eval")
    if ev and "sha256" not in ev:
        notes.append("the baseline records no digest of its eval data (an older edgekd wrote it): only the "
                     "eval set's size and shape were compared; store a new one with --save-baseline")
    now, then = result["device"], baseline.get("device", {})
    if (now.get("cpu"), now.get("cores")) != (then.get("cpu"), then.get("cores")):
        notes.append(f"the baseline was measured on another machine ({then.get('cpu')}, {then.get('cores')} cores): "
                     "latency changes may be the machine's")
    return notes


# -- outputs -----------------------------------------------------------------------------------

def lines(report: GateReport, result: dict) -> list[str]:
    reps = result["settings"].get("repeat", 1)
    out = [c.line() for c in report.checks]
    out += [f"note: {n}" for n in report.notes]
    out.append(f"{report.summary()} (latency: median of {reps} repetition{'s' if reps > 1 else ''} per setting)")
    return out


def to_junit(report: GateReport, result: dict) -> bytes:
    """One <testcase> per check; a failed check carries a <failure> with its verdict."""
    suite = ET.Element("testsuite", name="edgekd gate", tests=str(len(report.checks)),
                       failures=str(len(report.failed)), errors="0", skipped="0",
                       timestamp=result.get("created_utc", ""))
    props = ET.SubElement(suite, "properties")
    for name, value in (("target", result["target"]["path"]), ("device", device_line(result)),
                        ("repetitions", str(result["settings"].get("repeat", 1)))):
        ET.SubElement(props, "property", name=name, value=value)
    for c in report.checks:
        case = ET.SubElement(suite, "testcase", classname=f"edgekd.gate.{c.model}", name=c.name, time="0")
        if not c.passed:
            failure = ET.SubElement(case, "failure", message=c.verdict(), type="budget")
            failure.text = c.line()
        ET.SubElement(case, "system-out").text = c.line()
    if report.notes:
        ET.SubElement(suite, "system-out").text = "\n".join(report.notes)
    root = ET.Element("testsuites", name="edgekd", tests=suite.get("tests"), failures=suite.get("failures"))
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def to_markdown(report: GateReport, result: dict) -> str:
    head = f"### edgekd gate: {'✅ passed' if report.passed else '❌ failed'} · `{result['target']['path']}`"
    out = [head, "", report.summary() + f" · {device_line(result)}", "",
           "| | model | check | setting | measured vs limit | detail |", "|---|---|---|---|---|---|"]
    for c in report.checks:
        cells = ["✅" if c.passed else "❌", f"`{c.model}`", f"`{c.key}`", c.setting, c.verdict(), c.detail]
        out.append("| " + " | ".join(s.replace("|", "\\|") for s in cells) + " |")
    out += [""] + [f"- {n}" for n in report.notes]
    return "\n".join(out) + "\n"


def _outputs(junit=None, step_summary=None, save_baseline=None) -> dict:
    return {"--junit": junit, "--save-baseline": save_baseline, "the step summary (GITHUB_STEP_SUMMARY)": step_summary}


def write_outputs(report: GateReport, result: dict, junit=None, step_summary=None, save_baseline=None) -> None:
    """JUnit XML and the next baseline atomically; the GitHub step summary is appended to. None of
    them may be a file the bench read (``bench_and_check`` refuses that before measuring)."""
    target = result["target"]
    refuse_overwriting_inputs(target["path"], _outputs(junit, step_summary, save_baseline),
                              (target.get("eval") or {}).get("file"))
    try:
        if junit:
            atomic_write_bytes(junit, to_junit(report, result))
        if save_baseline:
            atomic_write_text(save_baseline, to_json(result))
        if step_summary:
            with open(step_summary, "a", encoding="utf-8") as f:
                f.write(to_markdown(report, result))
    except OSError as exc:
        raise ConfigError(f"cannot write the gate report: {exc.strerror}: '{exc.filename}'") from None


# -- init-budget -------------------------------------------------------------------------------

def propose(result: dict, source: str) -> str:
    """A commented budget TOML: every measured value with the headroom of KEYS, per model file."""
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
           "# Check with: edgekd bench BUNDLE --budget THIS_FILE [--baseline previous-bench.json]"]
    for m in result["models"]:
        out += ["", f"[\"{m['file']}\"]  # {m['role']}, {m['format']} {m['precision'] or ''}".rstrip()]
        for key in KEYS:
            if key.section != "role" or (key.vs_teacher and m["role"] == "teacher"):
                continue
            values = [r.value for r in key.measure(ctx, m) if r.value is not None]
            if not values:
                continue
            worst = max(values) if key.direction == "max" else min(values)
            limit = min(_outward(key.propose(worst), key.direction), key.high)
            out += [f"# {key.description}; measured {_value(worst, key.unit)}",
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


def bench_and_check(target, budget=None, baseline=None, repeat: int | None = None, junit=None,
                    step_summary=None, save_baseline=None, **bench_options) -> tuple[dict, GateReport]:
    """``edgekd bench --budget/--baseline``: every input is checked before anything is measured:
    the budget, the baseline (of this bundle?) and where ``write_outputs`` will write
    (``junit``, ``step_summary``, ``save_baseline``: not into the bundle)."""
    from . import run_bench
    gated = budget is not None or baseline is not None
    budget = load_budget(budget) if budget is not None else {}
    baseline = load_baseline(baseline) if baseline is not None else None

    def check_target(resolved: dict) -> None:
        refuse_overwriting_inputs(target, _outputs(junit, step_summary, save_baseline), bench_options.get("data"))
        if gated:
            require_models(budget, resolved["models"], baseline)
            require_same_target(baseline, resolved["target"], resolved["models"])

    result = run_bench(target, repeat=_repeat(repeat), check_target=check_target, **bench_options)
    return result, _check(result, budget, baseline) if gated else GateReport()


def _repeat(repeat: int | None) -> int:
    return REPEAT if repeat is None else repeat


def init_budget(source, out, force: bool = False, repeat: int | None = None, **bench_options) -> str:
    """Propose a budget from a bench.json file, or from benching a bundle or model file now."""
    from . import run_bench
    from .report import load
    out, source = Path(out), Path(source)
    refuse_existing(out, force, "budget file")
    refuse_overwriting_inputs(source, {"--out": out})
    if source.is_file() and source.suffix == ".json":
        result = load(source)
    else:
        result = run_bench(source, out=False, repeat=_repeat(repeat), **bench_options)
    text = propose(result, str(source))
    validate_budget(tomllib.loads(text), "proposed budget")   # what we write must load back
    atomic_write_text(out, text)
    return text


def _default_text(key: Key) -> str:
    if key.default is None:
        return ""
    alone = [f"`{k.name}`" for k in KEYS if k.instead_of == key.name]
    return format(key.default, "g") + "".join(f", none when {a} is set without it" for a in alone)


def keys_markdown() -> str:
    """The README's table of budget keys, from KEYS."""
    out = ["| key | table | type | passes when | unit | meaning | default |", "|---|---|---|---|---|---|---|"]
    for k in KEYS:
        where = "[baseline]" if k.section == BASELINE else ("[student], [\"FILE\"]" if k.vs_teacher
                                                            else "[student], [teacher], [\"FILE\"]")
        out.append(f"| `{k.name}` | {where} | {'integer' if k.kind is int else 'number'} | "
                   f"measured {'≤' if k.direction == 'max' else '≥'} limit | {k.unit} | {k.description} | "
                   f"{_default_text(k)} |")
    return "\n".join(out) + "\n"
