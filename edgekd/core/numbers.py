"""The number formats every text output of edgekd shares. Stdlib only (the bench side uses them)."""
from __future__ import annotations

import math

MIB = 1 << 20
NONE = "—"          # a number that was not measured


def size(n) -> str:
    """A byte count for people: '412 B', '5.7 KB', '1.2 MB' (powers of 1024)."""
    if n is None:
        return NONE
    for unit in ("B", "KB", "MB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def ms(v) -> str:
    """Milliseconds with the digits that matter at each scale (the bench table)."""
    if v is None:
        return NONE
    return f"{v:.4f}" if v < 1 else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def ms3(v: float) -> str:
    """Three significant digits, no exponent: CI models can take a microsecond, and 0.0000 ms says nothing."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    return f"{v:.{max(0, 2 - math.floor(math.log10(abs(v))))}f}"


def fmt(v, spec: str, suffix: str = "") -> str:
    return NONE if v is None else format(v, spec) + suffix


def pct(v, spec: str = ".2f", suffix: str = "%") -> str:
    """A fraction as a percentage."""
    return fmt(v * 100 if v is not None else None, spec, suffix)


def mean_spread(mean: str, std: str, samples: int) -> str:
    """``"25.64 ± 0.50"``, or ``"25.64"`` alone of one sample, whose spread of 0 measures nothing (``--folds 1``)."""
    return f"{mean} ± {std}" if samples > 1 else mean


def spread_header(samples: int) -> str:
    """The column's words for :func:`mean_spread`'s figures."""
    return "mean ± std" if samples > 1 else "1 fold"
