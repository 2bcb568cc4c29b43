"""``bench --profile`` as text: the top ops of each file after the terminal table, and every op type
plus the top nodes in ``--markdown``. Torch-free, rich-free."""
from __future__ import annotations

from typing import Any, Mapping

from edgekd.core.numbers import ms, pct

#: nodes per file after the terminal table; --markdown shows TOP_MARKDOWN
TOP, TOP_MARKDOWN = 5, 10
#: undelegated nodes named per op type
NAMED = 3


def profiled(result: Mapping[str, Any]) -> list[dict]:
    return [m for m in result["models"] if m.get("profile")]


def headline(m: Mapping[str, Any]) -> str:
    """One line per file: what was profiled and how its totals compare with the unprofiled p50."""
    p = m["profile"]
    setting = f"{p['threads']} thread{'s' if p['threads'] != 1 else ''}, batch {p['batch']}"
    if p["method"] != "onnxruntime-profiler":
        return f"{m['file']} ({setting}): {_delegated(p)}" + (
            "" if p["method"] == "delegation" else
            f"; p50 {ms(p['p50_ms'])} ms; each op timed alone: {ms(p['total_ms'])} ms in all, "
            f"{ms(p['corrected_total_ms'])} ms less one call ({p['node_overhead_ms'] * 1e3:.1f} µs) each")
    return (f"{m['file']} ({setting}): p50 {ms(p['p50_ms'])} ms unprofiled; {len(p['nodes'])} nodes sum to "
            f"{ms(p['total_ms'])} ms as profiled, {ms(p['corrected_total_ms'])} ms less the profiler's "
            f"{p['node_overhead_ms'] * 1e3:.1f} µs a node ({p['runs']} runs)")


def _delegated(p: Mapping[str, Any]) -> str:
    ops = sum(r["count"] for r in p["ops"])
    left = sum(r["undelegated"] or 0 for r in p["ops"])
    if not p["partitions"]:
        return f"no delegate; all {ops} ops run in TFLite's own kernels"
    return (f"{p['delegate']} took {ops - left} of {ops} ops in {p['partitions']} "
            f"partition{'s' if p['partitions'] != 1 else ''}; {left} left to TFLite's own kernels")


def top_rows(p: Mapping[str, Any], n: int) -> list[dict]:
    """Timed profiles: the ``n`` costliest nodes (op, node, ms, share; TFLite: whether delegated); TFLite
    without times: the undelegated op types with their count and first nodes."""
    if p["method"] == "delegation":
        return [{"op": r["op"], "undelegated": f"{r['undelegated']} of {r['count']}",
                 "nodes": ", ".join(_named(p, r["op"]))} for r in p["ops"] if r["undelegated"]]
    return [{"op": x["op"], "node": x["node"], "ms": ms(x["ms"]), "less overhead ms": ms(x["corrected_ms"]),
             "share": pct(x["share"], ".0f"), **_delegate_cell(p, x)} for x in p["nodes"][:n]]


def _delegate_cell(p: Mapping[str, Any], row: Mapping[str, Any]) -> dict:
    if p["method"] != "one-op-models":
        return {}
    return {"delegated": "yes" if row.get("delegated") else "NO"}


def op_rows(p: Mapping[str, Any]) -> list[dict]:
    """Every op type of a timed profile, the costliest first."""
    return [{"op": r["op"], "nodes": str(r["count"]), "ms": ms(r["ms"]), "less overhead ms": ms(r["corrected_ms"]),
             "share": pct(r["share"], ".0f"),
             **({"undelegated": str(r["undelegated"])} if p["method"] == "one-op-models" else {})} for r in p["ops"]]


def _named(p: Mapping[str, Any], op: str) -> list[str]:
    nodes = [x["node"] for x in p["nodes"] if x["op"] == op]
    return nodes[:NAMED] + ([f"… {len(nodes) - NAMED} more"] if len(nodes) > NAMED else [])


NOTE = ("onnxruntime's profiler reads each node's kernel plus its own bookkeeping (about 2 µs, in whole µs); "
        "'less overhead' takes off what it reads for a node doing nothing (a chain of one-float ReLUs). "
        "TFLite: each op is cut out into a one-op model and timed alone in LiteRT; 'less overhead' takes off "
        "one interpreter call (a one-float RELU model), and fusions XNNPACK makes across ops are in no op's time. "
        "Share: of the corrected total. The unprofiled p50 stays the measure of a call.")


def profile_markdown(result: Mapping[str, Any]) -> list[str]:
    """The --markdown section: per file its headline, then its op types and top nodes (or undelegated ops)."""
    models = profiled(result)
    if not models:
        return []
    lines = ["", "### Where the time goes (--profile)"]
    for m in models:
        p = m["profile"]
        lines += ["", f"**{headline(m)}**"]
        if p["method"] != "delegation":
            lines += _table(op_rows(p))
        lines += _table(top_rows(p, TOP_MARKDOWN))
    return lines + ["", NOTE]


def _table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    cols = list(rows[0])
    return ["", "| " + " | ".join(cols) + " |", "|" + "|".join("---" if c in ("op", "node", "nodes", "undelegated")
                                                               else "---:" for c in cols) + "|"] + \
        ["| " + " | ".join(_cell(r[c]) for c in cols) + " |" for r in rows]


def _cell(text: str) -> str:
    """A markdown table cell: its pipes escaped, control characters (a newline ends the row) dropped."""
    return "".join(c for c in text if c.isprintable()).replace("|", "\\|")
