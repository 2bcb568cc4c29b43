"""``bench --plot``: latency distributions and accuracy against latency. matplotlib only here."""
from __future__ import annotations

from typing import Any, Mapping

from edgekd.core.errors import EdgeKDError
from edgekd.device.bench.compare import measured
from edgekd.device.bench.text import device_line
import io

def require_matplotlib():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgeKDError("--plot needs matplotlib, which is not installed",
                          hint="pip install matplotlib (or drop --plot)") from None
    return plt


def plot_png(result: Mapping[str, Any]) -> bytes:
    """Latency distribution (CDF) per model and setting, and accuracy against p50 latency."""
    plt = require_matplotlib()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for m in result["models"]:
        for x in measured(m):
            pct = x["latency_ms"]["percentiles"]
            ax1.plot(pct, range(len(pct)), label=f"{m['file']} t{x['threads']} b{x['batch']}")
            if m["accuracy"] is not None:
                ax2.scatter([x["latency_ms"]["p50"]], [m["accuracy"] * 100])
                ax2.annotate(f"{m['file']} t{x['threads']} b{x['batch']}", (x["latency_ms"]["p50"], m["accuracy"] * 100),
                             fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax1.set_xscale("log")
    ax1.set_xlabel("latency per call (ms, log)")
    ax1.set_ylabel("percentile")
    ax1.set_title("latency distribution")
    ax1.legend(fontsize=7)
    ax2.set_xscale("log")
    from matplotlib.ticker import NullFormatter
    ax2.xaxis.set_minor_formatter(NullFormatter())
    ax2.set_xlabel("p50 latency (ms, log)")
    ax2.set_ylabel("accuracy on eval set (%)")
    ax2.set_title("accuracy vs latency" + ("" if any(m["accuracy"] is not None for m in result["models"])
                                           else " (no eval data)"))
    return png(plt, fig, f"edgekd bench · {device_line(result)}")


#: a confusion matrix names its classes on the axes, and writes its counts in the cells, up to these many
TICKS, COUNTS = 30, 12


def classes_png(result: Mapping[str, Any]) -> bytes:
    """One confusion matrix per evaluated file (rows: true class, columns: predicted), coloured by the
    share of the row, so a class the file loses stands out whatever the class sizes."""
    plt = require_matplotlib()
    models = [m for m in result["models"] if m.get("confusion")]
    cols = min(3, len(models))
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax, m in zip(axes.flat, models):
        _confusion_panel(ax, m)
    return png(plt, fig, f"edgekd bench · confusion matrices · {device_line(result)}")


def _confusion_panel(ax, m: Mapping[str, Any]) -> None:
    matrix = m["confusion"]
    n = len(matrix)
    shares = [[v / (sum(row) or 1) for v in row] for row in matrix]
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    # a class folder's name is the user's text: "$" would start matplotlib's mathtext (an error at savefig)
    labels = [c["label"].replace("$", r"\$") for c in m.get("per_class") or []] or [str(i) for i in range(n)]
    if n <= TICKS:
        ax.set_xticks(range(n), labels, fontsize=6, rotation=90)
        ax.set_yticks(range(n), labels, fontsize=6)
    if n <= COUNTS:
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                            color="white" if shares[i][j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = f" · {100 * m['accuracy']:.2f}%" if m.get("accuracy") is not None else ""
    ax.set_title(f"{m['file']}{accuracy}", fontsize=8)


def png(plt, fig, title: str) -> bytes:
    """The figure with its title, as PNG bytes (and closed)."""
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


