"""Distillation losses: a registry of small ``nn.Module`` classes, each citing its paper.

timm's pattern for the table (``@register_loss("kd")``), torchdistill's for the entries: a
loss is a module, so it may own parameters (a feature adapter) that the fit loop hands to
the optimizer, the epoch checkpoint and DDP together with the student's. Each class says in
``needs`` what it takes from the teacher; the teacher side computes exactly that (once per
split, or every step when augmenting) and passes it in ``LossInputs.teacher``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DistillConfig
from ..errors import ConfigError
from ..registry import Registry

# What a loss may ask the teacher for; ``train.teacher_outputs`` computes each kind. A feature
# loss adds its kind (named intermediate features) here and there.
TEACHER_OUTPUTS = ("logits",)


@dataclass
class LossInputs:
    """One batch as a loss sees it. Every loss reads its hard-label term through
    ``cross_entropy``, so label smoothing and mixed batches apply to all of them alike."""
    student_logits: torch.Tensor
    teacher: dict[str, torch.Tensor]     # the kinds the loss ``needs``, one row per sample of the batch
    targets: torch.Tensor                # class indices
    # mixup/cutmix: (the labels of the samples each one was mixed with, the weight of ``targets``)
    mixed: tuple[torch.Tensor, float] | None = None
    label_smoothing: float = 0.0

    def cross_entropy(self) -> torch.Tensor:
        """CE of the student against the labels: smoothed (Szegedy et al. 2016, arXiv:1512.00567,
        section 7) and, for a mixed batch, the same mix of the two labels' CE as of the inputs
        (mixup: Zhang et al. 2018, arXiv:1710.09412; CutMix: Yun et al. 2019, arXiv:1905.04899)."""
        ce = F.cross_entropy(self.student_logits, self.targets, label_smoothing=self.label_smoothing)
        if self.mixed is None:
            return ce
        partner, weight = self.mixed
        return weight * ce + (1.0 - weight) * F.cross_entropy(self.student_logits, partner,
                                                               label_smoothing=self.label_smoothing)


class DistillationLoss(nn.Module):
    """A loss of the student against the teacher; ``forward(LossInputs)`` returns a scalar."""
    needs: tuple[str, ...] = ("logits",)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the fit loop before epoch ``epoch`` (0-based) of ``epochs``: for a loss whose
        weight follows the schedule (a warm-up); a pure function of the epoch, so resuming is exact."""


class LossRegistry(Registry[type[DistillationLoss]]):
    def unregister(self, name: str) -> None:
        """Remove a loss (a plug-in's or a test's own) registered under ``name``."""
        self._entries.pop(name)


LOSSES = LossRegistry("loss", ConfigError)


def register_loss(name: str) -> Callable[[type[DistillationLoss]], type[DistillationLoss]]:
    """Class decorator: ``@register_loss("kd")`` puts the class in ``LOSSES`` under ``name``."""
    def add(cls: type[DistillationLoss]) -> type[DistillationLoss]:
        unknown = [kind for kind in cls.needs if kind not in TEACHER_OUTPUTS]
        if unknown:        # the author's mistake, found at import, not in the middle of a run
            raise ValueError(f"loss '{name}' needs {unknown} from the teacher; it can give {list(TEACHER_OUTPUTS)}")
        return LOSSES.register(name)(cls)
    return add


def build_loss(name: str, **options) -> DistillationLoss:
    """The registered loss ``name`` built with ``options``; an unknown name is a ConfigError
    naming the known ones and the closest."""
    return LOSSES.get(name)(**options)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
            temperature: float, alpha: float) -> torch.Tensor:
    """Soft-target knowledge distillation (Hinton, Vinyals & Dean, 2015, arXiv:1503.02531).

    ``alpha · CE(student, y) + (1 − alpha) · T² · KL(softmax(t/T) ‖ softmax(s/T))``

    KL uses batch-mean reduction, and ``alpha`` weighs the hard labels — the convention
    of Keras' ``Distiller`` example and torchdistill's ``KDLoss``. The T² factor keeps the
    soft-target gradients the same size as T changes (Hinton et al., section 2).
    """
    check_kd_options(temperature, alpha)
    hard = F.cross_entropy(student_logits, targets)
    return alpha * hard + (1.0 - alpha) * soft_target_loss(student_logits, teacher_logits, temperature)


def check_kd_options(temperature: float, alpha: float) -> None:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(t/T) ‖ softmax(s/T))``, batch-mean: the soft half of ``kd_loss``."""
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    return temperature ** 2 * soft


@register_loss("kd")
class KD(DistillationLoss):
    """Knowledge distillation from soft targets: Hinton, Vinyals & Dean (2015), "Distilling
    the Knowledge in a Neural Network", arXiv:1503.02531.

    ``alpha · CE(student, y) + (1 − alpha) · T² · KL(softmax(t/T) ‖ softmax(s/T))``, KL with
    batch-mean reduction; ``alpha`` weighs the hard labels (see ``kd_loss``)."""
    needs = ("logits",)

    def __init__(self, temperature: float = DistillConfig.temperature, alpha: float = DistillConfig.alpha):
        super().__init__()
        check_kd_options(temperature, alpha)
        self.temperature, self.alpha = temperature, alpha

    def forward(self, batch: LossInputs) -> torch.Tensor:
        soft = soft_target_loss(batch.student_logits, batch.teacher["logits"], self.temperature)
        return self.alpha * batch.cross_entropy() + (1.0 - self.alpha) * soft
