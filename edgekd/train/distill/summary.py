"""The run's human summary: ``report.md`` (tables) and ``curves.png`` (training curves)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from edgekd.core.fsutil import atomic_write_text
from edgekd.core.numbers import mean_spread, spread_header
from edgekd.core.gap import cv_gap_closed, gap_spread_text, gap_text, split_gap_closed
from edgekd.core.schema import TRAINED_ROLES
from edgekd.train.distill.curves import plot_curves


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def summary_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    """role, parameters, MACs, CV mean ± std, held-out accuracy — shared by report.md and the terminal."""
    rows = []
    for role in TRAINED_ROLES:
        model, cv = summary["models"][role], summary["cv"][role]
        rows.append([role, model["arch"], _count(model["parameters"]), _count(model["macs"]),
                     mean_spread(pct(cv["mean"]), pct(cv["std"]), len(summary["folds"])), pct(summary["test"][role])])
    return rows


def gain_line(summary: Mapping[str, Any]) -> str:
    gain = summary["cv"]["distillation_gain"]
    folds = len(summary["folds"])
    wins = sum(f["student"]["accuracy"] > f["simple"]["accuracy"] for f in summary["folds"])
    figure = mean_spread(f"{100 * gain['mean']:+.2f}", f"{100 * gain['std']:.2f}", folds)
    return (f"distillation gain (student − simple, CV): {figure} points; "
            f"student ahead in {wins} of {folds} folds")


def gap_line(summary: Mapping[str, Any]) -> str:
    """The gap closed over the folds (where the teacher is ahead of the simple model) and on the held-out split."""
    stats, folds = cv_gap_closed(summary["folds"]), len(summary["folds"])
    line = (f"gap closed {gap_spread_text(stats)} (of the simple→teacher gap, CV); "
            f"held-out {gap_text(split_gap_closed(summary['final']))}")
    if stats["folds"] < folds:
        line += f"; n/a in {folds - stats['folds']} of {folds} folds (the teacher not ahead of the simple model)"
    return line


def _count(value) -> str:
    return "n/a" if value is None else f"{value:,}"


def write_summary(folder: Path, summary: Mapping[str, Any]) -> None:
    """report.md and (with matplotlib) curves.png into the run folder."""
    atomic_write_text(folder / "report.md", summary_markdown(summary))
    plot_curves(folder / "curves.png", summary)


def summary_markdown(summary: Mapping[str, Any]) -> str:
    cfg = summary["config"]
    lines = [f"# edgekd distill — {summary['data']['source']}", "",
             f"{summary['data']['cv_samples']} samples for cross-validation ({cfg['folds']} folds), "
             f"{summary['data']['test_samples']} held out; {summary['data']['classes']} classes, "
             f"input {tuple(summary['data']['input_shape'])}. Student and simple model train on "
             f"{pct(cfg['student_fraction'])}% of each training part; loss {cfg.get('loss', 'kd')}, "
             f"T = {cfg['temperature']}, alpha = {cfg['alpha']}.",
             "", f"| role | model | parameters | MACs | CV accuracy % ({spread_header(cfg['folds'])}) | held-out accuracy % |",
             "|---|---|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(summary)]
    lines += ["", gap_line(summary), "", gain_line(summary), "", "## Per fold", "",
              "| split | train | student subset | eval | teacher % | student % | simple % | gap closed |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for f in summary["folds"] + [summary["final"]]:
        lines.append(f"| {f['split']} | {f['train_samples']} | {f['student_samples']} | {f['eval_samples']} | "
                     + " | ".join(pct(f[r]["accuracy"]) for r in TRAINED_ROLES) + f" | {gap_text(split_gap_closed(f))} |")
    lines += ["", f"Total time: {summary['seconds']:.1f} s. The `final` row is scored on the held-out test split. "
              "Gap closed: (student − simple) / (teacher − simple), n/a where the teacher is not ahead."]
    return "\n".join(lines) + "\n"
