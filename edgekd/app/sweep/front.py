"""The sweep's candidates (every student file of every bundle, as benched), their Pareto fronts,
and the pick: bench's rule (:mod:`edgekd.device.bench.pick`) over all of them, the fastest (or
smallest) candidate that meets the budget, or without one that is within 1 point of the best
accuracy. Torch-free.

A candidate is on the front of an axis (latency, size, memory) when no other candidate is at
least as accurate and at most as costly on that axis, and better on one of the two.
"""
from __future__ import annotations

from typing import Any, Mapping

from edgekd.device.bench.gate import check
from edgekd.device.bench.gate.keys import latency_stat, peak_mib, setting_name
from edgekd.device.bench.compare import measured, reference_teacher
from edgekd.device.bench.pick import UNCHECKED, Candidate, Choice, choose

#: axis → (the candidate's field, the plot's label); each is a cost: lower is better
AXES = {"latency": ("p50_ms", "p50 latency (ms)"), "size": ("bytes", "file size (bytes)"),
        "memory": ("peak_memory_mib", "peak memory during inference (MiB)")}
#: --pick → the axis whose cost decides, ties broken by accuracy and then the other costs
PICK_AXIS = {"fastest": "latency", "smallest": "size"}


def candidates(student: str, spec: str, bench: Mapping[str, Any]) -> list[dict]:
    """The student models of one bundle's bench.json, at its first measured setting; p50 is the
    median over repetitions, as the gate reads it."""
    out = []
    teacher = reference_teacher(bench["models"])
    for m in bench["models"]:
        runs = measured(m)
        if m["role"] != "student" or not runs:
            continue
        x = runs[0]
        speedup = next((c["speedup"] for c in bench.get("comparisons", []) if c["model"] == m["file"] and teacher
                        and c["teacher"] == teacher["file"] and (c["threads"], c["batch"]) == (x["threads"], x["batch"])),
                       None)
        out.append({"student": student, "spec": spec, "file": m["file"], "format": m["format"],
                    "precision": m["precision"], "accuracy": m["accuracy"], "setting": setting_name(x),
                    "p50_ms": latency_stat(x, "p50"), "bytes": m["bytes"], "peak_memory_mib": peak_mib(x),
                    "speedup_vs_teacher": speedup, "parameters": m.get("parameters")})
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (accuracy, cost) that no other point dominates: at least as accurate
    and at most as costly, and strictly better in one."""
    def dominated(a, b) -> bool:
        return b[0] >= a[0] and b[1] <= a[1] and (b[0] > a[0] or b[1] < a[1])
    return [i for i, p in enumerate(points) if not any(dominated(p, q) for q in points)]


def fronts(cands: list[dict]) -> dict[str, list[int]]:
    """Per axis, the candidates on its front (those with an accuracy: a front needs eval data)."""
    scored = [i for i, c in enumerate(cands) if c["accuracy"] is not None]
    return {axis: [scored[j] for j in pareto_front([(cands[i]["accuracy"], cands[i][key]) for i in scored])]
            for axis, (key, _) in AXES.items()}


def judge(cands: list[dict], benches: Mapping[str, Mapping[str, Any]], budget: dict | None) -> None:
    """Mark each candidate with the budget's verdict on its own file (``meets_budget``, ``failed``:
    the lines of its failed checks); without a budget both are None. Each bundle is checked as
    ``edgekd bench --budget`` would check it."""
    verdicts = {student: check(bench, budget).failed_by_model() for student, bench in benches.items()} if budget else {}
    for c in cands:
        if not budget:
            c["meets_budget"], c["failed"] = None, None
            continue
        own = verdicts[c["student"]].get(c["file"])
        c["failed"] = own or []
        c["meets_budget"] = own is not None and not own


def pick(cands: list[dict], by: str) -> Choice:
    """Bench's rule over the candidates, ``by``'s axis the cost (ties: the more accurate, then the
    lower other costs); its index is None when none meets the budget. Among those that meet the
    budget (or are within 1 point of the best) it is on the front of that axis: one that dominated
    it would cost less or be more accurate at the same cost, and be picked instead."""
    return choose([Candidate(c["accuracy"], c["p50_ms"], c["bytes"], c["peak_memory_mib"], _failed(c)) for c in cands],
                  PICK_AXIS[by])


def _failed(c: dict) -> tuple[str, ...] | None:
    """The candidate's budget verdict as the rule reads it: every candidate is judged with a budget,
    and one with no check of its own fails it (a budget must say what it accepts)."""
    if c["meets_budget"] is None:
        return None
    return () if c["meets_budget"] else tuple(c.get("failed") or [UNCHECKED])
