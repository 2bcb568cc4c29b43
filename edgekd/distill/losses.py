"""Distillation losses, each a small documented function citing its source."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float, alpha: float) -> torch.Tensor:
    """Soft-target knowledge distillation (Hinton, Vinyals & Dean, 2015, arXiv:1503.02531).

    ``alpha · CE(student, y) + (1 − alpha) · T² · KL(softmax(t/T) ‖ softmax(s/T))``

    KL uses batch-mean reduction, and ``alpha`` weighs the hard labels — the convention
    of Keras' ``Distiller`` example and torchdistill's ``KDLoss``. The T² factor keeps the
    soft-target gradients the same size as T changes (Hinton et al., section 2).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    hard = F.cross_entropy(student_logits, targets)
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    return alpha * hard + (1.0 - alpha) * temperature ** 2 * soft
