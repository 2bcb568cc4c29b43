"""The fit loop: one model, one data set, plain CE or a distillation loss against the teacher.

Design choices that matter for speed and reproducibility:
- Data lives in one tensor, raw integers standardised per batch (``samples.Samples``); batches
  are index slices, augmented as whole tensors (``augment``): no per-sample Python work. The
  steps themselves, with a transfer set's unlabelled rows beside the labelled ones, are
  ``epoch.EpochLoop``'s.
- The teacher's outputs that the loss needs (logits) are computed once and sliced per
  batch; the teacher runs every step only when augmentation changes the inputs.
- The step's precision and memory format (``fastpath.StepMode``): bf16 autocast where the hardware
  has it natively and it pays for the model (fp16 with a gradient scaler on an older GPU),
  channels_last for convolutional models; the loss itself always in fp32.
- On CUDA: data copied once to the GPU from pinned memory, and no per-step host synchronisation
  (loss and accuracy are summed on the device and read once per epoch).
- Per-epoch validation (the curves) scores the rows it is given; the caller gives a fixed
  subsample (``trio.CURVE_ROWS``) and scores the final models on everything.
- The learning rate is a pure function of the epoch (``optim.learning_rate``) and each epoch's
  shuffle and augmentation are seeded from (seed, epoch), so a run resumed from an epoch checkpoint is bit-identical
  to one that never stopped.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from edgekd.core.errors import ConfigError
from edgekd.train.distill.checkpoints import EpochCheckpoint, resume
from edgekd.train.distill.distributed import SINGLE, Ranks, Rows
from edgekd.train.distill.epoch import EpochLoop
from edgekd.train.distill.fastpath import StepMode, step_mode
from edgekd.train.distill.inference import accuracy
from edgekd.train.distill.losses import DistillationLoss, LossInputs
from edgekd.train.distill.optim import build_optimizer, learning_rate
from edgekd.train.distill.samples import Samples


@dataclass
class Transfer:
    """A transfer set in the student's fit: unlabelled samples, ``ratio`` of them beside each labelled
    one in a step, and the teacher's outputs on them, cached like ``KDTarget``'s (one block per view
    with ``views``), or None when the live teacher runs on every (augmented) batch."""
    x: Samples | torch.Tensor
    ratio: int
    outputs: dict[str, torch.Tensor] | None = None
    views: list[dict[str, torch.Tensor]] | None = None


@dataclass
class KDTarget:
    """What the student learns from: a distillation loss and the teacher's outputs it needs,
    cached, or a live teacher run on every (augmented) batch."""
    loss: DistillationLoss
    outputs: dict[str, torch.Tensor] | None = None   # cached: kind → one row per training sample
    teacher: nn.Module | None = None             # run every step (augmentation on)
    # --teacher-views: the geometric draws of each cached view (one row per sample); ``outputs``
    # then hold one block of rows per view, and epoch e trains on view e mod K
    views: list[dict[str, torch.Tensor]] | None = None
    transfer: Transfer | None = None     # --unlabelled: the soft term on images without labels too


@dataclass
class FitSettings:
    """How one model trains. ``augment`` names batch augmentations (``augment.AUGMENTATIONS``),
    ``fill`` (per channel) is where a raw 0 lands after standardisation, the border of shifted
    images; a ``validation`` set (x, y), when given, is scored after every epoch into the history."""
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    augment: tuple[str, ...] = ()
    device: str = "cpu"
    fill: torch.Tensor | None = None
    validation: tuple[Rows, torch.Tensor] | None = None
    optimizer: str = "adam"         # optim.OPTIMIZERS
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    compile: bool = False           # torch.compile the training step (model + loss)
    precision: str = "auto"         # options.PRECISIONS
    memory_format: str = "auto"     # options.MEMORY_FORMATS
    # at least this many steps per epoch: the simple twin of a student with a transfer set takes the
    # student's (its labelled rows cycling), so it gets as many labelled batches, not a third of them
    min_steps: int = 0
    clip_grad: float = 0.0          # the gradient's norm at most this (0: off); DistillConfig's default turns it on


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_second: float = 0.0
    mode: StepMode = field(default_factory=StepMode)
    data_wait: float = 0.0         # the share of the time spent making batches (gather, standardise, augment)
    epoch_seconds: list[float] = field(default_factory=list)    # this call's epochs (a resumed stage's latter ones)

    def compile_seconds(self) -> float | None:
        """How much longer the first epoch took than the median of the others: with ``--compile``, the
        compilation (None with fewer than two epochs)."""
        if len(self.epoch_seconds) < 2:
            return None
        return self.epoch_seconds[0] - statistics.median(self.epoch_seconds[1:])


class HardLabels(nn.Module):
    """Cross-entropy on the labels alone: the simple model's and the teacher's loss."""
    needs: tuple[str, ...] = ()

    def forward(self, batch: LossInputs) -> torch.Tensor:
        return batch.cross_entropy()


class Trainee(nn.Module):
    """The model and its loss in one module, so that the optimizer, the epoch checkpoint and
    DDP (which all-reduces the gradients of every parameter of the module it wraps) carry a
    loss's own parameters (a feature adapter) together with the model's."""

    def __init__(self, model: nn.Module, loss: DistillationLoss | HardLabels, label_smoothing: float = 0.0,
                 mode: StepMode = StepMode(), device: str = "cpu"):
        super().__init__()
        self.model, self.loss, self.label_smoothing = model, loss, label_smoothing
        self.mode, self.device = mode, device

    def forward(self, x: torch.Tensor, teacher: dict[str, torch.Tensor], targets: torch.Tensor,
                mixed: tuple[torch.Tensor, float] | None = None,
                transfer: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits of the labelled rows, their loss, the soft term on the ``transfer`` rows (images and
        the teacher's outputs on them): 0 without). Both sets go through the model as one batch, so
        BatchNorm takes its statistics over all of them. The model runs in the step's precision, the
        loss on its outputs cast to fp32."""
        labelled = len(x)
        if transfer is not None:
            x = torch.cat([x, transfer[0]])
        features = None
        with self.mode.autocast(self.device):
            if "features" in self.loss.needs:     # a feature loss sees the student's features too
                features = getattr(self.model, "forward_features")(x)     # a feature model's own methods
                logits = getattr(self.model, "forward_head")(features)
            else:
                logits = self.model(x)
        logits, features = logits.float(), features.float() if features is not None else None
        mine = features[:labelled] if features is not None else None
        loss = self.loss(LossInputs(logits[:labelled], teacher, targets, mixed, self.label_smoothing, mine))
        if transfer is None:
            return logits, loss, loss.new_zeros(())
        theirs = features[labelled:] if features is not None else None
        assert isinstance(self.loss, DistillationLoss)       # a transfer set comes with a distillation loss
        return logits[:labelled], loss, self.loss.soft(LossInputs.unlabelled(logits[labelled:], transfer[1], theirs))

    def parts(self) -> dict[str, nn.Module]:
        """What an epoch checkpoint keeps, by key prefix: the model, and a loss that has state."""
        return {"model": self.model, **({"loss": self.loss} if self.loss.state_dict() else {})}


