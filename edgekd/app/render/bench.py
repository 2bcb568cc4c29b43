"""``edgekd bench`` on the terminal: the progress bar over child processes, the table, the summary."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from edgekd.device.bench.classes_text import lost_lines
from edgekd.device.bench.profile_text import TOP, headline, profiled, top_rows
from edgekd.device.bench.text import (NARROW, SHORT, TERMINAL, device_line, formats_side_by_side, int8_cost_lines,
                                      int8_slower_lines, recommendation_lines, rows, shown_comparisons, skipped_notes,
                                      thermal_line)
from edgekd.core.console import report_console
from edgekd.app.render.width import fitting


def render_table(result: dict, console=None) -> None:
    """The TERMINAL columns when they fit the console's width, else the NARROW ones."""
    console = console or Console()
    console.print(fitting(console, lambda cols: _table(result, cols), (TERMINAL, NARROW)))
    # file, node and tensor names come from the files: printed as text, never as rich markup
    for line in recommendation_lines(result):
        console.print(line, style="bold", highlight=False, markup=False)
    for line in lost_lines(result, shown_comparisons(result)):    # labels come from the manifest: plain text
        console.print(line, highlight=False, markup=False)
    side = formats_side_by_side(result)
    if side:
        console.print(_side_by_side(side))
    for line in int8_slower_lines(result) + int8_cost_lines(result):
        console.print(line, highlight=False, markup=False)
    for m in profiled(result):
        console.print(_profile_table(m))
    for note in skipped_notes(result):
        console.print(f"skipped {note}", style="dim", markup=False)
    t = thermal_line(result)
    if t:
        console.print(t, markup=False)


def _table(result: dict, cols: list[str]):
    table = Table(title=Text(f"edgekd bench · {result['target']['path']}"), caption=Text(device_line(result)))
    for h in cols:
        left = h in ("model", "format", "delegate")
        table.add_column(SHORT.get(h, h) if cols is NARROW else h, justify="left" if left else "right",
                         no_wrap=h != "model", min_width=12 if h == "model" else None, overflow="fold")
    section = False
    for kind, cells in rows(result):
        if kind == "compare" and not section:
            table.add_section()
            section = True
        table.add_row(*[Text(cells.get(h, "")) for h in cols],
                      style={"compare": "bold cyan", "skip": "dim"}.get(kind))
    return table


def _side_by_side(side: list[dict]):
    """Each role's formats at each setting: does int8 pay on this device?"""
    table = Table(title="int8 against fp32, side by side")
    for c in side[0]:
        table.add_column(SHORT.get(c, c), justify="left" if c in ("role", "runtime") else "right", no_wrap=True)
    for row in side:
        table.add_row(*map(Text, row.values()))
    return table


def _profile_table(m: dict):
    """A file's top ops (--profile): its costliest nodes, or the ops its delegate did not take."""
    rows = top_rows(m["profile"], TOP)
    title = Text(f"where the time goes: {headline(m)}")
    if not rows:
        return title
    table = Table(title=title, title_justify="left", show_edge=False)
    for c in rows[0]:
        table.add_column(c, justify="left" if c in ("op", "node", "nodes") else "right", overflow="fold")
    for row in rows:
        table.add_row(*map(Text, row.values()))
    return table


class BenchProgress:
    """A rich progress bar over the child processes; ``update`` is run_bench's progress callback."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self):
        console = Console(stderr=True)
        if self.enabled and console.is_terminal:     # in a log a transient bar leaves only a blank line
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)
            self._progress.__enter__()
        return self

    def update(self, done: int, total: int, label: str) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task(label, total=total)
        self._progress.update(self._task, completed=done, description=label)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False


def print_summary(result: dict, console=None) -> None:
    """The table, then where the reports went."""
    console = console or report_console()
    render_table(result, console)
    written = [f"{k}: {v}" for k, v in result.get("outputs", {}).items() if v]
    if written:
        console.print("wrote " + " · ".join(written), highlight=False)


