"""The trained models at work: logits (or feature maps) of every row, in eval mode and in blocks;
the teacher's outputs that a loss needs, cached once or per augmented view; accuracy."""
from __future__ import annotations

import torch
from torch import nn

from edgekd.train.distill.augment import AugmentedView, Augmenter
from edgekd.train.distill.distributed import SINGLE, Ranks, Rows

EVAL_BATCH = 256       # rows per inference call: 1024 took 4x the activation memory (300 MB, ResNet-8 at 28x28) and 2x the time


def predict_logits(model: nn.Module, x: Rows, ranks: Ranks = SINGLE,
                   output: str = "logits") -> torch.Tensor:
    """Logits (or, ``output="features"``, the ``forward_features`` maps) of every row of ``x``, in
    eval mode; under torchrun each rank computes a block and all gather."""
    model.eval()
    call = getattr(model, "forward_features") if output == "features" else model   # nn.Module types it a tensor

    def rows(part: Rows) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([call(part[i:i + EVAL_BATCH]) for i in range(0, len(part), EVAL_BATCH)])

    return ranks.map_rows(rows, x)


def teacher_outputs(teacher: nn.Module, x: Rows, needs: tuple[str, ...],
                    ranks: Ranks = SINGLE) -> dict[str, torch.Tensor]:
    """The teacher's outputs a loss ``needs`` for every row of ``x``, by kind (``losses.TEACHER_OUTPUTS``)."""
    return {kind: predict_logits(teacher, x, ranks, kind) for kind in needs}


def cached_views(teacher: nn.Module, x, augmenter: Augmenter, count: int, generator: torch.Generator,
                 needs: tuple[str, ...], ranks: Ranks = SINGLE) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """``count`` augmented views of every row of ``x`` (the augmenter's geometric draws, one row per
    sample, on ``x``'s device) and the teacher's outputs for each, stacked view by view
    (``KDTarget.views`` and ``outputs``)."""
    device = x[:1].device
    views = [{name: draws.to(device) for name, draws in augmenter.draw(len(x), tuple(x.shape[1:]), generator).items()}
             for _ in range(count)]
    per_view = [teacher_outputs(teacher, AugmentedView(x, augmenter, view), needs, ranks) for view in views]
    return views, {kind: torch.stack([outputs[kind] for outputs in per_view]) for kind in needs}


def accuracy(model: nn.Module, x: Rows, y: torch.Tensor, ranks: Ranks = SINGLE) -> float:
    return float((predict_logits(model, x, ranks).argmax(1) == y).float().mean())
