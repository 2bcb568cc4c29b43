"""``sweep.png``: the accuracy of every candidate against each of its costs (p50 latency, file size,
peak memory), the fronts joined and the pick starred. Torch-free; matplotlib only when drawn."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from edgekd.app.sweep.front import AXES
from edgekd.device.bench.plots import place_labels, png, require_matplotlib, suptitle

#: the pick's star, as wide as its ``s`` (in points²): the numbers keep clear of it
STAR_SIZE, STAR_RADIUS = 200, 8


def sweep_png(doc: Mapping[str, Any]) -> bytes:
    return png(sweep_figure(doc))


def sweep_figure(doc: Mapping[str, Any]):
    """One panel per cost on one accuracy axis. Every candidate is a point numbered in the order of
    sweep.md's rows, the key on the right names the numbers: names written beside the points
    overprinted each other and ran past the axes."""
    plt = require_matplotlib()
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, len(AXES), figsize=(15, 4.8), sharey=True, layout="constrained")
    cands, chosen = doc["candidates"], doc["pick"]["candidate"]
    shown = [i for i, c in enumerate(cands) if c["accuracy"] is not None]
    for ax, (axis, (key, label)) in zip(axes, AXES.items()):
        ax.scatter([cands[i][key] for i in shown], [100 * cands[i]["accuracy"] for i in shown], color="grey", s=16)
        front = sorted((cands[i] for i in doc["fronts"][axis]), key=lambda c: c[key])
        ax.plot([c[key] for c in front], [100 * c["accuracy"] for c in front], "o-", color="tab:blue", label="front")
        if chosen is not None:
            ax.scatter([cands[chosen][key]], [100 * cands[chosen]["accuracy"]], marker="*", s=STAR_SIZE,
                       color="tab:red", label="pick", zorder=3)
        cost_scale(ax, [cands[i][key] for i in shown])
        ax.set_xlabel(label + (" (log)" if ax.get_xscale() == "log" else ""))
    axes[0].set_ylabel("accuracy on the held-out split (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    names = [f"{i + 1}  {cands[i]['student']} {cands[i]['file'].removeprefix('student.')}" for i in shown]
    fig.legend(handles + [Line2D([], [], linestyle="none") for _ in names], labels + names,
               loc="outside right upper", fontsize=7, handlelength=1.5)
    suptitle(fig, f"edgekd sweep · {doc['device']}")
    place_labels(fig, [(ax, [(cands[i][key], 100 * cands[i]["accuracy"], str(i + 1)) for i in shown],
                        [] if chosen is None else [(cands[chosen][key], 100 * cands[chosen]["accuracy"], STAR_RADIUS)])
                       for ax, (key, _) in zip(axes, AXES.values())])
    return fig


def cost_scale(ax, costs: Sequence[float]) -> None:
    """A log axis where the (positive) costs span more than 4×; under two decades its ticks are plain
    numbers at 1, 2 and 5 of each decade (matplotlib's own labels of a short log axis overprinted each other)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if not costs or min(costs) <= 0 or max(costs) <= 4 * min(costs):
        return
    ax.set_xscale("log")
    if max(costs) < 100 * min(costs):
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
