"""sweep.json: the document ``edgekd sweep`` writes (docs/guides/sweep.md). Torch-free.

Only edgekd writes it and nothing of edgekd reads it back (a resumed sweep re-reads each student's
own files); its shape is declared once, below, and :func:`to_json`, the writer's text, checks the
document with :func:`from_json`, the check derived from that shape, so a written sweep.json always
passes it.
"""
from __future__ import annotations

import typing
from typing import Any, TypedDict

from edgekd.core.errors import ConfigError
from edgekd.core.schema.fields import check_document
from edgekd.core.schema.jsonfile import json_text

SCHEMA = "edgekd.sweep"
#: the sweep folder's plan (``Plan.record``): what a resumed sweep must match, and how it starts
PLAN_FILE = "plan.txt"
PLAN_HEAD = "students = "


class Student(TypedDict):
    name: str                 # its folder under students/: N-SPEC
    spec: str
    run: str                  # the run folder, relative to the sweep folder
    bundle: str
    parameters: int
    macs: int | None
    cv: dict[str, Any]                  # cv.json's "cv": teacher/student/simple/distillation_gain mean, std, min, max,
    #                                     gap_closed (those and folds: how many it is defined in)
    test: dict[str, Any]                # cv.json's "test": each role's accuracy on the held-out split (PyTorch)
    seconds: dict[str, Any]             # distill/export/bench → seconds (a step an earlier, resumed run did: its time then)


class Candidate(TypedDict):
    student: str
    spec: str
    file: str                 # student.onnx, student.int8.tflite
    format: str | None
    precision: str | None
    accuracy: float | None    # of the file, on the bundle's held-out split, as benched
    setting: str              # the first measured setting ("1 thread, batch 1"): the p50 and memory below
    p50_ms: float             # median over repetitions, as the gate reads it
    bytes: int
    peak_memory_mib: float
    speedup_vs_teacher: float | None
    parameters: int | None
    meets_budget: bool | None     # None: no --budget
    failed: list[str] | None      # the gate's lines of its failed checks


class Excluded(TypedDict):
    student: str
    file: str
    why: str                  # the gate's failed lines, or "90.00%, 2.78 points below the best (92.78%)"


class _PickRelied(TypedDict):
    by: str                   # fastest | smallest
    candidate: int | None     # index into candidates; None: none meets the budget
    student: str | None
    file: str | None


class Pick(_PickRelied, total=False):   # bench's rule (edgekd.device.bench.pick) over every candidate
    rule: str                 # "budget" (--budget), "within_1_point" (without), "accuracy_not_measured"
    excluded: list[Excluded]  # the candidates the rule left out, and why (both absent in older sweeps)


class SweepDoc(TypedDict):
    schema: str
    schema_version: int
    edgekd_version: str
    created_utc: str
    teacher: str              # the spec trained once, or the brought teacher
    data: str
    device: str               # the device line of the first bench (the board's with --remote)
    remote: str | None
    bench_settings: dict[str, Any]      # BenchOptions' fields
    students: list[Student]
    candidates: list[Candidate]
    fronts: dict[str, Any]              # latency/size/memory → indices of the candidates on that Pareto front
    budget: bool
    pick: Pick
    seconds: float            # this invocation (a resumed sweep: since the resume)
    outputs: dict[str, Any]             # json, markdown, plot (None without matplotlib)


def from_json(doc: dict[str, Any], where: str) -> SweepDoc:
    """The sweep.json document in ``doc``, checked against :class:`SweepDoc`; one ConfigError naming
    the field otherwise."""
    if doc.get("schema") != SCHEMA:
        raise ConfigError(f"{where} is not an edgekd sweep.json")
    check_document(doc, SweepDoc, where, "sweep.json", ConfigError)
    return typing.cast(SweepDoc, doc)


def to_json(doc: SweepDoc) -> str:
    """The file's text: checked by :func:`from_json` first (a writer's bug fails here)."""
    return json_text(from_json(dict(doc), "the sweep.json being written"))
