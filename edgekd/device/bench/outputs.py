"""What ``edgekd bench`` writes: bench.json, and the markdown and the plot when asked. The top of
the chain :mod:`.compare` → :mod:`.text` → :mod:`.plots` → here."""
from __future__ import annotations

from edgekd.core.errors import ConfigError
from edgekd.core.fsutil import atomic_write_bytes, atomic_write_text
from edgekd.core.schema.bench import BenchDoc, to_json
from edgekd.device.bench.plots import plot_png
from edgekd.device.bench.text import bench_markdown


def write_bench_outputs(result: BenchDoc, out=None, markdown=None, plot=None) -> None:
    """bench.json (+ markdown, + png), each written to a temporary name and renamed."""
    try:
        if plot:
            atomic_write_bytes(plot, plot_png(result))
        if markdown:
            atomic_write_text(markdown, bench_markdown(result))
        if out:
            atomic_write_text(out, to_json(result))
    except OSError as exc:
        raise ConfigError(f"cannot write the report: {exc.strerror}: '{exc.filename}'") from None
