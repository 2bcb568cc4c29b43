"""A rule on a value beyond its type, declared once wherever the value comes from: an option of the
command line or a config file (``edgekd.train.options``), or a field of a document edgekd reads
(``edgekd.core.schema.fields``). Attached to a type as ``Annotated[type, Check(...)]``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from edgekd.core.errors import ConfigError, EdgeKDError


@dataclass(frozen=True)
class Check:
    """A rule on an option's value beyond its type; ``rule`` completes "must be …"."""

    rule: str
    test: Callable[[Any], bool]


def require(checks: Iterable[Check], value: Any, label: str, shown: str | None = None,
            error: type[EdgeKDError] = ConfigError) -> None:
    """``value`` meets every check, or one ``error`` "LABEL must be RULE, got VALUE"."""
    for check in checks:
        if not check.test(value):
            raise error(f"{label} must be {check.rule}, got {value if shown is None else shown}")
