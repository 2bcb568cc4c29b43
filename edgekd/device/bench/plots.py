"""``bench --plot``: latency distributions and accuracy against latency; and the figure helpers the
sweep's and the run's plots share. matplotlib only here."""
from __future__ import annotations

import io
import textwrap
from typing import Any, Mapping, Sequence

from edgekd.core.errors import EdgeKDError
from edgekd.device.bench.compare import measured
from edgekd.device.bench.text import device_line

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
    return png(bench_figure(result))


def bench_figure(result: Mapping[str, Any]):
    """Latency distribution (CDF) per model and setting, and accuracy against p50 latency. Each file and
    setting has one colour in both panels and one entry in the legend under them; its name beside its
    point is placed inside the axes (the teacher's, the slowest, ran past them) and clear of the others."""
    plt = require_matplotlib()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    points = []
    for m in result["models"]:
        for x in measured(m):
            pct, name = x["latency_ms"]["percentiles"], f"{m['file']} t{x['threads']} b{x['batch']}"
            line, = ax1.plot(pct, range(len(pct)), label=name)
            if m["accuracy"] is not None:
                points.append((x["latency_ms"]["p50"], m["accuracy"] * 100, name))
                ax2.scatter([x["latency_ms"]["p50"]], [m["accuracy"] * 100], color=line.get_color())
    ax1.set_xscale("log")
    ax1.set_xlabel("latency per call (ms, log)")
    ax1.set_ylabel("percentile")
    ax1.set_title("latency distribution")
    ax2.set_xscale("log")
    from matplotlib.ticker import NullFormatter
    ax2.xaxis.set_minor_formatter(NullFormatter())
    ax2.set_xlabel("p50 latency (ms, log)")
    ax2.set_ylabel("accuracy on eval set (%)")
    ax2.set_title("accuracy vs latency" + ("" if any(m["accuracy"] is not None for m in result["models"])
                                           else " (no eval data)"))
    fig.legend(loc="outside lower center", ncols=3, fontsize=7)
    suptitle(fig, f"edgekd bench · {device_line(result)}")
    place_labels(fig, [(ax2, points, [])])
    return fig


#: a confusion matrix names its classes on the axes, and writes its counts in the cells, up to these many
TICKS, COUNTS = 30, 12


def classes_png(result: Mapping[str, Any]) -> bytes:
    """One confusion matrix per evaluated file (rows: true class, columns: predicted), coloured by the
    share of the row, so a class the file loses stands out whatever the class sizes."""
    plt = require_matplotlib()
    models = [m for m in result["models"] if m.get("confusion")]
    cols = min(3, len(models))
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax, m in zip(axes.flat, models):
        _confusion_panel(ax, m)
    suptitle(fig, f"edgekd bench · confusion matrices · {device_line(result)}")
    return png(fig)


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


def suptitle(fig, title: str) -> None:
    """The figure's title, wrapped: a device line with a long board name ran past the figure's edges."""
    fig.suptitle(textwrap.fill(title, 180), fontsize=8)


def png(fig) -> bytes:
    """The figure as PNG bytes (and closed). Every figure here is laid out when drawn (constrained
    layout, or fixed by :func:`place_labels`), so what is saved is what a test drew."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    require_matplotlib().close(fig)
    return buf.getvalue()


#: texts to write beside points: (axes, [(x, y, text)], [(x, y, radius in points) of marks to keep clear of])
Panel = tuple[Any, Sequence[tuple[float, float, str]], Sequence[tuple[float, float, float]]]


def place_labels(fig, panels: Sequence[Panel]) -> None:
    """Writes each text beside its point, at the first of the PLACES where it lies inside its axes and
    clear of the texts placed so far, of every point and of the marks to avoid; with no such place, at
    the first place inside the axes. The places depend on the layout: it is done first, and kept after."""
    fig.canvas.draw()
    for ax, points, avoid in panels:
        _place(ax, points, avoid)
    fig.set_layout_engine("none")


def _place(ax, points: Sequence[tuple[float, float, str]], avoid: Sequence[tuple[float, float, float]]) -> None:
    renderer = ax.figure.canvas.get_renderer()
    pixels = ax.figure.dpi / 72
    taken = [_square(ax, x, y, 3 * pixels) for x, y, _ in points] + [_square(ax, x, y, r * pixels) for x, y, r in avoid]
    for x, y, text in points:
        fallback = None
        for place in PLACES:
            label = _write(ax, x, y, text, place)
            box = label.get_window_extent(renderer)
            if _inside(box, ax.bbox) and not any(box.overlaps(other) for other in taken):
                break
            label.remove()
            fallback = fallback or (place if _inside(box, ax.bbox) else None)
        else:
            box = _write(ax, x, y, text, fallback or PLACES[0]).get_window_extent(renderer)
        taken.append(box)


#: where :func:`place_labels` tries a text: (dx, dy) in points from its point and the text's alignment;
#: right and left, above and below, on rings of growing radius
PLACES = [(sx * r, sy * r, "left" if sx > 0 else "right" if sx < 0 else "center",
           "bottom" if sy > 0 else "top" if sy < 0 else "center")
          for r in (4, 8, 13) for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1.5, 0), (-1.5, 0), (0, 1.5), (0, -1.5))]


def _write(ax, x: float, y: float, text: str, place: tuple[float, float, str, str]):
    dx, dy, ha, va = place
    return ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=7)


def _square(ax, x: float, y: float, half: float):
    from matplotlib.transforms import Bbox

    cx, cy = ax.transData.transform((x, y))
    return Bbox.from_extents(cx - half, cy - half, cx + half, cy + half)


def _inside(box, outer) -> bool:
    return outer.x0 <= box.x0 and box.x1 <= outer.x1 and outer.y0 <= box.y0 and box.y1 <= outer.y1


