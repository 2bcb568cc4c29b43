"""tflite-int8 on the activation grids QAT trained (``edgekd distill --qat-epochs``) instead of calibrated ones.

The student's model.json carries ``quantization.activations``: each fake-quantizer of its QAT graph in
graph order, as the module path of the node whose output it quantized, that node's op and the float
range of the int8 grid it trained with. litert-torch names a tensor after the torch ops folded into the
TFLite op that wrote it, the producing op's module first (``layer_error.writer_module``); the tensors one
module writes are paired, in graph order, with that module's QAT ranges when both count the same, and the
QAT range replaces the calibrated one. A tensor that pairs with nothing (the input's layout transposes,
ops whose grid LiteRT ties to their input's, a module the converter split differently) keeps its calibrated
range; export.json says how many tensors took each.
"""
from __future__ import annotations

import math

import numpy as np

from edgekd.core.errors import ModelError
from edgekd.exporters.layer_error import module_classes, writer_module

# TFLite ops whose int8 output shares its input's grid (ai-edge-quantizer ties them): never a QAT range's own
SAME_GRID = {"TRANSPOSE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "PAD", "MAX_POOL_2D", "CONCATENATION", "SLICE",
             "STRIDED_SLICE", "GATHER"}


def trained_ranges(spec: dict, where: str) -> list[dict] | None:
    """model.json's QAT ranges, checked (it is a file edgekd loads), or None when it has none."""
    record = spec.get("quantization")
    if record is None:
        return None
    activations = record.get("activations") if isinstance(record, dict) else None
    if not isinstance(activations, list) or record.get("source") != "qat":
        raise ModelError(f"{where}: 'quantization' must be {{\"source\": \"qat\", \"activations\": [...]}}",
                         hint="the file is damaged or was edited; distill the run again")
    for index, entry in enumerate(activations):
        ok = isinstance(entry, dict) and isinstance(entry.get("module"), str) and isinstance(entry.get("op"), str) \
            and all(isinstance(entry.get(k), (int, float)) and not isinstance(entry.get(k), bool)
                    and math.isfinite(entry[k]) for k in ("min", "max")) and entry["min"] < entry["max"]
        if not ok:
            raise ModelError(f"{where}: quantization.activations[{index}] must have a module, an op and a finite "
                             f"min below its max, got {entry!r}"[:300], hint="the file is damaged or was edited")
    return activations


def with_trained_ranges(ranges: dict, trained: list[dict], producers: list[tuple[str, str]], module) -> tuple[dict, dict]:
    """ai-edge-quantizer's calibration result ``ranges`` ({tensor: {"min", "max"}}) with the QAT ranges put in
    where a tensor pairs with one; ``producers`` are the fp32 file's (tensor name, op) in graph order
    (``layer_error.produced_tensors``).
    Returns the ranges and export.json's account of them."""
    by_module: dict[str, list[dict]] = {}
    for entry in trained:
        by_module.setdefault(entry["module"], []).append(entry)
    classes = module_classes(module)
    written: dict[str, list[str]] = {}
    for name, op in producers:
        module_path = writer_module(name, classes)
        if name in ranges and op not in SAME_GRID and module_path is not None:
            written.setdefault(module_path, []).append(name)
    out, carried = dict(ranges), 0
    for module_path, names in written.items():
        entries = by_module.get(module_path, [])
        if len(entries) != len(names):
            continue
        for name, entry in zip(names, entries):
            shape = np.shape(ranges[name]["min"])
            out[name] = {**ranges[name], "min": np.full(shape, entry["min"], np.float32),
                         "max": np.full(shape, entry["max"], np.float32)}
            carried += 1
    return out, {"tensors_from_qat": carried, "tensors_calibrated": len(ranges) - carried,
                 "qat_ranges": len(trained)}
