"""``edgekd sweep`` on the terminal (rich): each student's steps as they finish, then the table."""
from __future__ import annotations

from rich.table import Table

from edgekd.core.console import report_console
from edgekd.app.sweep.outputs import COLUMNS, pick_line, table_rows
from edgekd.app.render.distill import DistillProgress, console


class SweepProgress:
    """A header per student, distill's bars while it trains, a line per finished step."""

    def __init__(self, enabled: bool, folds: int):
        self.enabled, self.folds = enabled, folds
        self.distill: DistillProgress | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._end_distill(*exc)

    def _end_distill(self, *exc) -> None:
        if self.distill is not None:
            self.distill.__exit__(*(exc or (None, None, None)))
            self.distill = None

    def report(self, event: str, **info) -> None:
        if not self.enabled:
            return
        if event == "student":
            console.print(f"[{info['index'] + 1}/{info['total']}] {info['spec']}: {info['phase']}", highlight=False)
        elif event == "step":
            self._end_distill()
            seconds = info["seconds"]
            console.print(f"    {info['step']}: " + ("done earlier (resumed)" if seconds is None else f"{seconds:.1f} s"),
                          highlight=False)
        else:                          # distill's own events, while a student trains
            if self.distill is None:
                self.distill = DistillProgress(True, self.folds)
                self.distill.__enter__()
            self.distill.report(event, **info)


def print_sweep_summary(doc: dict, out: str) -> None:
    table = Table(title=f"edgekd sweep — {len(doc['students'])} students, teacher {doc['teacher']}")
    for header in COLUMNS:
        table.add_column(header, justify="left" if header in ("student", "file", "front", "budget") else "right")
    for row in table_rows(doc):
        table.add_row(*row)
    screen = report_console()
    screen.print(table)
    setting = f"p50 and memory at {doc['candidates'][0]['setting']} · " if doc["candidates"] else ""
    screen.print(setting + doc["device"], highlight=False)
    screen.print("front: L latency, S size, M memory (no other file is as accurate and cheaper)", highlight=False)
    screen.print(pick_line(doc), highlight=False)
    screen.print(f"sweep folder: {out}  ({doc['seconds']:.1f} s; sweep.json, sweep.md"
                 + (", sweep.png)" if doc["outputs"]["plot"] else ")"), highlight=False)