def fit(model: nn.Module, x, y: torch.Tensor, settings: FitSettings, *,
        kd: KDTarget | None = None, checkpoint: EpochCheckpoint | None = None,
        on_epoch: Callable[[dict], None] | None = None, ranks: Ranks = SINGLE) -> FitResult:
    """Train ``model`` in place on ``x`` (a float32 tensor, or ``Samples`` standardised per batch)
    with the settings' optimizer and schedule; CE, or ``kd.loss`` when ``kd`` (the loss's own
    parameters train too). Under torchrun (``ranks``) every rank trains on its slice of each
    batch through DDP. The step's mode is the interrupted run's, resumed, else chosen for ``model``.
    ``on_epoch`` hears each epoch's history record with the epoch's ``samples_per_second``."""
    # rank 0's choice for every rank: ranks on unlike hardware must still train alike
    mode = ranks.on_main(lambda: (checkpoint.mode(settings.device) if checkpoint else None)
                         or step_mode(model, settings.device, settings.precision, settings.memory_format))
    mode.lay_out(model, training=True)        # in place: the optimizer's parameters stay these
    try:
        return _train(model, x, y, settings, kd, checkpoint, on_epoch, ranks, mode)
    finally:      # stopped or not, the model is left in the layout export and the checkpoints expect
        model.eval()
        mode.lay_out(model, training=False)


def _train(model: nn.Module, x, y: torch.Tensor, settings: FitSettings, kd: KDTarget | None,
           checkpoint: EpochCheckpoint | None, on_epoch: Callable[[dict], None] | None, ranks: Ranks,
           mode: StepMode) -> FitResult:
    """``fit``'s epochs, from the checkpoint's on, in ``mode``."""
    trainee = Trainee(model, kd.loss.to(settings.device) if kd else HardLabels(), settings.label_smoothing,
                      mode, settings.device)
    optimizer = build_optimizer(settings.optimizer, trainee, settings.lr, settings.weight_decay)
    start_epoch, history = resume(trainee, optimizer, checkpoint, settings.epochs, ranks)
    loop = EpochLoop(ranks.wrap(trainee), optimizer, settings, kd, ranks, mode)
    started, seen, waited = time.perf_counter(), 0, 0.0
    epoch_seconds: list[float] = []
    for epoch in range(start_epoch, settings.epochs):
        began = time.perf_counter()
        lr = learning_rate(settings.lr, epoch, settings.epochs, settings.warmup_epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if kd:
            kd.loss.start_epoch(epoch, settings.epochs)
        trainee.train()
        totals = loop.run(epoch, x, y)
        _require_finite(totals.loss / totals.labelled, epoch + 1, settings, ranks)
        seen, waited = seen + totals.samples, waited + totals.waited
        record = {"epoch": epoch + 1, "loss": totals.loss / totals.labelled,
                  "train_accuracy": totals.correct / totals.labelled}
        if settings.validation is not None:
            record["val_accuracy"] = accuracy(model, *settings.validation, ranks)
        history.append(record)
        if checkpoint:
            checkpoint.save(trainee, optimizer, epoch + 1, history, mode)
        epoch_seconds.append(time.perf_counter() - began)
        if on_epoch:       # its speed beside the record, not in the history: a resumed run repeats that exactly
            on_epoch({**record, "samples_per_second": totals.samples / max(epoch_seconds[-1], 1e-9)})
    seconds = time.perf_counter() - started
    return FitResult(history, seconds, seen / seconds if seconds > 0 else 0.0, mode,
                     waited / seconds if seconds > 0 else 0.0, epoch_seconds)


class NonFiniteLoss(ConfigError):
    """Training diverged; ``fit`` knows the epoch, its caller adds the role and split."""


def _require_finite(loss: float, epoch: int, settings: FitSettings, ranks: Ranks) -> None:
    """Stop at the first epoch whose loss is NaN or infinite: every later epoch would train on
    NaN weights, and the run would end with NaN accuracies as if it had worked."""
    if math.isfinite(loss):
        return
    error = NonFiniteLoss(f"the training loss is {loss} at epoch {epoch} of {settings.epochs}",
                          hint=f"lower --lr (this run: {settings.lr:g}) or check the data for extreme values, "
                               "then run again with --force (it discards the stopped run)")
    error.printed_elsewhere = not ranks.is_main     # every rank sums the same loss: rank 0 alone says so
    raise error
