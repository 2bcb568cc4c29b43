"""The one spec syntax of edgekd, and the rules an option's value must meet. Torch- and numpy-free:
the CLI imports it (through the run's configuration) to build its options.

A model, a loss and a sweep's student are each ``NAME[:key=value,…]`` (``cnn:width=8,depth=2``,
``dkd:beta=8``); ``NAME,key=value,…``, the loss syntax of earlier versions, reads alike, as the name
ends at the first ``:`` or ``,`` (no registered name holds either). A list of specs (a sweep's
students) is separated by ``;``, since ``,`` already separates the options inside a spec.

A rule (``Check``) is declared once and applied by ``require`` wherever the value comes from: the
run's ``--alpha`` (``config.py``) and a loss's ``alpha`` option (``kd:alpha=0.5``) share ``Unit``.
"""
from __future__ import annotations

import math
import re
from typing import Annotated, Any

from edgekd.core.rules import Check

#: ``--precision`` and ``--memory-format`` (their meaning: ``distill/fastpath.py``, which imports torch)
PRECISIONS = ("auto", "fp32", "bf16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
#: between the specs of a list (``--students 'cnn:width=8;mlp:hidden=32'``)
SEPARATOR = ";"
_NAME_END = re.compile("[:,]")


def between(low: int, high: int) -> Check:
    """A whole number from ``low`` to ``high``: beyond it a value is a typo, not a wish."""
    return Check(f"at least {low} and at most {high}", lambda value: low <= value <= high)


def finite(above_zero: bool, high: float) -> Check:
    """A finite number > 0 (or >= 0) and at most ``high``."""
    return Check(f"a finite number {'>' if above_zero else '>='} 0 and at most {high:g}",
                 lambda value: math.isfinite(value) and (value > 0 if above_zero else value >= 0) and value <= high)


PositiveInt = Annotated[int, Check("positive", lambda value: value > 0)]
PositiveFloat = Annotated[float, Check("positive", lambda value: value > 0)]
Fraction = Annotated[float, Check("in [0, 1)", lambda value: 0 <= value < 1)]
Unit = Annotated[float, Check("in [0, 1]", lambda value: 0 <= value <= 1)]
#: the softmax temperature of soft targets: ``--temperature`` and each loss's ``temperature`` option
Temperature = Annotated[float, finite(True, 1000.0)]


def checks_of(annotated: Any) -> tuple[Check, ...]:
    """The checks of an ``Annotated[type, Check…]`` alias (none for a plain type)."""
    return tuple(extra for extra in getattr(annotated, "__metadata__", ()) if isinstance(extra, Check))


def split_spec(spec: str) -> tuple[str, str]:
    """``"dkd:beta=8,warmup=5"`` (or ``"dkd,beta=8,warmup=5"``) → ``("dkd", "beta=8,warmup=5")``."""
    end = _NAME_END.search(spec)
    if end is None:
        return spec.strip(), ""
    return spec[:end.start()].strip(), spec[end.end():]


def split_specs(text: str) -> list[str]:
    """``"cnn:width=8;mlp:hidden=32"`` → the specs, blanks dropped."""
    return [spec.strip() for spec in text.split(SEPARATOR) if spec.strip()]
