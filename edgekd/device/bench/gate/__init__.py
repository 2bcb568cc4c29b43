"""The CI gate: a bench result checked against a budget file and/or a baseline bench.json. Torch-free.

    edgekd bench BUNDLE --budget edgekd-budget.toml --baseline previous-bench.json

:data:`KEYS` (:mod:`.keys`) is the one table of budget keys. It drives the budget file's validation
(:mod:`.budget`), the checks themselves (:mod:`.checks`), ``edgekd init-budget``'s commented TOML
(:mod:`.proposal`) and the CI guide's key table.

A budget file has one table per role (``[student]``, ``[teacher]``: every model of that role),
per model file (``["student.int8.tflite"]``: that file, over its role's table) and
``[baseline]`` (tolerances against ``--baseline``, :mod:`.baseline`).

Latency is noisy on shared CI runners, so every latency number here is the median over
repeated measurements (fresh child processes, ``bench --repeat``), and a baseline latency
check fails only when the slow-down exceeds both its tolerance and the spread (max − min of
the repetitions' p50) measured in this same run. The gate's outputs: :mod:`.outputs`.
"""
from __future__ import annotations

from edgekd.device.bench.gate.baseline import load_baseline, require_same_target, validate_baseline
from edgekd.device.bench.gate.budget import MODEL_SUFFIXES, load_budget, require_models, validate_budget
from edgekd.device.bench.gate.checks import REPEAT, Check, GateReport, bench_and_check, check
from edgekd.device.bench.gate.keys import BASELINE, BY_NAME, KEYS, Key, Reading, keys_markdown
from edgekd.device.bench.gate.outputs import lines, to_junit, step_summary_markdown, write_gate_outputs
from edgekd.device.bench.gate.proposal import init_budget, propose

__all__ = ["BASELINE", "BY_NAME", "KEYS", "Key", "Reading", "MODEL_SUFFIXES", "REPEAT", "Check", "GateReport",
           "bench_and_check", "check", "init_budget", "keys_markdown", "lines", "load_baseline", "load_budget",
           "propose", "require_models", "require_same_target", "to_junit", "step_summary_markdown", "validate_baseline",
           "validate_budget", "write_gate_outputs"]
