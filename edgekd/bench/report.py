"""bench.json, the terminal table, markdown and plots. Torch-free; matplotlib only for --plot."""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import ConfigError, EdgeKDError
from ..fsutil import atomic_write_bytes, atomic_write_text

MB = 1024 * 1024


# -- numbers ---------------------------------------------------------------------------------

def _ok(m: dict) -> list[dict]:
    return [x for x in m["measurements"] if "skipped" not in x]


def _at(m: dict, threads: int, batch: int) -> dict | None:
    return next((x for x in _ok(m) if x["threads"] == threads and x["batch"] == batch), None)


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def build_comparisons(models: list[dict]) -> list[dict]:
    """Each non-teacher model against each teacher, at the same threads and batch, same run.

    size_ratio = model bytes / teacher bytes; speedup = teacher p50 / model p50;
    memory_ratio = peak RSS during inference of the model's process / the teacher's;
    model_memory_ratio = the same less each process's RSS before loading;
    accuracy_delta = model accuracy − teacher accuracy.
    """
    teachers = [m for m in models if m["role"] == "teacher"]
    out = []
    for s in models:
        if s["role"] == "teacher":
            continue
        for t in teachers:
            for ms in _ok(s):
                mt = _at(t, ms["threads"], ms["batch"])
                if mt is None:
                    continue
                acc = (s["accuracy"] - t["accuracy"]) if None not in (s["accuracy"], t["accuracy"]) else None
                out.append({"model": s["file"], "teacher": t["file"], "threads": ms["threads"],
                            "batch": ms["batch"], "size_ratio": _ratio(s["bytes"], t["bytes"]),
                            "speedup": _ratio(mt["latency_ms"]["p50"], ms["latency_ms"]["p50"]),
                            "memory_ratio": _ratio(ms["memory"]["rss_peak_inference"], mt["memory"]["rss_peak_inference"]),
                            "model_memory_ratio": _ratio(ms["memory"]["model_bytes"] or None,
                                                         mt["memory"]["model_bytes"] or None),
                            "accuracy_delta": acc,
                            "agreement_with_teacher": s.get("agreement_with_teacher")})
    return out


# -- rows shared by the table and markdown --------------------------------------------------

COLUMNS = ["model", "role", "format", "delegate", "threads", "batch", "size", "accuracy", "agree",
           "init ms", "first ms", "p50 ms", "p90 ms", "p99 ms", "std ms", "peak MiB", "+model MiB"]
#: the terminal table leaves some columns to bench.json and --markdown
TERMINAL = ["model", "format", "delegate", "threads", "batch", "size", "accuracy", "agree", "init ms",
            "p50 ms", "p99 ms", "peak MiB"]
#: when the full set is wider than the console; "size" keeps the comparison rows' size ratio
NARROW = ["model", "threads", "batch", "size", "accuracy", "agree", "p50 ms", "peak MiB"]
SHORT = {"threads": "thr", "batch": "b", "accuracy": "acc"}


def _fmt(v, spec: str, suffix: str = "") -> str:
    return "—" if v is None else format(v, spec) + suffix


def _pct(v, spec: str = ".2f", suffix: str = "%") -> str:
    return _fmt(v * 100 if v is not None else None, spec, suffix)


def _size(n) -> str:
    if n is None:
        return "—"
    return f"{n / MB:.2f} MB" if n >= MB else f"{n / 1024:.1f} kB"


