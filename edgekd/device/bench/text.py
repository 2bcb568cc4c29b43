"""The bench result as text: rows shared by the terminal table (:mod:`edgekd.app.render.bench`) and
``--markdown``, the device and thermal lines, and the markdown report. Torch-free, rich-free."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from edgekd.core.numbers import MIB, fmt, ms, pct, size
from edgekd.device.bench.classes_text import classes_markdown
from edgekd.device.bench.compare import at, measured, setting_name
from edgekd.device.bench.pick import NEAR_BEST, RULE_WORDS
from edgekd.device.bench.profile_text import profile_markdown
from edgekd.device.runtimes import ROWS

# -- rows shared by the table and markdown --------------------------------------------------

COLUMNS = ["model", "role", "format", "delegate", "threads", "batch", "size", "accuracy", "agree",
           "init ms", "first ms", "p50 ms", "p90 ms", "p99 ms", "std ms", "peak MiB", "+model MiB"]
#: the terminal table leaves some columns to bench.json and --markdown
TERMINAL = ["model", "format", "delegate", "threads", "batch", "size", "accuracy", "agree", "init ms",
            "p50 ms", "p99 ms", "peak MiB"]
#: when the full set is wider than the console; "size" keeps the comparison rows' size ratio
NARROW = ["model", "threads", "batch", "size", "accuracy", "agree", "p50 ms", "peak MiB"]
SHORT = {"threads": "thr", "batch": "b", "accuracy": "acc"}


def rows(result: Mapping[str, Any]) -> list[tuple[str, dict]]:
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
    shown = shown_comparisons(result)
    several = len({c["teacher"] for c in shown}) > 1
    for c in shown:
        out.append(("compare", {"model": f"{c['model']} vs {c['teacher'] if several else 'teacher'}", "role": "comparison",
                                "format": c["teacher"], "threads": str(c["threads"]), "batch": str(c["batch"]),
                                "size": fmt(c["size_ratio"], ".3f", "×"),
                                "accuracy": pct(c["accuracy_delta"], "+.2f", " pp"),
                                "agree": pct(c["agreement_with_teacher"], ".1f"),
                                "p50 ms": faster(c["speedup"]),
                                "peak MiB": fmt(c["memory_ratio"], ".2f", "×"),
                                "+model MiB": fmt(c["model_memory_ratio"], ".2f", "×")}))
    return out


def shown_comparisons(result: Mapping[str, Any]) -> list[dict]:
    """The comparisons the table shows: each model against the teacher's file of its own format,
    else against the run's reference teacher. bench.json keeps every pair (N students × M teacher
    files), which in a bundle of four formats per role would be 16 rows per setting."""
    fmt_of = {m["file"]: m["format"] for m in result["models"]}
    by_format = {m["format"]: m["file"] for m in result["models"] if m["role"] == "teacher"}
    out = []
    for c in result["comparisons"]:
        wanted = by_format.get(fmt_of.get(c["model"]), result.get("teacher"))
        if c["teacher"] == wanted:
            out.append(c)
    return out


def faster(ratio: float | None) -> str:
    """A speed ratio (reference p50 / this p50) in words: below 1 is slower, said so."""
    if ratio is None or ratio <= 0:
        return "—"
    return f"{ratio:.2f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower"


#: per runtime, the fp32 and the int8 format whose p50s are set side by side
RUNTIME_PAIRS = tuple((row.label or row.name, row.export_format, row.int8_format) for row in ROWS if row.int8_format)


def int8_pairs(result: Mapping[str, Any]) -> list[tuple[str, str, dict, dict, dict, float | None]]:
    """Per role, runtime and setting of a role's fp32 file of a runtime that also has an int8 one:
    (role, runtime, the fp32 model, the int8 model, the fp32 measurement, the int8 p50 or None)."""
    out = []
    for role in dict.fromkeys(m["role"] for m in result["models"]):
        files = {m["format"]: m for m in result["models"] if m["role"] == role}
        for runtime, fp32, int8 in RUNTIME_PAIRS:
            if fp32 in files and int8 in files:
                out += [(role, runtime, files[fp32], files[int8], x, _p50(files[int8], x["threads"], x["batch"]))
                        for x in measured(files[fp32])]
    return out


def _p50(m: Mapping[str, Any], threads: int, batch: int) -> float | None:
    x = at(m, threads, batch)
    return x["latency_ms"]["p50"] if x else None


def formats_side_by_side(result: Mapping[str, Any]) -> list[dict]:
    """Per role, setting and runtime with both an fp32 and an int8 file: their p50s and int8 against
    fp32, so a user sees whether int8 pays on this device (it does not on every CPU)."""
    return [{"role": role, "runtime": runtime, "threads": str(x["threads"]), "batch": str(x["batch"]),
             "fp32 p50 ms": ms(x["latency_ms"]["p50"]), "int8 p50 ms": ms(b),
             "int8 vs fp32": faster(x["latency_ms"]["p50"] / b if b else None)}
            for role, runtime, _, _, x, b in int8_pairs(result)]


def int8_slower_lines(result: Mapping[str, Any]) -> list[str]:
    """One line per int8 file slower than its runtime's fp32 file at a setting: the side-by-side
    table's verdict said plainly, never a silent "int8 = better"."""
    return [f"{q['file']} is {b / x['latency_ms']['p50']:.2f}× slower than {f['file']} on this device "
            f"({setting_name(x)}): int8 does not pay here"
            for _, _, f, q, x, b in int8_pairs(result) if b is not None and b > x["latency_ms"]["p50"]]


