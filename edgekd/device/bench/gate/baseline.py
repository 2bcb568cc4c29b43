"""The baseline: a previous bench.json of the same bundle, checked (:mod:`edgekd.core.schema.bench`) when
it is read, refused when it is a bench of another bundle, and the notes it earns."""
from __future__ import annotations

import os
from typing import Any, Mapping

from edgekd.core.errors import ConfigError
from edgekd.core.schema import bench as schema


def load_baseline(path: str | os.PathLike[str]) -> schema.BenchDoc:
    return schema.read(path, "baseline")


def validate_baseline(doc: dict[str, Any], where: str = "the baseline") -> schema.BenchDoc:
    """Every field the baseline checks read, so a bad baseline fails before anything is measured."""
    return schema.from_json(doc, where, "baseline")


def as_baseline(baseline: dict[str, Any] | str | os.PathLike | None) -> schema.BenchDoc | None:
    """A baseline given as a path or as a bench.json document, checked; None stays None."""
    if isinstance(baseline, (str, os.PathLike)):
        return load_baseline(baseline)
    return None if baseline is None else validate_baseline(baseline)


def require_same_target(baseline: Mapping[str, Any] | None, target: dict, models: list[dict], what: str = "") -> None:
    """A bench of another bundle is no baseline: compared file by file, the difference between two
    bundles (other eval data, labels or models under the same names) would read as a regression.
    ``what``: the old bundle of ``--against`` (a resolved target: its models and facts) instead."""
    if baseline is None:
        return
    problem = _foreign(baseline.get("target") or {}, target, baseline["models"], models)
    if problem and what:
        raise ConfigError(f"{what} is not an earlier version of this bundle: {problem}",
                          hint="--against takes the previous bundle of the same run, labels and eval data")
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


def baseline_notes(result: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[str]:
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


