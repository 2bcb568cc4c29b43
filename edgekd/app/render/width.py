"""Tables that fit the console: the widest set of columns that prints at its natural width.

rich squeezes a table wider than the console by cutting its cells ("student.int8.tfl…"); a file
name or a model spec cut short is worse than a column left out (the left-out ones stay in the
command's JSON and markdown), so each command offers its columns from the most to the fewest."""
from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from rich.console import Console
from rich.table import Table

Columns = TypeVar("Columns")


def fits(console: Console, table: Table) -> bool:
    """Whether ``table`` at its natural width (no cell cut or folded) is no wider than ``console``."""
    natural = console.measure(table, options=console.options.update_width(100_000)).maximum
    return natural <= console.width


def fitting(console: Console, build: Callable[[Columns], Table], choices: Sequence[Columns]) -> Table:
    """``build`` of the first of ``choices`` (widest first) whose table fits, else of the last."""
    for columns in choices[:-1]:
        table = build(columns)
        if fits(console, table):
            return table
    return build(choices[-1])
