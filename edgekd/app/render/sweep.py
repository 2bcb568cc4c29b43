"""``edgekd sweep`` on the terminal (rich): each student's steps as they finish, then the table."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgekd.core.console import report_console
from edgekd.app.sweep.outputs import COLUMNS, pick_line, table_rows
from edgekd.app.render.distill import DistillProgress, console, shown_spec
from edgekd.app.render.width import fitting


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


#: the table's columns, widest first: a narrower console leaves out what sweep.md keeps (peak memory and
#: the speed-up, then size and the fronts) rather than cut a student's or a file's name short
COLUMN_SETS = (COLUMNS, tuple(c for c in COLUMNS if c not in ("peak MiB", "× teacher")),
               ("student", "file", "accuracy", "p50 ms", "budget"))


def _table(doc: dict, rows: list[dict[str, str]], columns: tuple[str, ...]) -> Table:
    count = len(doc["students"])
    title = f"edgekd sweep — {count} student{'s' if count > 1 else ''}, teacher {shown_spec(doc['teacher'])}"
    table = Table(title=Text(title))      # the teacher may be the user's path: plain text, never rich markup
    for header in columns:
        # a student's folder name (up to 62 characters) folds where nothing else is left to drop
        table.add_column(header, justify="left" if header in ("student", "file", "front", "budget") else "right",
                         no_wrap=header != "student", overflow="fold")
    for cells in rows:
        table.add_row(*(cells[header] for header in columns))
    return table


def print_sweep_summary(doc: dict, out: str, screen: Console | None = None) -> None:
    """The table (as many columns as fit ``screen``, the report console by default), the pick, the folder."""
    screen = screen or report_console()
    rows = [dict(zip(COLUMNS, row)) for row in table_rows(doc)]
    table = fitting(screen, lambda columns: _table(doc, rows, columns), COLUMN_SETS)
    screen.print(table)
    setting = f"p50 and memory at {doc['candidates'][0]['setting']} · " if doc["candidates"] else ""
    screen.print(setting + doc["device"], highlight=False)
    if any(column.header == "front" for column in table.columns):
        screen.print("front: L latency, S size, M memory (no other file is as accurate and cheaper)", highlight=False)
    screen.print(pick_line(doc), highlight=False)
    screen.print(f"sweep folder: {out}  ({doc['seconds']:.1f} s; sweep.json, sweep.md"
                 + (", sweep.png)" if doc["outputs"]["plot"] else ")"), highlight=False)
