"""``--keep-float auto``: the fewest float layers that bring an int8 file within ``--max-int8-drop``.

The int8 file is first made full-integer and its accuracy drop measured: the fp32 model's (PyTorch,
or onnxruntime for a brought ONNX file) accuracy minus the int8 file's, in points, on labelled
training samples. While the drop is above the target, the next layer of the full-integer file's
per-layer report (lowest SNR first) is kept float as well and the file made again, up to
``MAX_KEPT`` layers. The file written is the first that meets the target, or, when none does, the
one with the smallest drop (the fewest layers on a tie), recorded ``met: false``.

The samples are those of the run's calibration pool that did not calibrate: training data, never
the eval split, which would choose the layers by the test and so leak it into the product.
Training samples read the models more confidently than unseen ones, so the eval split's accuracy
delta (parity in export.json) can be larger than the drop measured here.
"""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgekd.core.errors import ConfigError, DataError, ExportError
from edgekd.core.quiet import quiet
from edgekd.exporters.layer_error import worst
from edgekd.exporters.parity import run_file
from edgekd.exporters.source import CALIBRATION_FILE, calibration_indices, calibration_pool, reference_logits
from edgekd.train.data.split import stratified_indices

AUTO = "auto"
DEFAULT_MAX_DROP = 0.5     # accuracy points: the target for a deployable int8 student
MAX_KEPT = 8               # layers kept float at most: beyond that the file is hardly int8
SAMPLES = 1000             # labelled samples measured per step at most: 0.1 point resolution
MIN_SAMPLES = 50           # fewer cannot tell half a point from one sample
# ops whose int8 output is their int8 input moved or picked, with no rounding of their own: keeping
# one float cannot lower the error, so the search passes over them
EXACT_OPS = frozenset({"RESHAPE", "TRANSPOSE", "SQUEEZE", "MAX_POOL_2D",
                       "Reshape", "Transpose", "Flatten", "Squeeze", "MaxPool"})


def auto_target(keep_float, max_drop) -> float | None:
    """The accuracy-drop target in points when ``keep_float`` is ``["auto"]`` (None: not auto);
    --max-int8-drop without auto, auto beside layer names, or a drop outside 0..100 is refused."""
    names = [n.strip() for n in keep_float if isinstance(n, str)] if isinstance(keep_float, (list, tuple)) else []
    if AUTO not in names:
        if max_drop is not None:
            raise ConfigError(f"--max-int8-drop {max_drop} was given without --keep-float auto: nothing uses it",
                              hint="add --keep-float auto, or drop --max-int8-drop")
        return None
    others = [n for n in names if n and n != AUTO]
    if others:
        raise ConfigError(f"--keep-float auto chooses the layers itself; it cannot be given with layer names "
                          f"({', '.join(others)})", hint="pass either --keep-float auto or the layer names")
    if max_drop is None:
        return DEFAULT_MAX_DROP
    if isinstance(max_drop, bool) or not isinstance(max_drop, numbers.Real) or not math.isfinite(max_drop) \
            or not 0 <= float(max_drop) <= 100:
        raise ConfigError(f"--max-int8-drop must be from 0 to 100 accuracy points, got {max_drop!r}",
                          hint=f"e.g. {DEFAULT_MAX_DROP}: the int8 file may lose at most half a point")
    return float(max_drop)


@dataclass(frozen=True)
class Search:
    """What the search measures on: the target and the labelled training samples."""
    target: float            # accuracy points
    x: np.ndarray
    y: np.ndarray
    info: dict               # where the samples come from, for export.json


