"""The gap closed: the share of the simple→teacher accuracy gap the distilled student closed,
``(student − simple) / (teacher − simple)`` — the figure distillation papers compare (Hinton et al.
2015, MNIST: 0.91), where the gain alone (student − simple) depends on how far ahead the teacher is.
Stdlib only: cv.json's writer, report.md, the terminal, the sweep and the benchmarks' README tables
all take it from here.
"""
from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

from edgekd.core.numbers import mean_spread

NOT_DEFINED = "n/a"     # the teacher is not ahead of the simple model: there is no gap to close


def gap_closed(teacher: float, student: float, simple: float) -> float | None:
    """``(student − simple) / (teacher − simple)``; None where the teacher is not ahead of the simple
    model. Below 0: the student fell behind the simple model; above 1: it passed the teacher."""
    if teacher - simple <= 0:
        return None
    return (student - simple) / (teacher - simple)


def split_gap_closed(split: Mapping[str, Any]) -> float | None:
    """The gap closed on one split of cv.json (a fold, or "final"), from its three accuracies."""
    return gap_closed(split["teacher"]["accuracy"], split["student"]["accuracy"], split["simple"]["accuracy"])


def spread(values: Sequence[float]) -> dict[str, float]:
    """mean, sample standard deviation (0 for one value), min and max of at least one value."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def gap_closed_spread(values: Sequence[float | None]) -> dict[str, Any]:
    """:func:`spread` over the values that are defined (each stat None where none is), and
    ``folds``: how many are."""
    defined = [v for v in values if v is not None]
    stats: dict[str, Any] = spread(defined) if defined else dict.fromkeys(("mean", "std", "min", "max"))
    return {**stats, "folds": len(defined)}


def cv_gap_closed(folds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """cv.json's ``cv.gap_closed`` from its folds' accuracies (a cv.json written before the key
    existed gets the same figure from its folds)."""
    return gap_closed_spread([split_gap_closed(f) for f in folds])


def gap_text(value: float | None) -> str:
    """0.62, or n/a."""
    return NOT_DEFINED if value is None else f"{value:.2f}"


def gap_spread_text(stats: Mapping[str, Any]) -> str:
    """0.62 ± 0.10 (0.62 of one fold), or n/a."""
    return NOT_DEFINED if stats["mean"] is None else mean_spread(f"{stats['mean']:.2f}", f"{stats['std']:.2f}", stats["folds"])