def _ms(v) -> str:
    if v is None:
        return "—"
    return f"{v:.4f}" if v < 1 else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def rows(result: dict) -> list[tuple[str, dict]]:
    """(kind, {column: text}) with kind 'model', 'skip' or 'compare'."""
    out = []
    for m in result["models"]:
        providers = ",".join(p.replace("ExecutionProvider", "") for p in (m.get("backend") or {}).get("providers") or [])
        for x in m["measurements"]:
            row = {"model": m["file"], "role": m["role"], "format": m["format"] or "—",
                   "threads": str(x["threads"]), "batch": str(x["batch"]), "size": _size(m["bytes"]),
                   "accuracy": _pct(m["accuracy"]), "agree": _pct(m["agreement_with_teacher"], ".1f")}
            if "skipped" in x:
                row["delegate"] = "skipped"
                row["p50 ms"] = "skipped"
                out.append(("skip", row))
                continue
            lat, mem = x["latency_ms"], x["memory"]
            row.update({"delegate": x.get("delegate") or providers or "—", "init ms": _ms(x["init_ms"]),
                        "first ms": _ms(x["first_inference_ms"]), "p50 ms": _ms(lat["p50"]),
                        "p90 ms": _ms(lat["p90"]), "p99 ms": _ms(lat["p99"]), "std ms": _ms(lat["std"]),
                        "peak MiB": _fmt(mem["rss_peak_inference"] / MB, ".1f"),
                        "+model MiB": _fmt(mem["model_bytes"] / MB, ".2f")})
            out.append(("model", row))
    several = len({c["teacher"] for c in result["comparisons"]}) > 1
    for c in result["comparisons"]:
        out.append(("compare", {"model": f"{c['model']} vs {c['teacher'] if several else 'teacher'}", "role": "comparison",
                                "format": c["teacher"], "threads": str(c["threads"]), "batch": str(c["batch"]),
                                "size": _fmt(c["size_ratio"], ".3f", "×"),
                                "accuracy": _pct(c["accuracy_delta"], "+.2f", " pp"),
                                "agree": _pct(c["agreement_with_teacher"], ".1f"),
                                "p50 ms": _fmt(c["speedup"], ".2f", "× faster"),
                                "peak MiB": _fmt(c["memory_ratio"], ".2f", "×"),
                                "+model MiB": _fmt(c["model_memory_ratio"], ".2f", "×")}))
    return out


def skipped_notes(result: dict) -> list[str]:
    return [f"{m['file']} threads {x['threads']} batch {x['batch']}: {x['skipped']}"
            for m in result["models"] for x in m["measurements"] if "skipped" in x]


def device_line(result: dict) -> str:
    d = result["device"]
    rts = ", ".join(f"{k} {v}" for k, v in d["packages"].items() if k != "numpy" and k != "psutil")
    return (f"{d.get('board') or 'unknown board'} · {d.get('cpu') or 'unknown CPU'} · {d['cores']} cores · "
            f"{d['os']} · Python {d['python'].split()[-1]} · {rts}")


def thermal_line(result: dict) -> str | None:
    b, a = result["device"]["thermal_before"], result["device"]["thermal_after"]
    parts = []
    if b.get("temperatures_c") and a.get("temperatures_c"):
        hb, ha = max(b["temperatures_c"].values()), max(a["temperatures_c"].values())
        parts.append(f"max temperature {hb:.1f} → {ha:.1f} °C")
    if a.get("throttled"):
        parts.append("THROTTLED" if a["throttled"].get("throttled_now") else "not throttled")
    return " · ".join(parts) or None


# -- renderers --------------------------------------------------------------------------------

def render_table(result: dict, console=None) -> None:
    """The TERMINAL columns when they fit the console's width, else the NARROW ones."""
    from rich.console import Console
    console = console or Console()
    table = _table(result, TERMINAL)
    natural = console.measure(table, options=console.options.update_width(100_000)).maximum
    console.print(table if natural <= console.width else _table(result, NARROW))
    for note in skipped_notes(result):
        console.print(f"[dim]skipped {note}[/dim]")
    t = thermal_line(result)
    if t:
        console.print(t)


def _table(result: dict, cols: list[str]):
    from rich.table import Table
    table = Table(title=f"edgekd bench · {result['target']['path']}", caption=device_line(result))
    for h in cols:
        left = h in ("model", "format", "delegate")
        table.add_column(SHORT.get(h, h) if cols is NARROW else h, justify="left" if left else "right",
                         no_wrap=h != "model", min_width=12 if h == "model" else None, overflow="fold")
    section = False
    for kind, cells in rows(result):
        if kind == "compare" and not section:
            table.add_section()
            section = True
        table.add_row(*[cells.get(h, "") for h in cols],
                      style={"compare": "bold cyan", "skip": "dim"}.get(kind))
    return table


