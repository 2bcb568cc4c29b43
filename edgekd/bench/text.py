"""The bench result as text: rows shared by the terminal table (:mod:`edgekd.render.bench`) and
``--markdown``, the device and thermal lines, and the markdown report. Torch-free, rich-free."""
from __future__ import annotations

from ..render.numbers import MIB, fmt, ms, pct, size

# -- rows shared by the table and markdown --------------------------------------------------

COLUMNS = ["model", "role", "format", "delegate", "threads", "batch", "size", "accuracy", "agree",
           "init ms", "first ms", "p50 ms", "p90 ms", "p99 ms", "std ms", "peak MiB", "+model MiB"]
#: the terminal table leaves some columns to bench.json and --markdown
TERMINAL = ["model", "format", "delegate", "threads", "batch", "size", "accuracy", "agree", "init ms",
            "p50 ms", "p99 ms", "peak MiB"]
#: when the full set is wider than the console; "size" keeps the comparison rows' size ratio
NARROW = ["model", "threads", "batch", "size", "accuracy", "agree", "p50 ms", "peak MiB"]
SHORT = {"threads": "thr", "batch": "b", "accuracy": "acc"}


def rows(result: dict) -> list[tuple[str, dict]]:
    """(kind, {column: text}) with kind 'model', 'skip' or 'compare'."""
    out = []
    for m in result["models"]:
        providers = ",".join(p.replace("ExecutionProvider", "") for p in (m.get("backend") or {}).get("providers") or [])
        for x in m["measurements"]:
            row = {"model": m["file"], "role": m["role"], "format": m["format"] or "—",
                   "threads": str(x["threads"]), "batch": str(x["batch"]), "size": size(m["bytes"]),
                   "accuracy": pct(m["accuracy"]), "agree": pct(m["agreement_with_teacher"], ".1f")}
            if "skipped" in x:
                row["delegate"] = "skipped"
                row["p50 ms"] = "skipped"
                out.append(("skip", row))
                continue
            lat, mem = x["latency_ms"], x["memory"]
            row.update({"delegate": x.get("delegate") or providers or "—", "init ms": ms(x["init_ms"]),
                        "first ms": ms(x["first_inference_ms"]), "p50 ms": ms(lat["p50"]),
                        "p90 ms": ms(lat["p90"]), "p99 ms": ms(lat["p99"]), "std ms": ms(lat["std"]),
                        "peak MiB": fmt(mem["rss_peak_inference"] / MIB, ".1f"),
                        "+model MiB": fmt(mem["model_bytes"] / MIB, ".2f")})
            out.append(("model", row))
    several = len({c["teacher"] for c in result["comparisons"]}) > 1
    for c in result["comparisons"]:
        out.append(("compare", {"model": f"{c['model']} vs {c['teacher'] if several else 'teacher'}", "role": "comparison",
                                "format": c["teacher"], "threads": str(c["threads"]), "batch": str(c["batch"]),
                                "size": fmt(c["size_ratio"], ".3f", "×"),
                                "accuracy": pct(c["accuracy_delta"], "+.2f", " pp"),
                                "agree": pct(c["agreement_with_teacher"], ".1f"),
                                "p50 ms": fmt(c["speedup"], ".2f", "× faster"),
                                "peak MiB": fmt(c["memory_ratio"], ".2f", "×"),
                                "+model MiB": fmt(c["model_memory_ratio"], ".2f", "×")}))
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
