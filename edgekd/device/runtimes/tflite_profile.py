"""Where a TFLite model's time goes, as far as LiteRT's Python API tells: which ops the XNNPACK
delegate did *not* take. Torch-free.

LiteRT's Python interpreter has no op profiler (``benchmark_model --enable_op_profiling`` is a C++
tool), so no per-op time here. What it does tell, through ``_get_ops_details()``: the model's own
ops, then one DELEGATE node per partition XNNPACK took. An op the delegate did not take runs in
TFLite's built-in kernels, often much slower (int8 HARD_SWISH is one), and every boundary between
the two costs a layout change. A DELEGATE node's partition is found by walking back from its
outputs through the ops that produce them until its own inputs: every op on the way is delegated.
"""
from __future__ import annotations

import re
from collections import Counter

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
              "corrected_ms": None, "share": None} for op in left]
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


def node_name(op: dict, tensor_names: dict[int, str]) -> str:
    """The op's first output tensor's name, its modules' package paths left out, at most NAME_CHARS
    (the end kept: the innermost module names the layer)."""
    outputs = [int(t) for t in op["outputs"] if t >= 0]
    raw = tensor_names.get(outputs[0], "") if outputs else ""
    first = raw.split(";")[0]
    name = "/".join(_MODULE_PREFIX.sub("", part) for part in first.split("/")) or f"{op['op_name']}_{op['index']}"
    return name if len(name) <= NAME_CHARS else "…" + name[-(NAME_CHARS - 1):]