def to_markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"# edgekd bench: `{result['target']['path']}`", "",
             f"- device: {device_line(result)}",
             f"- run: {result['created_utc']} · edgekd {result['edgekd_version']} · "
             f"bench.json schema {result['schema_version']}",
             f"- settings: threads {s['threads']}, batch {s['batch']}; warm-up ≥{s['warmup']} runs and "
             f"≥{s['warmup_seconds']:g} s; timed ≥{s['runs']} runs and ≥{s['min_seconds']:g} s; "
             "each model in a fresh process"
             + (f"; {s['repeat']} repetitions per setting, the one with the median p50 shown"
                if s.get("repeat", 1) > 1 else "")]
    t = thermal_line(result)
    if t:
        lines.append(f"- thermal: {t}")
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" if c in ("model", "role", "format",
              "delegate") else "---:" for c in COLUMNS) + "|"]
    for kind, cells in rows(result):
        vals = [cells.get(c, "").replace("|", "\\|") for c in COLUMNS]
        if kind == "compare":
            vals = [f"**{v}**" if v else v for v in vals]
        lines.append("| " + " | ".join(vals) + " |")
    notes = skipped_notes(result)
    if notes:
        lines += [""] + [f"- skipped {n}" for n in notes]
    lines += ["", "Latency is per call of the runtime on a preallocated input. Speed-up = teacher p50 / "
              "model p50 at the same threads and batch; peak MiB = peak RSS of the model's own process "
              "during inference; +model MiB = that peak − RSS before loading the model. Ratios compare "
              "with the teacher measured in the same run.", ""]
    return "\n".join(lines)


class BenchProgress:
    """A rich progress bar over the child processes; ``update`` is run_bench's progress callback."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._progress = None
        self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, \
                TimeElapsedColumn
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=True)
            self._progress.__enter__()
        return self

    def update(self, done: int, total: int, label: str) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task(label, total=total)
        self._progress.update(self._task, completed=done, description=label)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False


def print_summary(result: dict, console=None) -> None:
    """The table, then where the reports went."""
    from ..console import report_console
    console = console or report_console()
    render_table(result, console)
    written = [f"{k}: {v}" for k, v in result.get("outputs", {}).items() if v]
    if written:
        console.print("wrote " + " · ".join(written), highlight=False)


def require_matplotlib():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgeKDError("--plot needs matplotlib, which is not installed",
                          hint="pip install matplotlib (or drop --plot)") from None
    return plt


def plot_png(result: dict) -> bytes:
    """Latency distribution (CDF) per model and setting, and accuracy against p50 latency."""
    import io
    plt = require_matplotlib()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for m in result["models"]:
        for x in _ok(m):
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
    fig.suptitle(f"edgekd bench · {device_line(result)}", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(result: dict, out=None, markdown=None, plot=None) -> None:
    """bench.json (+ markdown, + png), each written to a temporary name and renamed."""
    try:
        if plot:
            atomic_write_bytes(plot, plot_png(result))
        if markdown:
            atomic_write_text(markdown, to_markdown(result))
        if out:
            atomic_write_text(out, to_json(result))
    except OSError as exc:
        raise ConfigError(f"cannot write the report: {exc.strerror}: '{exc.filename}'") from None


def to_json(result: dict) -> str:
    """bench.json as strict JSON: a number that is not finite (a ratio of nothing) becomes null,
    since bare NaN/Infinity are not JSON and other tools refuse them."""
    return json.dumps(_finite(result), indent=2, allow_nan=False) + "\n"


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _not_json(text: str):
    raise ValueError(f"{text} is not JSON (bench.json holds null for a missing number)")


def load(path) -> dict:
    """Read a bench.json back (for --baseline and friends)."""
    from . import SCHEMA, SCHEMA_VERSION
    path = Path(path)
    try:
        doc = json.loads(path.read_text(), parse_constant=_not_json)
    except FileNotFoundError:
        raise ConfigError(f"'{path}' not found") from None
    except (ValueError, RecursionError) as exc:     # JSONDecodeError, UnicodeDecodeError, NaN
        raise ConfigError(f"'{path}' is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ConfigError(f"'{path}' is not an edgekd bench.json")
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"'{path}' has bench schema version {version!r}, not a whole number ≥ 1",
                          hint="pass a bench.json written by edgekd bench")
    if version > SCHEMA_VERSION:
        raise ConfigError(f"'{path}' has bench schema version {version}; this edgekd reads up "
                          f"to {SCHEMA_VERSION}", hint="upgrade edgekd")
    return doc
