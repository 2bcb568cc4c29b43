"""Parity: run each exported file in its real runtime on the eval set and compare with PyTorch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.device.runtimes import open_model
from edgekd.core.quiet import quiet


def run_file(path: Path, x: np.ndarray) -> tuple[np.ndarray, dict, dict]:
    """Logits of ``x`` from the file's own runtime (CPU, one thread), plus its input and output
    specs for export.json and the manifest (int8 I/O: the model's own scale and zero point)."""
    with quiet():   # the runtimes print their own notes while loading
        runtime = open_model(path, threads=1, providers=["cpu"])
    logits = runtime.logits(x)
    ins, outs = runtime.io_specs()
    return logits, ins, outs


def compare(logits: np.ndarray, reference: np.ndarray, y: np.ndarray, precision: str,
            tolerance: float | None) -> dict:
    """The parity numbers of one file: max |Δ logits|, top-1 agreement, accuracy of both."""
    pred, ref_pred = logits.argmax(1), reference.argmax(1)
    diff = float(np.abs(logits - reference).max())
    result: dict[str, Any] = {
        "samples": int(len(y)),
        "max_abs_diff": diff,
        "top1_agreement": float((pred == ref_pred).mean()),
        "accuracy": float((pred == y).mean()),
        "reference_accuracy": float((ref_pred == y).mean()),
    }
    result["accuracy_delta"] = result["accuracy"] - result["reference_accuracy"]
    result["tolerance"] = tolerance
    result["passed"] = bool(tolerance is None or diff <= tolerance)
    result["check"] = f"max_abs_diff <= {tolerance:g}" if tolerance is not None else (
        "reported (top-1 agreement, accuracy)" if precision == "int8" else "reported (max_abs_diff)")
    return result
