"""What ``edgekd bench`` writes: bench.json, and the markdown and the plot when asked. The top of
the chain :mod:`.compare` → :mod:`.text` → :mod:`.plots` → here."""
from __future__ import annotations

import os
from pathlib import Path

from edgekd.core.errors import ConfigError
from edgekd.core.fsutil import atomic_write_bytes, atomic_write_text
from edgekd.core.schema.bench import BenchDoc, to_json
from edgekd.device.bench.plots import classes_png, plot_png
from edgekd.device.bench.text import bench_markdown


def classes_plot_path(plot: str | os.PathLike) -> Path:
    """Where ``--plot PATH`` puts the confusion matrices: beside it, ``STEM.classes.png``."""
    plot = Path(plot)
    return plot.with_name(plot.stem + ".classes.png")


def write_bench_outputs(result: BenchDoc, out=None, markdown=None, plot=None) -> None:
    """bench.json (+ markdown, + png and, with eval data, the confusion matrices' png), each written
    to a temporary name and renamed."""
    try:
        if plot:
            atomic_write_bytes(plot, plot_png(result))
            if result.get("outputs", {}).get("classes_plot"):
                atomic_write_bytes(classes_plot_path(plot), classes_png(result))
        if markdown:
            atomic_write_text(markdown, bench_markdown(result))
        if out:
            atomic_write_text(out, to_json(result))
    except OSError as exc:
        raise ConfigError(f"cannot write the report: {exc.strerror}: '{exc.filename}'") from None
