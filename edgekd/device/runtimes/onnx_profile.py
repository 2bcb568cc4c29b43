"""Where an ONNX model's time goes: onnxruntime's own profiler, per node. Torch-free (no onnx package).

What the profiler times (onnxruntime's sequential executor, ``KernelScope``): each node's
``_kernel_time`` event starts before the profiler sums the node's input sizes and ends after it has
built the event's arguments (op name, provider, sizes, thread-pool statistics: strings), and its
duration is truncated to whole microseconds. So every node reads its kernel's time *plus* a fixed
bookkeeping cost, about 2 µs on a desktop CPU: nothing for a ResNet's 20 µs convolutions, but more
than the kernel itself for a small model's 1 µs nodes. We report the raw times and, beside them,
the same times less that cost, measured on a chain of nodes that do almost nothing (ReLU on one
float), profiled the same way at the same threads: a calibration independent of the model under test.
What no calibration removes: the profiler's work between the nodes also evicts their data from the
caches, so tiny kernels run slower while profiled; the unprofiled p50 stays the measure of the run.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: ReLU nodes in the calibration chain
CHAIN = 50


def profile_onnx(rt, ort, prepared: np.ndarray, runs: int = 100, warmup: int = 10) -> dict:
    """Per-node times of ``rt`` (an OnnxRuntime; ``ort`` the onnxruntime package) on ``prepared``: a fresh session with the profiler
    on (the runtime's own session stays unprofiled), ``warmup`` runs left out, then ``runs`` runs; the
    calibration chain's runs half before, half after them (:func:`schedule`)."""
    (times, ops), (chain, _) = _profiled_runs([(str(rt.path), {rt.input.name: prepared}),
                                               (relu_chain(CHAIN), {"x0": np.zeros(1, np.float32)})],
                                              ort, rt.threads, rt.providers, runs, warmup)
    overhead = float(np.mean([typical_mean(v) for v in chain.values()])) / 1e3
    nodes: list[dict[str, Any]] = []
    for name, values in times.items():
        ms = typical_mean(values) / 1e3
        nodes.append({"index": ops[name][1], "node": name, "op": ops[name][0], "ms": ms,
                      "corrected_ms": max(0.0, ms - overhead), "delegated": None})
    corrected = sum(n["corrected_ms"] for n in nodes)
    for n in nodes:
        n["share"] = n["corrected_ms"] / corrected if corrected > 0 else None
    nodes.sort(key=lambda n: -n["ms"])
    return {"method": "onnxruntime-profiler", "runs": runs, "total_ms": sum(n["ms"] for n in nodes),
            "node_overhead_ms": overhead, "corrected_total_ms": corrected, "delegate": None, "partitions": None,
            "ops": by_op(nodes), "nodes": nodes}


def by_op(nodes: list[dict]) -> list[dict]:
    """The nodes summed per op type (an untimed node counts, adds no time), the most expensive first;
    shares of the corrected total. Also TFLite's one-op-models profile's (:mod:`.tflite_profile`)."""
    ops: dict[str, dict] = {}
    for n in nodes:
        row = ops.setdefault(n["op"], {"op": n["op"], "count": 0, "ms": 0.0, "corrected_ms": 0.0, "share": None,
                                       "undelegated": None})
        row["count"] += 1
        row["ms"] += n["ms"] or 0.0
        row["corrected_ms"] += n["corrected_ms"] or 0.0
    total = sum(r["corrected_ms"] for r in ops.values())
    for row in ops.values():
        row["share"] = min(1.0, row["corrected_ms"] / total) if total > 0 else None   # min: rounding
    return sorted(ops.values(), key=lambda r: -r["corrected_ms"])


def typical_mean(values) -> float:
    """The mean of the readings within 1 µs of their median. Near the median: as robust as the median
    to runs another process interrupted (bench's p50 is a median too). A mean: readings in whole µs
    dither between neighbours, and a node reading 2 µs in 60 % of the runs and 3 µs in the rest takes
    2.4 µs, where the median would say 2."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    middle = v[(len(v) - 1) // 2]      # the lower median: a reading, so at least itself is within 1 µs
    return float(v[np.abs(v - middle) <= 1].mean())


def _profiled_runs(models: list[tuple[str | bytes, dict]], ort, threads: int | None, providers: list[str], runs: int,
                   warmup: int) -> list[tuple[dict[str, list[int]], dict[str, tuple[str, int | None]]]]:
    """Per (model, feed), profiled in a session of its own, the sessions' runs taking turns:
    (node → its µs per run, node → (op type, node index)), the ``warmup`` runs left out. The
    profile files live in a temporary folder and go with it."""
    with tempfile.TemporaryDirectory(prefix="edgekd-profile-") as tmp:
        calls = []
        for i, (model, feed) in enumerate(models):
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
            opts.log_severity_level = 3
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tmp, f"ort{i}"))
            sess = ort.InferenceSession(model, sess_options=opts, providers=providers)
            calls.append((sess, [o.name for o in sess.get_outputs()], feed))
        for i, count in schedule(len(calls), runs, warmup):
            sess, names, feed = calls[i]
            for _ in range(count):
                sess.run(names, feed)
        return [_node_times(json.loads(Path(sess.end_profiling()).read_text()), warmup) for sess, _, _ in calls]


def schedule(models: int, runs: int, warmup: int) -> list[tuple[int, int]]:
    """(model, runs) blocks: the first model's runs in one block (each run finds the caches as the one
    before left them, as in bench's timed loop), every other model's half before and half after it,
    so that what the machine does meanwhile falls on both alike."""
    others = range(1, models)
    return ([(i, warmup + runs // 2) for i in others] + [(0, warmup + runs)]
            + [(i, runs - runs // 2) for i in others])


def _node_times(events: list[dict], warmup: int) -> tuple[dict[str, list[int]], dict[str, tuple[str, int | None]]]:
    times: dict[str, list[int]] = {}
    ops: dict[str, tuple[str, int | None]] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            name, args = e["name"][:-len("_kernel_time")], e.get("args", {})
            times.setdefault(name, []).append(int(e["dur"]))
            index = args.get("node_index", args.get("graph_index"))
            ops[name] = (args.get("op_name", "?"), int(index) if index is not None else None)
    # each node runs once a run: its first ``warmup`` readings are the warm-up's
    return {k: v[warmup:] or v for k, v in times.items()}, ops


# -- the calibration model, written as ONNX's protobuf by hand (the device side has no onnx package) --
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _float_vector(name: str) -> bytes:
    """ValueInfoProto: ``name``, a float tensor of shape [1]."""
    shape = _field(1, _field(1, 1))                             # TensorShapeProto.dim {dim_value: 1}
    tensor = _field(1, 1) + _field(2, shape)                    # elem_type FLOAT, shape
    return _field(1, name) + _field(2, _field(1, tensor))       # name, type.tensor_type


def relu_chain(k: int) -> bytes:
    """A ModelProto: x0 → Relu → x1 → … → Relu → x{k}, float [1], opset 13."""
    nodes = b"".join(_field(1, _field(1, f"x{i}") + _field(2, f"x{i + 1}") + _field(3, f"relu{i}")
                               + _field(4, "Relu")) for i in range(k))
    graph = nodes + _field(2, "edgekd_profiler_calibration") + _field(11, _float_vector("x0")) \
        + _field(12, _float_vector(f"x{k}"))
    return _field(1, 8) + _field(7, graph) + _field(8, _field(1, "") + _field(2, 13))