FP32_FORMATS = {fp32: int8 for _, fp32, int8 in RUNTIME_PAIRS}


def int8_references(models: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(int8 file, fp32 file) for each int8 file of a role that has an fp32 file: the fp32 file of its own
    runtime where the role has one, else the role's first (the default bundle: student.int8.tflite against
    student.onnx). Export's rows and bench.json's models both name their role, format and file."""
    out = []
    for q in models:
        fp32 = [m for m in models if m["role"] == q["role"] and m["format"] in FP32_FORMATS]
        if q["format"] in FP32_FORMATS.values() and fp32:
            same = [m for m in fp32 if FP32_FORMATS[m["format"]] == q["format"]]
            out.append((q, (same or fp32)[0]))
    return out


def int8_larger_line(q: Mapping[str, Any], f: Mapping[str, Any]) -> str | None:
    """A line when the int8 file ``q`` is larger than the fp32 file ``f``: a model this small saves less on
    its weights (a quarter of fp32's) than the int8 file spends on its scales and its format."""
    if q["bytes"] <= f["bytes"]:
        return None
    return (f"note: {q['file']} is larger than {f['file']} ({size(q['bytes'])} vs {size(f['bytes'])}): "
            f"this {q['role']} is too small for int8 to save space")


def int8_cost_lines(result: Mapping[str, Any]) -> list[str]:
    """Per int8 file larger than its fp32 reference (:func:`int8_references`) or slower than one of another
    runtime (a slower one of the same runtime has its line from :func:`int8_slower_lines`), one line."""
    lines = []
    for q, f in int8_references(result["models"]):
        slower = _slower_settings(q, f) if FP32_FORMATS[f["format"]] != q["format"] else []
        larger = int8_larger_line(q, f)
        if larger and slower:
            lines.append(f"note: {q['file']} is larger and slower than {f['file']} ({size(q['bytes'])} vs "
                         f"{size(f['bytes'])}; {'; '.join(slower)}): this {q['role']} is too small for int8 to pay")
        elif larger:
            lines.append(larger)
        elif slower:
            lines.append(f"note: {q['file']} is slower than {f['file']} on this device ({'; '.join(slower)}): "
                         "int8 does not pay here")
    return lines


def _slower_settings(q: Mapping[str, Any], f: Mapping[str, Any]) -> list[str]:
    """'p50 0.0960 vs 0.0610 ms at 1 thread, batch 1' for each setting where ``q`` is slower than ``f``."""
    out = []
    for x in measured(f):
        b = _p50(q, x["threads"], x["batch"])
        if b is not None and b > x["latency_ms"]["p50"]:
            out.append(f"p50 {ms(b)} vs {ms(x['latency_ms']['p50'])} ms at {setting_name(x)}")
    return out


def recommendation_lines(result: Mapping[str, Any]) -> list[str]:
    """bench.json's recommendation, one line per role (and setting, when there are several)."""
    recs = result.get("recommendation") or []
    several = len({(r["threads"], r["batch"]) for r in recs}) > 1
    return [_recommendation_line(r, several) for r in recs]


def _recommendation_line(r: Mapping[str, Any], several: bool) -> str:
    where = f" at {setting_name(r)}" if several else ""
    left = ", ".join(e["file"] for e in r["excluded"])
    if r["file"] is None:
        return f"no {r['role']} file{where} meets the budget (failing it: {left})"
    speed = (f", {faster(r['speedup_vs_teacher'])} than the teacher's {r['teacher']}"
             if r["speedup_vs_teacher"] is not None and r["file"] != r["teacher"] else "")
    rule = {NEAR_BEST: f" within 1 point of the best {r['role']} accuracy"}.get(r["rule"], RULE_WORDS[r["rule"]])
    return (f"recommended {r['role']} file{where}: {r['file']} — {ms(r['p50_ms'])} ms p50{speed}; fastest{rule}"
            + (f" (left out: {left})" if left else ""))


def side_by_side_markdown(result: Mapping[str, Any]) -> list[str]:
    table = formats_side_by_side(result)
    if not table:
        return []
    columns = list(table[0])
    lines = ["", "### int8 against fp32, side by side", "", "| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if c in ("role", "runtime") else "---:" for c in columns) + "|"]
    return lines + ["| " + " | ".join(row[c] for c in columns) + " |" for row in table]


def _bullets(lines: list[str]) -> list[str]:
    return [""] + [f"- {line}" for line in lines] if lines else []


def skipped_notes(result: Mapping[str, Any]) -> list[str]:
    return [f"{m['file']} threads {x['threads']} batch {x['batch']}: {x['skipped']}"
            for m in result["models"] for x in m["measurements"] if "skipped" in x]


def device_line(result: Mapping[str, Any]) -> str:
    d = result["device"]
    rts = ", ".join(f"{k} {v}" for k, v in d["packages"].items() if k != "numpy" and k != "psutil")
    remote = result.get("remote")
    return ((f"on {remote['host']} (over SSH, bundle at {remote['path']}): " if remote else "")
            + f"{d.get('board') or 'unknown board'} · {d.get('cpu') or 'unknown CPU'} · {d['cores']} cores · "
            f"{d['os']} · Python {d['python'].split()[-1]} · {rts}")


def thermal_line(result: Mapping[str, Any]) -> str | None:
    b, a = result["device"]["thermal_before"], result["device"]["thermal_after"]
    parts = []
    if b.get("temperatures_c") and a.get("temperatures_c"):
        hb, ha = max(b["temperatures_c"].values()), max(a["temperatures_c"].values())
        parts.append(f"max temperature {hb:.1f} → {ha:.1f} °C")
    if a.get("throttled"):
        parts.append("THROTTLED" if a["throttled"].get("throttled_now") else "not throttled")
    return " · ".join(parts) or None


def bench_markdown(result: Mapping[str, Any]) -> str:
    """The ``--markdown`` file: the device, settings and every row of the table, with notes."""
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
    lines += _bullets(recommendation_lines(result)) + side_by_side_markdown(result) + _bullets(int8_slower_lines(result))
    lines += _bullets(int8_cost_lines(result))
    lines += classes_markdown(result, shown_comparisons(result)) + profile_markdown(result)
    notes = skipped_notes(result)
    if notes:
        lines += [""] + [f"- skipped {n}" for n in notes]
    lines += ["", "Latency is per call of the runtime on a preallocated input. Speed-up = teacher p50 / "
              "model p50 at the same threads and batch; peak MiB = peak RSS of the model's own process "
              "during inference; +model MiB = that peak − RSS before loading the model. Ratios compare "
              "with the teacher measured in the same run.", ""]
    return "\n".join(lines)
