"""int8-friendly forms: the same function written with ops LiteRT's XNNPACK delegate runs in int8.

tflite-int8 converts a copy of the module in which each ``nn.Hardswish`` computes
``(x / 6) · relu6(x + 3)``. Why, measured (ai-edge-litert 2.3.0, one thread, Intel Xeon with
AVX-512 VNNI; ``python benchmarks/int8_speed.py``): XNNPACK does not take an int8 HARD_SWISH, so
each one runs in TFLite's built-in kernel and splits the delegated graph around it. MobileNetV3-Small
at width 0.25 on 28×28 images had 19 of them and 20 delegate partitions; with every op delegated
(MUL, ADD with a fused RELU6, MUL) its int8 file takes about half the time (the README's pair section,
from benchmarks/results/int8_pair.json). The order matters:
litert-torch fuses ``x · relu6(x + 3) / 6``, ``x · hardsigmoid(x)`` and ``x · (relu6(x + 3) / 6)``
back into HARD_SWISH; ``(x / 6) · relu6(x + 3)`` stays three ops.

Measured and not done: the squeeze-excitation mean as an average pool (int8 AVERAGE_POOL_2D was not
delegated either, and the mean is), and the same rewrite for onnx-int8 (onnxruntime's QLinearMul and
QLinearAdd cost what the float hard-swish between its Q/DQ pair costs: no faster with u8, slower with
s8, in a probe). The fp32 files keep HARD_SWISH, which XNNPACK runs fused in float.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgekd.core.errors import ExportError

#: |Δ logits| / max |logits| the rewritten module may differ by in float32: summation order only
TOLERANCE = 1e-4


class Int8HardSwish(nn.Module):
    """hard-swish, ``x · relu6(x + 3) / 6`` (Howard et al. 2019, eq. 2), in the one order litert-torch
    keeps as MUL, ADD (RELU6 fused), MUL instead of fusing it into HARD_SWISH."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * (1.0 / 6.0)) * F.relu6(x + 3.0)


def _swap(module: nn.Module) -> int:
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Hardswish):
            setattr(module, name, Int8HardSwish())   # same attribute: the layer keeps its name and path
            count += 1
        else:
            count += _swap(child)
    return count


def int8_friendly(module: nn.Module, samples: np.ndarray, role: str) -> tuple[nn.Module, dict]:
    """(the module to quantize, export.json's note). A copy with the int8-friendly forms where the
    module has the ops they replace, else ``module`` itself. The copy must give the same float logits
    on ``samples`` (within ``TOLERANCE`` of their size), or the export stops."""
    rewritten = copy.deepcopy(module).eval()
    count = _swap(rewritten)
    if not count:
        return module, {"hardswish": 0}
    with torch.no_grad():
        x = torch.as_tensor(np.ascontiguousarray(samples[:64]), dtype=torch.float32)
        before, after = module(x), rewritten(x)
    drift = float((after - before).abs().max()) / max(float(before.abs().max()), 1e-6)
    if not drift <= TOLERANCE:
        raise ExportError(f"the {role} tflite-int8 model: writing {count} hard-swish as (x / 6) * relu6(x + 3) "
                          f"changed the fp32 logits by {drift:.2g} of their size (> {TOLERANCE:g})",
                          hint="a bug in edgekd's rewrite; --debug and report it")
    return rewritten, {"hardswish": count, "form": "(x / 6) * relu6(x + 3)", "fp32_drift": drift}
