"""``curves.png`` in the run folder: the trio's training curves on shared axes, so the student and the
simple model, the comparison the run exists for, compare by eye."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgekd.core.errors import EdgeKDError
from edgekd.core.fsutil import atomic_write_bytes
from edgekd.device.bench.plots import png, require_matplotlib, suptitle

#: the two models compared, in colours apart; the teacher is the grey reference
COLOURS = {"student": "tab:blue", "simple": "tab:orange", "teacher": "grey"}


def plot_curves(path: Path, summary: Mapping[str, Any]) -> None:
    """curves.png where matplotlib is installed: plots are optional, report.md and cv.json carry the numbers."""
    if importlib.util.find_spec("matplotlib") is None:
        return
    try:
        figure = curves_figure(summary)
    except EdgeKDError:         # matplotlib there but unusable: a finished run does not fail on its plot
        return
    atomic_write_bytes(path, png(figure))


def curves_figure(summary: Mapping[str, Any]):
    """Validation accuracy (%) and training loss per epoch, one panel each, the student and the simple
    model in both: the mean over the folds, in a band from the lowest to the highest fold. The teacher is
    the reference: its CV accuracy a dashed line (a teacher brought from elsewhere has only that), its
    loss a grey curve."""
    plt = require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    fig, (accuracy, loss) = plt.subplots(1, 2, figsize=(11, 4.4), sharex=True, layout="constrained")
    folds = summary["folds"]
    teacher_here = any(split["teacher"].get("history") for split in folds)
    teacher = 100 * summary["cv"]["teacher"]["mean"]
    accuracy.axhline(teacher, color=COLOURS["teacher"], ls="--", lw=1, label=f"teacher, CV accuracy {teacher:.2f}%"
                     + ("" if teacher_here else " (trained elsewhere: no curves)"))
    for role, learns in (("student", "from the teacher"), ("simple", "from the labels alone")):
        _band(accuracy, folds, role, "val_accuracy", 100.0, f"{role} (learns {learns})")
    _band(loss, folds, "student", "loss", 1.0, f"student ({summary['config'].get('loss', 'kd')} loss)")
    _band(loss, folds, "simple", "loss", 1.0, "simple (cross-entropy)")
    _band(loss, folds, "teacher", "loss", 1.0, "teacher (cross-entropy)")
    accuracy.set_ylabel("validation accuracy (%)")
    loss.set_ylabel("training loss (each model's own objective)")
    for ax, title in ((accuracy, "validation accuracy"), (loss, "training loss")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    suptitle(fig, f"edgekd distill · {summary['data']['source']} · mean of {len(folds)} folds, "
                  "band from the lowest to the highest fold")
    return fig


def _band(ax, folds: Sequence[Mapping[str, Any]], role: str, field: str, scale: float, label: str) -> None:
    """One history field of one role per epoch: the mean over the folds that have it, and their range."""
    by_epoch: dict[int, list[float]] = {}
    for split in folds:
        for record in split[role].get("history") or []:
            if field in record:
                by_epoch.setdefault(record["epoch"], []).append(scale * record[field])
    if not by_epoch:
        return
    epochs = sorted(by_epoch)
    ax.fill_between(epochs, [min(by_epoch[e]) for e in epochs], [max(by_epoch[e]) for e in epochs],
                    color=COLOURS[role], alpha=0.2, lw=0)
    ax.plot(epochs, [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs], color=COLOURS[role],
            lw=1 if role == "teacher" else 1.5, label=label)
