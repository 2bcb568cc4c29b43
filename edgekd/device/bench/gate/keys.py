"""The one table of budget keys, :data:`KEYS`, and what each key measures on one model. It drives
the budget file's validation, the checks themselves, ``edgekd init-budget``'s commented TOML and
the CI guide's key table (:func:`keys_markdown`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median, median_low
from typing import Any, Callable, Mapping

from edgekd.core.numbers import MIB, ms3, size
from edgekd.device.bench.compare import measured, setting_name
from edgekd.device.bench.gate.paired import CONFIDENCE, paired_change

BASELINE = "baseline"


# -- readings: what a key measures on one model ------------------------------------------------

@dataclass
class Reading:
    setting: str                  # "" or "1 thread, batch 1"
    value: float | None           # None: could not be measured (the check fails)
    detail: str = ""
    spread: float = 0.0           # this run's noise in the value's unit (latency readings only)
    lower: float | None = None    # A/B: the lower end of the change's confidence interval


@dataclass
class Context:
    result: Mapping[str, Any]         # a bench.json document
    baseline: Mapping[str, Any] | None

    @property
    def paired(self) -> bool:
        """The baseline is the --against bundle, measured in this same run, pair by pair."""
        return bool(self.result.get("against"))

    def teacher(self) -> dict | None:
        return next((m for m in self.result["models"] if m["file"] == self.result.get("teacher")), None)

    def base_model(self, m: dict) -> dict | None:
        if self.baseline is None:
            return None
        return next((b for b in self.baseline["models"] if b["file"] == m["file"]), None)


def latency_stat(x: dict, stat: str) -> float:
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
        for x in measured(m):
            n, spread = _repetitions(x, stat)
            out.append(Reading(setting_name(x), latency_stat(x, stat), f"median of {n}, spread {ms3(spread)} ms",
                               spread=spread))
        return out
    return measure


def peak_mib(x: dict) -> float:
    return x["memory"]["rss_peak_inference"] / MIB


def _memory(ctx, m):
    return [Reading(setting_name(x), peak_mib(x)) for x in measured(m)]


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
        xs = next(x for x in measured(m) if (x["threads"], x["batch"]) == (c["threads"], c["batch"]))
        xt = next(x for x in measured(t) if (x["threads"], x["batch"]) == (c["threads"], c["batch"]))
        # relative spreads add up in a ratio of two noisy medians
        rel = sum(_repetitions(x)[1] / x["latency_ms"]["p50"] for x in (xs, xt))
        out.append(Reading(setting_name(xs), c["speedup"], f"teacher p50 / model p50, same run, vs {t['file']}; "
                           f"spread ±{c['speedup'] * rel:.2f}×", spread=c["speedup"] * rel))
    return out


def _base_pairs(ctx, m):
    """(this run's measurement, the baseline's) at the same threads and batch."""
    b = ctx.base_model(m)
    for x in measured(m):
        bx = next((y for y in measured(b) if y["threads"] == x["threads"] and y["batch"] == x["batch"]), None)
        if bx is not None:
            yield x, bx


def _size_increase_bytes(ctx, m):
    b = ctx.base_model(m)
    return [Reading("", m["bytes"] - b["bytes"], f"{size(m['bytes'])} vs {size(b['bytes'])} baseline")]


def _size_increase_percent(ctx, m):
    b = ctx.base_model(m)
    return [Reading("", (m["bytes"] / b["bytes"] - 1) * 100, f"{size(m['bytes'])} vs {size(b['bytes'])} baseline")]


def _accuracy_drop(ctx, m):
    b = ctx.base_model(m)
    if None in (b["accuracy"], m["accuracy"]):
        return [Reading("", None, "accuracy missing here or in the baseline")]
    return [Reading("", (b["accuracy"] - m["accuracy"]) * 100,
                    f"{_percent(m['accuracy']):.2f}% vs {_percent(b['accuracy']):.2f}% baseline")]


def _latency_increase(ctx, m):
    if ctx.paired:
        return [_paired_reading(x, bx) for x, bx in _base_pairs(ctx, m)]
    out = []
    for x, bx in _base_pairs(ctx, m):
        now, base = latency_stat(x, "p50"), latency_stat(bx, "p50")
        n, spread = _repetitions(x)
        out.append(Reading(setting_name(x), (now / base - 1) * 100,
                           f"p50 {ms3(now)} ms vs {ms3(base)} ms baseline; spread {ms3(spread)} ms "
                           f"({spread / base * 100:.1f}%) over {n} repetition{'s' if n > 1 else ''}",
                           spread=spread / base * 100))
    return out


def _paired_reading(x: dict, bx: dict) -> Reading:
    new, old = x["repeats"]["p50"], bx["repeats"]["p50"]
    change, low, high = paired_change(new, old)
    return Reading(setting_name(x), change, f"median p50 {ms3(median(new))} ms vs {ms3(median(old))} ms, "
                   f"{len(new)} pairs in this run; {CONFIDENCE:.0%} interval {low:+.1f}% to {high:+.1f}%",
                   spread=change - low, lower=low)


def _memory_increase(ctx, m):
    return [Reading(setting_name(x), (peak_mib(x) / peak_mib(bx) - 1) * 100,
                    f"peak {peak_mib(x):.1f} MiB vs {peak_mib(bx):.1f} MiB baseline")
            for x, bx in _base_pairs(ctx, m)]


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


def shown(v: float, unit: str, key: str = "") -> str:
    """A value in its unit: '12,288 bytes', '+3.20%' (a change), '0.0123 ms', '1.50×'."""
    signed = key.startswith("max_") and key.endswith(("_increase_percent", "_increase_bytes"))
    if unit == "bytes":
        return f"{v:+,.0f} bytes" if signed else f"{v:,.0f} bytes"
    if unit == "ms":
        return f"{ms3(v)} ms"
    if unit == "×":
        return f"{v:.2f}×"
    text = f"{v:+.2f}" if signed else f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{text}%" if unit == "%" else f"{text} {unit}"


def _default_text(key: Key) -> str:
    if key.default is None:
        return ""
    alone = [f"`{k.name}`" for k in KEYS if k.instead_of == key.name]
    return format(key.default, "g") + "".join(f", none when {a} is set without it" for a in alone)


def keys_markdown() -> str:
    """The CI guide's table of budget keys, from KEYS."""
    out = ["| key | table | type | passes when | unit | meaning | default |", "|---|---|---|---|---|---|---|"]
    for k in KEYS:
        where = "[baseline]" if k.section == BASELINE else ("[student], [\"FILE\"]" if k.vs_teacher
                                                            else "[student], [teacher], [\"FILE\"]")
        out.append(f"| `{k.name}` | {where} | {'integer' if k.kind is int else 'number'} | "
                   f"measured {'≤' if k.direction == 'max' else '≥'} limit | {k.unit} | {k.description} | "
                   f"{_default_text(k)} |")
    return "\n".join(out) + "\n"
