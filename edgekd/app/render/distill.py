"""``edgekd distill`` on the terminal (rich): progress over splits and epochs, the summary table."""
from __future__ import annotations

import time

import os

from rich.console import Console, JustifyMethod

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

from edgekd.core.console import report_console
from edgekd.core.gap import gap_text, split_gap_closed
from edgekd.train.distill.summary import gain_line, gap_line, summary_rows
from edgekd.core.schema import TRAINED_ROLES
from edgekd.core.numbers import spread_header

console = Console(stderr=True)


class DistillProgress:
    """One bar over splits (folds + final), one over the epochs of the model in training, with its
    training speed (samples/s over the last epoch) and the time its remaining epochs will take."""

    def __init__(self, enabled: bool, folds: int):
        self.enabled, self.splits = enabled, folds + 1
        self.progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[speed]:>14}"), TimeElapsedColumn(),
                                 TextColumn("eta"), TimeRemainingColumn(), console=console, disable=not enabled)
        self.overall = self.progress.add_task("splits", total=self.splits, speed="")
        self.epochs = self.progress.add_task("", total=1, visible=False, speed="")
        self.samples, self.epoch_started = 0, 0.0

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:        # an error: its one line must not sit below the bar's last frame
            self.progress.live.transient = True
        return self.progress.__exit__(*exc)

    def report(self, event: str, **info) -> None:
        if event == "stage_start":
            self.progress.reset(self.epochs, total=info["epochs"], visible=True, speed="",
                                description=f"{info['split']} {info['role']}")
            self.samples, self.epoch_started = info["samples"], time.perf_counter()
        elif event == "epoch":
            now = time.perf_counter()
            speed = self.samples / max(now - self.epoch_started, 1e-9)
            self.progress.update(self.epochs, advance=1, speed=f"{speed:,.0f} samples/s")
            self.epoch_started = now
        elif event == "note" and self.enabled:
            self.progress.console.print(f"note: {info['text']}")
        elif event == "split_done":
            self.progress.advance(self.overall)
            result = info["result"]
            if self.enabled:
                self.progress.console.print(
                    f"{result['split']:>6}: " + "  ".join(f"{r} {100 * result[r]['accuracy']:.2f}%"
                                                         for r in TRAINED_ROLES)
                    + f"  gap closed {gap_text(split_gap_closed(result))}")


class CachingProgress:
    """A bar while images are decoded into the cache (shown only when that happens), and the cache's notes.
    Under torchrun every rank loads the data before the ranks are joined: rank 0 alone (its RANK) speaks."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and os.environ.get("RANK", "0") == "0"
        self.progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console, disable=not self.enabled, transient=True)
        self.task: TaskID | None = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def report(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task("decoding images", total=total)
        self.progress.update(self.task, completed=done)

    def note(self, text: str) -> None:
        if self.enabled:
            self.progress.console.print(f"note: {text}")


def print_distill_summary(summary: dict, out: str) -> None:
    folds = len(summary["folds"])
    table = Table(title=f"edgekd distill — {summary['data']['source']} ({folds} fold{'s' if folds > 1 else ''})")
    columns: tuple[tuple[str, JustifyMethod], ...] = (("role", "left"), ("model", "left"), ("params", "right"),
                                                      ("MACs", "right"), (f"CV acc % ({spread_header(folds)})", "right"),
                                                      ("held-out acc %", "right"))
    for header, justify in columns:
        table.add_column(header, justify=justify)
    for row in summary_rows(summary):
        table.add_row(*row)
    out_console = report_console()
    out_console.print(table)
    out_console.print(gap_line(summary))
    out_console.print(gain_line(summary))
    out_console.print(f"run folder: {out}  ({summary['seconds']:.1f} s)")
