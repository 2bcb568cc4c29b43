"""The bench result's pure helpers: each model's measurements and its comparisons with the teacher.
A leaf: :mod:`.text` renders from it, :mod:`.plots` draws from both, :mod:`.outputs` writes."""
from __future__ import annotations

from typing import Any, Mapping

from edgekd.core.schema import bench as schema
from edgekd.device.runtimes import ROWS


def measured(m: Mapping[str, Any]) -> list[dict]:
    """The model's measurements, less the skipped settings."""
    return [x for x in m["measurements"] if "skipped" not in x]


def setting_name(x: Mapping[str, Any]) -> str:
    return f"{x['threads']} thread{'s' if x['threads'] > 1 else ''}, batch {x['batch']}"


def reference_teacher(models: list[dict]) -> dict | None:
    """The teacher file a run is read against (agreement, the table's fallback comparison, the
    recommendation's speed-up): fp32 first, then in the order of the runtime rows (ONNX first)."""
    rank = {row.name: i for i, row in enumerate(ROWS)}
    return min((m for m in models if m["role"] == "teacher"), default=None,
               key=lambda m: (m.get("precision") not in (None, "fp32", "float32"), rank.get(m["runtime"], len(rank))))


def at(m: Mapping[str, Any], threads: int, batch: int) -> dict | None:
    return next((x for x in measured(m) if x["threads"] == threads and x["batch"] == batch), None)


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def build_comparisons(models: list[schema.Model], lost: Mapping[tuple[str, str], list] | None = None
                      ) -> list[schema.Comparison]:
    """Each non-teacher model against each teacher, at the same threads and batch, same run.

    size_ratio = model bytes / teacher bytes; speedup = teacher p50 / model p50;
    memory_ratio = peak RSS during inference of the model's process / the teacher's;
    model_memory_ratio = the same less each process's RSS before loading;
    accuracy_delta = model accuracy − teacher accuracy;
    lost_classes = ``lost[(model file, teacher file)]`` where given (both files evaluated).
    """
    teachers = [m for m in models if m["role"] == "teacher"]
    out: list[schema.Comparison] = []
    lost = lost or {}
    for s in models:
        if s["role"] == "teacher":
            continue
        for t in teachers:
            for ms in measured(s):
                mt = at(t, ms["threads"], ms["batch"])
                if mt is None:
                    continue
                sa, ta = s["accuracy"], t["accuracy"]
                acc = sa - ta if sa is not None and ta is not None else None
                out.append({"model": s["file"], "teacher": t["file"], "threads": ms["threads"],
                            "batch": ms["batch"], "size_ratio": _ratio(s["bytes"], t["bytes"]),
                            "speedup": _ratio(mt["latency_ms"]["p50"], ms["latency_ms"]["p50"]),
                            "memory_ratio": _ratio(ms["memory"]["rss_peak_inference"], mt["memory"]["rss_peak_inference"]),
                            "model_memory_ratio": _ratio(ms["memory"]["model_bytes"] or None,
                                                         mt["memory"]["model_bytes"] or None),
                            "accuracy_delta": acc,
                            "agreement_with_teacher": s.get("agreement_with_teacher"),
                            **({"lost_classes": lost[s["file"], t["file"]]} if (s["file"], t["file"]) in lost else {})})
    return out
