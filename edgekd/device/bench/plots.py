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


def png(plt, fig, title: str) -> bytes:
    """The figure with its title, as PNG bytes (and closed)."""
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


