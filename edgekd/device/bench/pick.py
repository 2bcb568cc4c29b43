"""The fastest file, chosen by measurement: the one rule behind ``bench``'s recommendation per role
and ``sweep``'s pick. Torch-free, a leaf beside :mod:`.compare`.

Among a group of files (one role's, at one setting): when a budget checks any of them, those
whose every check passes (a file the budget checks nothing of is left out, as the sweep always
did); else those within 1 point of the group's best accuracy; else, when no accuracy was measured
(a single file benched without ``--data``), all of them. A file without an accuracy where others
have one is left out. Of the rest the cheapest wins (``by``: the lowest p50, or the smallest
file), ties going to the more accurate, then the smaller, faster and lighter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from edgekd.core.numbers import pct
from edgekd.core.schema import bench as schema
from edgekd.device.bench.compare import at, measured, reference_teacher

#: without a budget, how far below the best accuracy a file may be: 1 point
WITHIN = 0.01
BUDGET, NEAR_BEST, UNMEASURED = "budget", "within_1_point", "accuracy_not_measured"
UNCHECKED = "the budget checks nothing of it"
#: each rule in words, right after "fastest" ("smallest"): what the picked file is among its group
RULE_WORDS = {BUDGET: " that meets the budget", NEAR_BEST: " within 1 point of the best accuracy",
              UNMEASURED: ", accuracy not measured"}
#: --pick (sweep) → the candidate's cost that decides; the others break ties after accuracy
COSTS = {"latency": "p50_ms", "size": "bytes", "memory": "memory"}


@dataclass(frozen=True)
class Candidate:
    accuracy: float | None
    p50_ms: float
    bytes: int
    memory: float | None = 0.0            # peak memory during inference, any unit (a tie-break; None: unknown)
    failed: tuple[str, ...] | None = None  # the budget's failed checks of it (); None: the budget checks nothing of it


@dataclass(frozen=True)
class Choice:
    index: int | None                     # None: no candidate passes the budget
    rule: str                             # BUDGET, NEAR_BEST or UNMEASURED
    excluded: list[tuple[int, str]]       # (index, why) of each candidate left out


def choose(cands: Sequence[Candidate], by: str = "latency") -> Choice:
    """The rule (module docstring) on ``cands``."""
    known = [c.accuracy for c in cands if c.accuracy is not None]
    rule = BUDGET if any(c.failed is not None for c in cands) else NEAR_BEST if known else UNMEASURED
    best = max(known, default=None)
    excluded = {i: why for i, c in enumerate(cands) if (why := _left_out(c, rule, best))}
    order = [COSTS[by]] + [key for axis, key in COSTS.items() if axis != by]
    index = min((i for i in range(len(cands)) if i not in excluded), default=None,
                key=lambda i: (getattr(cands[i], order[0]) or 0.0, -(cands[i].accuracy or 0.0),
                               *(getattr(cands[i], key) or 0.0 for key in order[1:])))   # or: memory unknown here
    return Choice(index, rule, sorted(excluded.items()))


def _left_out(c: Candidate, rule: str, best: float | None) -> str | None:
    """Why the rule leaves ``c`` out, or None."""
    if rule == BUDGET and c.failed is None:
        return UNCHECKED
    if rule == BUDGET and c.failed:
        return "; ".join(c.failed)            # the gate's lines: "FAIL  student.onnx max_bytes  …"
    if best is None:
        return None
    if c.accuracy is None:
        return "accuracy not measured"
    # accuracies are counts over the same samples: the tolerance only absorbs float rounding
    if rule == NEAR_BEST and best - c.accuracy > WITHIN + 1e-9:
        return f"{pct(c.accuracy)}, {100 * (best - c.accuracy):.2f} points below the best ({pct(best)})"
    return None


def recommendations(result: Mapping[str, Any], failed: Mapping[str, Sequence[str]] | None = None
                    ) -> list[schema.Recommendation]:
    """bench.json's ``recommendation``: per role and measured setting, the rule's pick among the
    role's files and its speed-up over the reference teacher file at that setting. ``failed``:
    each file the budget checks → the lines of its failed checks (None or {}: no budget)."""
    teacher = reference_teacher(result["models"])
    out = []
    for role in dict.fromkeys(m["role"] for m in result["models"]):
        files = [m for m in result["models"] if m["role"] == role]
        for threads, batch in dict.fromkeys((x["threads"], x["batch"]) for m in files for x in measured(m)):
            group = [(m, x) for m in files if (x := at(m, threads, batch)) is not None]
            out.append(_recommend(group, teacher, failed or {}))
    return out


def _recommend(group: list[tuple[dict, dict]], teacher: dict | None, failed: Mapping[str, Sequence[str]]
               ) -> schema.Recommendation:
    """The rule on one role's files at one setting (``group``: each file and its measurement there)."""
    choice = choose([Candidate(m["accuracy"], x["latency_ms"]["p50"], m["bytes"], x["memory"]["rss_peak_inference"],
                               tuple(failed[m["file"]]) if m["file"] in failed else None) for m, x in group])
    m, x = group[0]
    rec: schema.Recommendation = {
        "role": m["role"], "threads": x["threads"], "batch": x["batch"], "rule": choice.rule, "file": None,
        "p50_ms": None, "accuracy": None, "teacher": teacher["file"] if teacher else None, "speedup_vs_teacher": None,
        "excluded": [{"file": group[i][0]["file"], "why": why} for i, why in choice.excluded]}
    if choice.index is not None:
        m, x = group[choice.index]
        ref = at(teacher, x["threads"], x["batch"]) if teacher else None
        rec.update({"file": m["file"], "p50_ms": x["latency_ms"]["p50"], "accuracy": m["accuracy"],
                    "speedup_vs_teacher": ref["latency_ms"]["p50"] / x["latency_ms"]["p50"] if ref else None})
    return rec
