"""The sweep's outputs: the sweep.json document, its table (markdown here, the terminal's in
:mod:`edgekd.app.render.sweep`, both from :func:`table_rows`) and the plot. Torch-free."""
from __future__ import annotations

import importlib.util
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from edgekd.core.version import __version__
from edgekd.device.bench.text import device_line
from edgekd.core.fsutil import atomic_write_bytes, atomic_write_text
from edgekd.core.numbers import ms3, pct, size
from edgekd.core.schema import SCHEMA_VERSION
from edgekd.core.schema.sweep import SCHEMA, SweepDoc, from_json, to_json
from edgekd.app.sweep.front import AXES, candidates, fronts, judge, pick as choose
from edgekd.app.sweep.plan import Plan
from edgekd.device.bench.pick import BUDGET, RULE_WORDS
from edgekd.app.sweep.plot import sweep_png

COLUMNS = ("student", "file", "accuracy", "p50 ms", "size", "peak MiB", "× teacher", "front", "budget")


def sweep_document(plan: Plan, rows: list[dict], benches: Mapping[str, Mapping[str, Any]], budget: dict | None,
                   by: str, seconds: float) -> SweepDoc:
    plot = importlib.util.find_spec("matplotlib") is not None      # sweep.png only where it can be drawn
    cands = [c for row in rows for c in candidates(row["name"], row["spec"], benches[row["name"]])]
    judge(cands, benches, budget)
    choice = choose(cands, by)
    chosen = choice.index
    first = benches[rows[0]["name"]]
    cfg = plan.config
    doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "edgekd_version": __version__,
           "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "teacher": cfg.teacher_from or cfg.teacher, "data": cfg.data, "device": device_line(first),
           "remote": plan.remote, "bench_settings": plan.bench, "students": rows, "candidates": cands,
           "fronts": fronts(cands), "budget": budget is not None,
           "pick": {"by": by, "rule": choice.rule, "candidate": chosen,
                    "student": None if chosen is None else cands[chosen]["student"],
                    "file": None if chosen is None else cands[chosen]["file"],
                    "excluded": [{"student": cands[i]["student"], "file": cands[i]["file"], "why": why}
                                 for i, why in choice.excluded]},
           "seconds": round(seconds, 1),
           "outputs": {"json": "sweep.json", "markdown": "sweep.md", "plot": "sweep.png" if plot else None}}
    return from_json(doc, "the sweep.json being written")


def table_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """One row per candidate: COLUMNS as text; front: L, S, M for the latency, size and memory fronts;
    the pick's row ends in '← pick'."""
    rows = []
    for i, c in enumerate(doc["candidates"]):
        marks = "".join(axis[0].upper() for axis in AXES if i in doc["fronts"][axis]) or "·"
        verdict = "" if c["meets_budget"] is None else ("meets" if c["meets_budget"] else "fails")
        rows.append([c["student"], c["file"], "–" if c["accuracy"] is None else f"{100 * c['accuracy']:.2f}%",
                     ms3(c["p50_ms"]), size(c["bytes"]), f"{c['peak_memory_mib']:.1f}",
                     "–" if c["speedup_vs_teacher"] is None else f"{c['speedup_vs_teacher']:.1f}×", marks,
                     verdict + ("  ← pick" if i == doc["pick"]["candidate"] else "")])
    return rows


def pick_line(doc: Mapping[str, Any]) -> str:
    p = doc["pick"]
    if p["candidate"] is None:
        return "no candidate meets the budget (the failed checks are in sweep.json under candidates)" if doc["budget"] \
            else "no pick: this sweep ran without --budget before picks were made without one (--resume picks now)"
    c = doc["candidates"][p["candidate"]]
    rule = p.get("rule", BUDGET)    # a sweep.json from before the rule was named (a record) picked by a budget
    return (f"pick ({p['by']}{RULE_WORDS[rule]}): {c['student']}/{c['file']}, {pct(c['accuracy'])}, "
            f"p50 {ms3(c['p50_ms'])} ms, {size(c['bytes'])}"
            + ("" if doc["budget"] else "; pass --budget FILE to pick by your own limits"))


def sweep_markdown(doc: Mapping[str, Any]) -> str:
    lines = [f"# edgekd sweep: {len(doc['students'])} students, teacher {doc['teacher']}", "",
             f"{doc['device']}; data {doc['data']}; p50 at {doc['candidates'][0]['setting']}" if doc["candidates"]
             else doc["device"], "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(doc)]
    return "\n".join(lines + ["", "front: L latency, S size, M memory (no other file is as accurate and cheaper).",
                              "", pick_line(doc), ""])


def write_sweep(folder: Path, doc: SweepDoc) -> None:
    """sweep.md, sweep.png (when ``outputs`` names it), then sweep.json."""
    atomic_write_text(folder / "sweep.md", sweep_markdown(doc))
    if doc["outputs"]["plot"]:
        atomic_write_bytes(folder / "sweep.png", sweep_png(doc))
    atomic_write_text(folder / "sweep.json", to_json(doc))
