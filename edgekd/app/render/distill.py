"""``edgekd distill`` on the terminal (rich): progress over splits and epochs, the summary table."""
from __future__ import annotations

import os

from rich.console import Console

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from edgekd.app.render.width import fitting
from edgekd.core.console import report_console
from edgekd.train.data.summary import FolderSummary
from edgekd.train.distill.progress import EpochLines, split_line
from edgekd.train.distill.summary import gain_line, gap_line, summary_rows
from edgekd.core.numbers import spread_header

console = Console(stderr=True)


class DistillProgress:
    """One bar over splits (folds + final), one over the epochs of the model in training, with its
    training speed (samples/s of the last epoch) and the time its remaining epochs will take. Where
    the console is no terminal (a CI log, a pipe) rich would print the bars once, finished, at the
    end: there a plain line per epoch takes their place (``EpochLines``)."""

    def __init__(self, enabled: bool, folds: int):
        self.enabled, self.splits = enabled, folds + 1
        self.lines = EpochLines(console.file) if enabled and not console.is_terminal else None
        self.progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[speed]:>14}"), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), console=console,
                                 disable=not enabled or self.lines is not None)
        self.overall = self.progress.add_task("splits", total=self.splits, speed="")
        self.epochs = self.progress.add_task("", total=1, visible=False, speed="")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:        # an error: its one line must not sit below the bar's last frame
            self.progress.live.transient = True
        return self.progress.__exit__(*exc)

    def report(self, event: str, **info) -> None:
        if self.lines is not None:
            self.lines(event, **info)
        elif event == "stage_start":
            self.progress.reset(self.epochs, total=info["epochs"], visible=True, speed="",
                                description=f"{info['split']} {info['role']}")
        elif event == "epoch":
            speed = info["record"]["samples_per_second"]
            self.progress.update(self.epochs, advance=1, speed=f"{speed:,.0f} samples/s")
        elif event == "note" and self.enabled:
            self.progress.console.print(f"note: {info['text']}")
        elif event == "split_done":
            self.progress.advance(self.overall)
            if self.enabled:
                self.progress.console.print(split_line(info["result"]))


class CachingProgress:
    """A data folder's summary; a bar on a terminal while images are decoded into the cache (shown only
    when that happens), and the cache's notes.
    Under torchrun every rank loads the data before the ranks are joined: rank 0 alone (its RANK) speaks."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and os.environ.get("RANK", "0") == "0"
        self.progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, transient=True,
                                 disable=not (self.enabled and console.is_terminal))   # elsewhere it left a blank line
        self.task: TaskID | None = None
        self.untold: list[str] = []

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:       # every input checked, nothing (more) to decode: the summary before training
            self._tell()
        return self.progress.__exit__(*exc)

    def report(self, done: int, total: int) -> None:
        self._tell()
        if self.task is None:
            self.task = self.progress.add_task("decoding images", total=total)
        self.progress.update(self.task, completed=done)

    def note(self, text: str) -> None:
        self._tell()
        if self.enabled:
            self.progress.console.print(f"note: {text}")

    def survey(self, summary: FolderSummary) -> None:
        """A data folder's summary and its warnings, told as its decoding starts, or once every input is
        checked: an input refused before that is its one error line alone."""
        if self.enabled:
            self.untold = [*summary.lines(), *(f"warning: {text}" for text in summary.warnings())]

    def _tell(self) -> None:
        for line in self.untold:       # paths as they are (no markup), a line each however wide
            self.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        self.untold = []


def shown_spec(spec: str) -> str:
    """A model spec for the terminal: a model FILE by its name (``tiny.py:tiny:width=8``), not the absolute
    path the run records so that export finds the file again (report.md and cv.json keep that)."""
    target, colon, rest = spec.partition(":")
    if colon and (target.endswith(".py") or "/" in target):
        return f"{os.path.basename(target)}:{rest}"
    return spec


#: the table's columns (by their index in summary_rows), widest first: a narrower console leaves out
#: params and MACs (in report.md) rather than cut the model spec short
COLUMN_SETS = ((0, 1, 2, 3, 4, 5), (0, 1, 4, 5))


def _table(summary: dict, rows: list[list[str]], columns: tuple[int, ...]) -> Table:
    folds = len(summary["folds"])
    title = f"edgekd distill — {summary['data']['source']} ({folds} fold{'s' if folds > 1 else ''})"
    table = Table(title=Text(title))      # the data source is the user's path: plain text, never rich markup
    headers = ("role", "model", "params", "MACs", f"CV acc % ({spread_header(folds)})", "held-out acc %")
    for i in columns:
        # the model spec folds (never cut) where nothing is left to drop; the figures keep to one line
        table.add_column(headers[i], justify="left" if i < 2 else "right", no_wrap=i != 1, overflow="fold")
    for row in rows:
        table.add_row(*(Text(row[i]) for i in columns))
    return table


def print_distill_summary(summary: dict, out: str, out_console: Console | None = None) -> None:
    """The table (as many columns as fit ``out_console``, the report console by default), the gap closed
    and the distillation gain, the run folder."""
    out_console = out_console or report_console()
    rows = [[role, shown_spec(model), *figures] for role, model, *figures in summary_rows(summary)]
    out_console.print(fitting(out_console, lambda columns: _table(summary, rows, columns), COLUMN_SETS))
    out_console.print(gap_line(summary))
    out_console.print(gain_line(summary))
    out_console.print(f"run folder: {out}  ({summary['seconds']:.1f} s)")
