"""Where a TFLite model's time goes: which ops the XNNPACK delegate did *not* take and, where
ai-edge-litert's flatbuffer tools are installed, each op's time measured alone
(:mod:`.tflite_ops`). Torch-free.

LiteRT's Python interpreter has no op profiler (``benchmark_model --enable_op_profiling`` is a C++
tool). What it does tell, through ``_get_ops_details()``: the model's own
ops, then one DELEGATE node per partition XNNPACK took. An op the delegate did not take runs in
TFLite's built-in kernels, often much slower (int8 HARD_SWISH is one), and every boundary between
the two costs a layout change. A DELEGATE node's partition is found by walking back from its
outputs through the ops that produce them until its own inputs: every op on the way is delegated.
"""
from __future__ import annotations

import re
from collections import Counter

from edgekd.device.runtimes.onnx_profile import by_op

#: a node's name: its output tensor's name, which litert-torch makes the module path; longer is cut
NAME_CHARS = 120
#: "torch.nn.modules.container.Sequential_blocks" → "Sequential_blocks": the class's module goes
_MODULE_PREFIX = re.compile(r"^(?:[a-z_][a-z0-9_]*\.)+(?=[A-Z])")


def delegation(ops: list[dict], tensor_names: dict[int, str], delegate: str | None) -> dict:
    """The profile of an interpreter's ``_get_ops_details()`` (``tensor_names``: index → name)."""
    original = [op for op in ops if op.get("op_name") != "DELEGATE"]
    partitions = [op for op in ops if op.get("op_name") == "DELEGATE"]
    taken = delegated_ops(original, partitions)
    left = [op for op in original if op["index"] not in taken]
    counts, undelegated = Counter(op["op_name"] for op in original), Counter(op["op_name"] for op in left)
    rows = [{"op": op, "count": n, "ms": None, "corrected_ms": None, "share": None, "undelegated": undelegated[op]}
            for op, n in counts.items()]
    rows.sort(key=lambda r: (-r["undelegated"], -r["count"], r["op"]))
    nodes = [{"index": int(op["index"]), "node": node_name(op, tensor_names), "op": op["op_name"], "ms": None,
              "corrected_ms": None, "share": None, "delegated": False} for op in left]
    return {"method": "delegation", "runs": None, "total_ms": None, "node_overhead_ms": None,
            "corrected_total_ms": None, "delegate": delegate, "partitions": len(partitions), "ops": rows,
            "nodes": nodes}


def delegated_ops(original: list[dict], partitions: list[dict]) -> set[int]:
    """The indices of the original ops some DELEGATE node replaced."""
    producer = {int(t): op for op in original for t in op["outputs"]}
    taken: set[int] = set()
    for part in partitions:
        stop = {int(t) for t in part["inputs"]}
        stack = [int(t) for t in part["outputs"]]
        while stack:
            t = stack.pop()
            op = producer.get(t)
            if t in stop or op is None or op["index"] in taken:
                continue
            taken.add(op["index"])
            stack += [int(i) for i in op["inputs"] if i >= 0]
    return taken


def with_op_times(profile: dict, times: list[dict], call_ms: float, runs: int) -> dict:
    """``profile`` (:func:`delegation`) with every op's time alone over ``runs`` calls
    (``tflite_ops.op_times``): all nodes, the costliest first, each also less one interpreter call
    (``call_ms``); op types summed likewise. Whether XNNPACK took a node is the whole graph's answer."""
    left = {n["index"] for n in profile["nodes"]}
    nodes = [{"index": t["index"], "node": short_name(t["output"], f"{t['op']}_{t['index']}"), "op": t["op"],
              "ms": t["ms"], "corrected_ms": None if t["ms"] is None else max(0.0, t["ms"] - call_ms),
              "share": None, "delegated": t["index"] not in left} for t in times]
    corrected = sum(n["corrected_ms"] or 0.0 for n in nodes)
    for n in nodes:
        n["share"] = n["corrected_ms"] / corrected if corrected > 0 and n["corrected_ms"] is not None else None
    nodes.sort(key=lambda n: -(n["ms"] or 0.0))
    undelegated = {r["op"]: r["undelegated"] for r in profile["ops"]}
    ops = [{**row, "undelegated": undelegated.get(row["op"], 0)} for row in by_op(nodes)]
    return {**profile, "method": "one-op-models", "runs": runs, "total_ms": sum(n["ms"] or 0.0 for n in nodes),
            "node_overhead_ms": call_ms, "corrected_total_ms": corrected, "ops": ops, "nodes": nodes}


def node_name(op: dict, tensor_names: dict[int, str]) -> str:
    """The op's first output tensor's name, shortened (:func:`short_name`)."""
    outputs = [int(t) for t in op["outputs"] if t >= 0]
    return short_name(tensor_names.get(outputs[0], "") if outputs else "", f"{op['op_name']}_{op['index']}")


def short_name(raw: str, fallback: str) -> str:
    """A tensor's name, its modules' package paths left out, at most NAME_CHARS (the end kept: the
    innermost module names the layer); ``fallback`` for an unnamed one."""
    first = "".join(c for c in raw.split(";")[0] if c.isprintable())    # no escape codes from a file
    name = "/".join(_MODULE_PREFIX.sub("", part) for part in first.split("/")) or fallback
    return name if len(name) <= NAME_CHARS else "…" + name[-(NAME_CHARS - 1):]
