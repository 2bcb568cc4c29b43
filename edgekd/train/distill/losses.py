"""Distillation losses: a registry of small ``nn.Module`` classes, each citing its paper.

timm's pattern for the table (``@register_loss("kd")``), torchdistill's for the entries: a
loss is a module, so it may own parameters (a feature adapter) that the fit loop hands to
the optimizer, the epoch checkpoint and DDP together with the student's. Each class says in
``needs`` what it takes from the teacher; the teacher side computes exactly that (once per
split, or every step when augmenting) and passes it in ``LossInputs.teacher``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.core.errors import ConfigError
from edgekd.core.registry import Registry
from edgekd.train.models.spec import parse_named
from edgekd.core.rules import Check
from edgekd.train.options import Temperature, Unit

# What a loss may ask the teacher for; ``train.teacher_outputs`` computes each kind: the logits,
# and the feature map of ``forward_features`` (timm's name: the last one before pooling).
TEACHER_OUTPUTS = ("logits", "features")
Weight = Annotated[float, Check(">= 0", lambda value: value >= 0)]
Epochs = Annotated[int, Check(">= 0", lambda value: value >= 0)]


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
    student_features: torch.Tensor | None = None     # forward_features of the student, for a loss that needs "features"

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

    @classmethod
    def unlabelled(cls, student_logits: torch.Tensor, teacher: dict[str, torch.Tensor],
                   student_features: torch.Tensor | None = None) -> "LossInputs":
        """A batch of a transfer set: no labels, so ``targets`` are the teacher's own top-1 classes
        (what a loss that splits on the target class, DKD, splits on; Noisy Student's hard pseudo-label)."""
        logits = teacher.get("logits")
        targets = logits.argmax(1) if logits is not None else student_logits.argmax(1).detach()
        return cls(student_logits, teacher, targets, None, 0.0, student_features)


class DistillationLoss(nn.Module):
    """A loss of the student against the teacher; ``forward(LossInputs)`` returns a scalar. Its
    options are its ``__init__``'s annotated keyword parameters (``--loss NAME:key=value``); those
    named in ``config_defaults`` default to the run's option of that name (``--temperature``): the
    run's configuration reads this, a loss never reads the configuration."""
    needs: tuple[str, ...] = ("logits",)
    config_defaults: tuple[str, ...] = ()

    def soft(self, batch: LossInputs) -> torch.Tensor:
        """The teacher's term alone, with its weight in the loss: all a transfer set's images, which
        have no labels, give (``--unlabelled``: the step's loss is ``loss(labelled batch) +
        soft(unlabelled batch)``, each a batch mean, the convention of FixMatch, Sohn et al. 2020,
        arXiv:2001.07685, and Noisy Student, Xie et al. 2020, arXiv:1911.04252). Every built-in loss
        has one; a loss of one's own without it works without a transfer set (``takes_unlabelled``)."""
        raise NotImplementedError(f"{type(self).__name__} has no soft(batch) for a transfer set")

    @classmethod
    def takes_unlabelled(cls) -> bool:
        return cls.soft is not DistillationLoss.soft

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the fit loop before epoch ``epoch`` (0-based) of ``epochs``: for a loss whose
        weight follows the schedule (a warm-up); a pure function of the epoch, so resuming is exact."""

    def fit_to(self, student: nn.Module, teacher: nn.Module, example: torch.Tensor) -> None:
        """Called once before training with the two models and a batch of inputs: a loss whose
        own layers depend on their shapes (a feature adapter) builds them here."""


LOSSES: Registry[type[DistillationLoss]] = Registry("loss", ConfigError)


def register_loss(name: str) -> Callable[[type[DistillationLoss]], type[DistillationLoss]]:
    """Class decorator: ``@register_loss("kd")`` puts the class in ``LOSSES`` under ``name``."""
    def add(cls: type[DistillationLoss]) -> type[DistillationLoss]:
        unknown = [kind for kind in cls.needs if kind not in TEACHER_OUTPUTS]
        if unknown:        # the author's mistake, found at import, not in the middle of a run
            raise ValueError(f"loss '{name}' needs {unknown} from the teacher; it can give {list(TEACHER_OUTPUTS)}")
        return LOSSES.register(name)(cls)
    return add


def logit_losses() -> str:
    """The registered losses that need the teacher's logits alone, for a hint:
    ``--loss dkd or --loss kd``."""
    return " or ".join(f"--loss {name}" for name in LOSSES if LOSSES.get(name).needs == ("logits",))


def build_loss(name: str, **options) -> DistillationLoss:
    """The registered loss ``name`` built with ``options``; an unknown name is a ConfigError
    naming the known ones and the closest."""
    return LOSSES.get(name)(**options)


def parse_loss(spec: str) -> tuple[type[DistillationLoss], dict]:
    """``NAME[:key=value,…]`` (``--loss``; ``NAME,key=value`` alike) as (the registered class, options
    typed by its annotations); an unknown name or option is one ConfigError naming the closest."""
    _, cls, options = parse_named(spec, LOSSES)
    return cls, options


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(t/T) ‖ softmax(s/T))``, batch-mean: the soft half of KD."""
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    return temperature ** 2 * soft


@register_loss("kd")
class KD(DistillationLoss):
    """Knowledge distillation from soft targets: Hinton, Vinyals & Dean (2015), "Distilling
    the Knowledge in a Neural Network", arXiv:1503.02531.

    ``alpha · CE(student, y) + (1 − alpha) · T² · KL(softmax(t/T) ‖ softmax(s/T))``, KL with
    batch-mean reduction; ``alpha`` weighs the hard labels — the convention of Keras' ``Distiller``
    example and torchdistill's ``KDLoss``. The T² factor keeps the soft-target gradients the same size
    as T changes (Hinton et al., section 2). In a run both default to its ``--temperature`` and
    ``--alpha``; the defaults here (T 4, alpha 0.1) are the same, for the loss used on its own."""
    needs = ("logits",)
    config_defaults = ("temperature", "alpha")

    def __init__(self, temperature: Temperature = 4.0, alpha: Unit = 0.1):
        super().__init__()
        self.temperature, self.alpha = temperature, alpha

    def forward(self, batch: LossInputs) -> torch.Tensor:
        return self.alpha * batch.cross_entropy() + self.soft(batch)

    def soft(self, batch: LossInputs) -> torch.Tensor:
        return (1.0 - self.alpha) * soft_target_loss(batch.student_logits, batch.teacher["logits"], self.temperature)


def decoupled_parts(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                    temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD) of Zhao et al. 2022 (arXiv:2203.08679, eq. 1-7), each ``T² · KL`` batch-mean as
    the authors' code (mdistiller ``dkd_loss``): TCKD between the binary distributions
    (p_target, 1 − p_target), NCKD between the distributions over the other classes alone."""
    target = F.one_hot(targets, student_logits.shape[1]).bool()
    log_s, log_t = F.log_softmax(student_logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1)

    def binary(log_p: torch.Tensor) -> torch.Tensor:       # log (p_t, 1 - p_t), stable for p_t near 1
        log_target = log_p.masked_select(target).unsqueeze(1)
        log_rest = torch.logsumexp(log_p.masked_fill(target, float("-inf")), dim=1, keepdim=True)
        return torch.cat([log_target, log_rest], dim=1)

    def others(logits: torch.Tensor) -> torch.Tensor:     # log-softmax over the non-target classes
        return F.log_softmax((logits / temperature).masked_fill(target, float("-inf")), 1).masked_fill(target, 0.0)

    def kl(log_p_teacher: torch.Tensor, log_p_student: torch.Tensor) -> torch.Tensor:
        return temperature ** 2 * (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum() / len(targets)

    return kl(binary(log_t), binary(log_s)), kl(others(teacher_logits), others(student_logits))


@register_loss("dkd")
class DKD(DistillationLoss):
    """Decoupled knowledge distillation: Zhao, Cui, Song, Qiu & Liang (2022), "Decoupled Knowledge
    Distillation", arXiv:2203.08679.

    ``ce_weight · CE(student, y) + w(epoch) · (alpha · TCKD + beta · NCKD)``: KD split into its
    target-class part and its non-target part, which KD weighs by the teacher's (1 − p_target),
    suppressing it where the teacher is confident. The defaults are the paper's CIFAR-100 ones
    (alpha 1, beta 8, T 4, w rising linearly to 1 over the first 20 epochs; T defaults to the run's
    ``--temperature``, 4). For a mixed batch (mixup/cutmix) the target class is each sample's own label."""
    needs = ("logits",)
    config_defaults = ("temperature",)

    def __init__(self, alpha: Weight = 1.0, beta: Weight = 8.0, temperature: Temperature = 4.0,
                 warmup: Epochs = 20, ce_weight: Weight = 1.0):
        super().__init__()
        self.alpha, self.beta, self.temperature, self.warmup, self.ce_weight = alpha, beta, temperature, warmup, ce_weight
        self.ramp = 1.0

    def start_epoch(self, epoch: int, epochs: int) -> None:
        # the authors' min(epoch / warmup, 1) with 1-based epochs
        self.ramp = min((epoch + 1) / self.warmup, 1.0) if self.warmup else 1.0

    def forward(self, batch: LossInputs) -> torch.Tensor:
        return self.ce_weight * batch.cross_entropy() + self.soft(batch)

    def soft(self, batch: LossInputs) -> torch.Tensor:
        tckd, nckd = decoupled_parts(batch.student_logits, batch.teacher["logits"], batch.targets, self.temperature)
        return self.ramp * (self.alpha * tckd + self.beta * nckd)


def feature_shape(model: nn.Module, example: torch.Tensor, role: str) -> torch.Size:
    """The shape of ``model.forward_features`` on ``example``, in eval mode (a probe must not move
    BatchNorm statistics); a model without ``forward_features`` is a ConfigError saying so."""
    if not callable(getattr(model, "forward_features", None)):
        raise ConfigError(f"a feature loss needs the {role}'s intermediate features, and the {role} "
                          f"({type(model).__name__}) has no forward_features",
                          hint="give the model forward_features(x) and forward_head(features) (timm's names), "
                               f"or use {logit_losses()}")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        shape = getattr(model, "forward_features")(example).shape     # nn.Module types it a tensor
    model.train(was_training)
    return shape


def match_features(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two feature maps at one size: average-pooled to the smaller height and width, or both
    to vectors where one of them is (an MLP's features)."""
    if student.dim() != 4 or teacher.dim() != 4:
        s, t = (f.mean(dim=(2, 3)) if f.dim() == 4 else f.flatten(1) for f in (student, teacher))
        return s, t
    size = (min(student.shape[2], teacher.shape[2]), min(student.shape[3], teacher.shape[3]))
    s, t = (f if tuple(f.shape[2:]) == size else F.adaptive_avg_pool2d(f, size) for f in (student, teacher))
    return s, t


@register_loss("fitnet")
class FitNet(DistillationLoss):
    """Hints: Romero, Ballas, Kahou, Chassang, Gatta & Bengio (2015), "FitNets: Hints for Thin Deep
    Nets", arXiv:1412.6550.

    ``ce_weight · CE(student, y) + feat_weight · MSE(adapter(f_s), f_t)`` on the feature maps of
    ``forward_features`` (the hint: the teacher's; the guided layer: the student's), the adapter a
    learned 1×1 convolution + BatchNorm from the student's channels to the teacher's (a Linear for
    vector features), spatial sizes average-pooled to the smaller. Trained in one stage with the
    labels, with mdistiller's weights (CE 1, features 100) rather than the paper's two stages."""
    needs = ("features",)

    def __init__(self, feat_weight: Weight = 100.0, ce_weight: Weight = 1.0):
        super().__init__()
        self.feat_weight, self.ce_weight = feat_weight, ce_weight
        self.adapter: nn.Module | None = None

    def fit_to(self, student: nn.Module, teacher: nn.Module, example: torch.Tensor) -> None:
        student_shape, teacher_shape = feature_shape(student, example, "student"), feature_shape(teacher, example, "teacher")
        if len(student_shape) == 4 and len(teacher_shape) == 4:
            self.adapter = nn.Sequential(nn.Conv2d(student_shape[1], teacher_shape[1], 1, bias=False),
                                         nn.BatchNorm2d(teacher_shape[1]))
        else:
            self.adapter = nn.Linear(student_shape[1], teacher_shape[1])
        self.adapter.to(example.device)

    def forward(self, batch: LossInputs) -> torch.Tensor:
        return self.ce_weight * batch.cross_entropy() + self.soft(batch)

    def soft(self, batch: LossInputs) -> torch.Tensor:
        if self.adapter is None:
            raise RuntimeError("FitNet.fit_to(student, teacher, example) builds the adapter before training")
        assert batch.student_features is not None       # needs "features": the Trainee passes the student's
        student, teacher = match_features(batch.student_features, batch.teacher["features"])
        return self.feat_weight * F.mse_loss(self.adapter(student), teacher)
