"""Reference formulas the registered losses are held to, written out here rather than shipped in
the package (nothing in edgekd computes a loss through them)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature, alpha: float) -> torch.Tensor:
    """Soft-target knowledge distillation (Hinton, Vinyals & Dean, 2015, arXiv:1503.02531):
    ``alpha · CE(student, y) + (1 − alpha) · T² · KL(softmax(t/T) ‖ softmax(s/T))``, KL summed over
    the classes and averaged over the batch; ``alpha`` weighs the hard labels."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum() / len(targets)
    return alpha * F.cross_entropy(student_logits, targets) + (1 - alpha) * temperature ** 2 * kl