def load_search(run_dir: Path, input_shape: tuple[int, ...], calibration_samples: int, target: float,
                seed: int = 0) -> Search:
    """Up to SAMPLES labelled samples of the calibration pool, stratified, none of them calibrating."""
    x, y = calibration_pool(run_dir, input_shape)
    if y is None:
        raise DataError(f"--keep-float auto needs labels: the run's {CALIBRATION_FILE} has none (an older run)",
                        hint="re-run edgekd distill, or name the layers: --keep-float LAYER,…")
    rest = np.setdiff1d(np.arange(len(y)), calibration_indices(y, calibration_samples, seed))
    if len(rest) < MIN_SAMPLES:
        raise DataError(f"--keep-float auto measures on labelled training samples that do not calibrate: "
                        f"{CALIBRATION_FILE} holds {len(y)}, --calibration-samples takes {min(len(y), calibration_samples)}, "
                        f"{len(rest)} are left (at least {MIN_SAMPLES} needed)",
                        hint=f"lower --calibration-samples to {max(1, len(y) - MIN_SAMPLES)} or less")
    chosen = rest[stratified_indices(y[rest], SAMPLES, seed)]
    info = {"samples": len(chosen), "source": f"{CALIBRATION_FILE} (training split), none of the calibration samples",
            "stratified": True, "seed": seed}
    return Search(target, x[chosen], y[chosen], info)


def export_auto(exporter, ctx, src, out: Path, search: Search) -> dict:
    """Make ``out`` with the exporter (an int8 format's, which honours ctx.keep_float), keeping
    float the report's worst layers one more at a time until the drop meets the target."""
    reference = reference_logits(src, search.x)
    details = _step(exporter, replace(ctx, keep_float=None), src, out, search, reference)
    steps, skipped, kept = [details["keep_float_auto"]], [], list[str]()
    best = (details, out.read_bytes())
    for name in _candidates(details["layer_error"]):
        if best[0]["keep_float_auto"]["drop_points"] <= search.target or len(kept) >= MAX_KEPT:
            break
        try:
            details = _step(exporter, replace(ctx, keep_float=[*kept, name]), src, out, search, reference)
        except ExportError as exc:
            # the format cannot keep this layer float (e.g. the last weighted layer kept float leaves
            # no int8 weights): pass over it, say why
            skipped.append({"layer": name, "reason": exc.message})
            continue
        kept.append(name)
        steps.append(details["keep_float_auto"])
        if steps[-1]["drop_points"] < best[0]["keep_float_auto"]["drop_points"]:   # a tie keeps fewer layers
            best = (details, out.read_bytes())
    # the file with the smallest drop: the first within the target, else the best found (met: false)
    details, content = best
    out.write_bytes(content)
    chosen = details["keep_float_auto"]
    details["keep_float_auto"] = {
        "target_drop_points": search.target, "met": chosen["drop_points"] <= search.target,
        "kept_float": chosen["kept_float"], "drop_points": chosen["drop_points"],
        "top1_agreement": chosen["top1_agreement"],
        "reference": "PyTorch" if src.kind == "torch" else "the brought ONNX file (onnxruntime)",
        "reference_accuracy": float((reference.argmax(1) == search.y).mean()), **search.info,
        "order": "the full-integer file's layer_error, lowest SNR first", "max_kept": MAX_KEPT,
        "steps": steps, "passed_over": skipped}
    return details


def _step(exporter, ctx, src, out: Path, search: Search, reference: np.ndarray) -> dict:
    """Make the file with ctx.keep_float's layers float, then measure it on the search's samples."""
    t0 = time.perf_counter()
    details = exporter(ctx, src, out) or {}
    with quiet():
        logits = run_file(out, search.x)[0]
    pred = logits.argmax(1)
    accuracy = float((pred == search.y).mean())
    drop = 100 * (float((reference.argmax(1) == search.y).mean()) - accuracy)
    details["keep_float_auto"] = {"kept_float": list(ctx.keep_float or []), "accuracy": accuracy,
                                  "drop_points": round(drop, 6),
                                  "top1_agreement": float((pred == reference.argmax(1)).mean()),
                                  "seconds": round(time.perf_counter() - t0, 3)}
    return details


def _candidates(report: dict) -> list[str]:
    """The report's layers to try, worst SNR first, passing over the ops int8 represents exactly and
    layers an earlier name already covers (a module name keeps the layers under it)."""
    chosen: list[str] = []
    covered: set[str] = set()
    for layer in worst(report, len(report["layers"])):
        name = layer["layer"]
        if layer["op"] in EXACT_OPS or name in covered:
            continue
        chosen.append(name)
        covered |= {other["layer"] for other in report["layers"]
                    if other["layer"] == name or other["layer"].startswith(name + ".")}
    return chosen
