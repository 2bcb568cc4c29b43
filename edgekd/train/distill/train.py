"""The fit loop: one model, one data set, plain CE or a distillation loss against the teacher.

Design choices that matter for speed and reproducibility:
- Data lives in one tensor, raw integers standardised per batch (``samples.Samples``); batches
  are index slices, augmented as whole tensors (``augment``): no per-sample Python work.
- The teacher's outputs that the loss needs (logits) are computed once and sliced per
  batch; the teacher runs every step only when augmentation changes the inputs.
- On CUDA: mixed precision (bf16 where the GPU has it, else fp16 with a gradient scaler),
  data copied once to the GPU from pinned memory, and no per-step host synchronisation
  (loss and accuracy are summed on the device and read once per epoch).
- The learning rate is a pure function of the epoch (``optim.learning_rate``) and each epoch's
  shuffle and augmentation are seeded from (seed, epoch), so a run resumed from an epoch checkpoint is bit-identical
  to one that never stopped.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from edgekd.core.errors import ConfigError
from edgekd.train.distill.augment import AugmentedView, Augmenter
from edgekd.train.distill.checkpoints import EpochCheckpoint, resume
from edgekd.train.distill.distributed import SINGLE, Ranks, Rows
from edgekd.train.distill.losses import DistillationLoss, LossInputs
from edgekd.train.distill.optim import build_optimizer, learning_rate

EVAL_BATCH = 256       # rows per inference call: 1024 took 4x the activation memory (300 MB, ResNet-8 at 28x28) and 2x the time


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


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_second: float = 0.0
    precision: str = "fp32"
    data_wait: float = 0.0         # the share of the time spent making batches (gather, standardise, augment)


def mixed_precision(device: str) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """(autocast dtype, gradient scaler): bf16 on a GPU that has it, else fp16, whose small
    range needs the scaler; nothing on the CPU, whose path stays plain fp32."""
    if not device.startswith("cuda"):
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


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


class HardLabels(nn.Module):
    """Cross-entropy on the labels alone: the simple model's and the teacher's loss."""
    needs: tuple[str, ...] = ()

    def forward(self, batch: LossInputs) -> torch.Tensor:
        return batch.cross_entropy()


class Trainee(nn.Module):
    """The model and its loss in one module, so that the optimizer, the epoch checkpoint and
    DDP (which all-reduces the gradients of every parameter of the module it wraps) carry a
    loss's own parameters (a feature adapter) together with the model's."""

    def __init__(self, model: nn.Module, loss: DistillationLoss | HardLabels, label_smoothing: float = 0.0):
        super().__init__()
        self.model, self.loss, self.label_smoothing = model, loss, label_smoothing

    def forward(self, x: torch.Tensor, teacher: dict[str, torch.Tensor], targets: torch.Tensor,
                mixed: tuple[torch.Tensor, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = None
        if "features" in self.loss.needs:     # a feature loss sees the student's features too
            features = getattr(self.model, "forward_features")(x)     # a feature model's own methods
            logits = getattr(self.model, "forward_head")(features)
        else:
            logits = self.model(x)
        return logits, self.loss(LossInputs(logits, teacher, targets, mixed, self.label_smoothing, features))

    def parts(self) -> dict[str, nn.Module]:
        """What an epoch checkpoint keeps, by key prefix: the model, and a loss that has state."""
        return {"model": self.model, **({"loss": self.loss} if self.loss.state_dict() else {})}


def fit(model: nn.Module, x, y: torch.Tensor, settings: FitSettings, *,
        kd: KDTarget | None = None, checkpoint: EpochCheckpoint | None = None,
        on_epoch: Callable[[dict], None] | None = None, ranks: Ranks = SINGLE) -> FitResult:
    """Train ``model`` in place on ``x`` (a float32 tensor, or ``Samples`` standardised per batch)
    with the settings' optimizer and schedule; CE, or ``kd.loss`` when ``kd`` (the loss's own
    parameters train too). Under torchrun (``ranks``) every rank trains on its slice of each
    batch through DDP."""
    trainee = Trainee(model, kd.loss.to(settings.device) if kd else HardLabels(), settings.label_smoothing)
    optimizer = build_optimizer(settings.optimizer, trainee, settings.lr, settings.weight_decay)
    start_epoch, history = resume(trainee, optimizer, checkpoint, settings.epochs, ranks)
    loop = EpochLoop(ranks.wrap(trainee), optimizer, settings, kd, ranks)
    started, seen, waited = time.perf_counter(), 0, 0.0
    for epoch in range(start_epoch, settings.epochs):
        lr = learning_rate(settings.lr, epoch, settings.epochs, settings.warmup_epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if kd:
            kd.loss.start_epoch(epoch, settings.epochs)
        trainee.train()
        total_loss, correct, wait = loop.run(epoch, x, y)
        _require_finite(total_loss / len(x), epoch + 1, settings, ranks)
        seen, waited = seen + len(x), waited + wait
        record = {"epoch": epoch + 1, "loss": total_loss / len(x), "train_accuracy": correct / len(x)}
        if settings.validation is not None:
            record["val_accuracy"] = accuracy(model, *settings.validation, ranks)
        history.append(record)
        if checkpoint:
            checkpoint.save(trainee, optimizer, epoch + 1, history)
        if on_epoch:
            on_epoch(record)
    seconds = time.perf_counter() - started
    model.eval()
    names = {torch.bfloat16: "bf16", torch.float16: "fp16"}
    precision = names.get(loop.amp_dtype, "fp32") if loop.amp_dtype else "fp32"
    return FitResult(history, seconds, seen / seconds if seconds > 0 else 0.0, precision,
                     waited / seconds if seconds > 0 else 0.0)


class EpochLoop:
    """One epoch of steps: shuffle seeded from (seed, epoch), batches gathered, standardised and
    augmented, the teacher's outputs (cached rows, or the live teacher on the augmented batch),
    forward, backward, step. Loss and accuracy are summed on the device and read once."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, settings: FitSettings,
                 kd: KDTarget | None, ranks: Ranks):
        # compiled: the module (its parameters) stays the one the optimizer and checkpoint hold
        self.net = torch.compile(net) if settings.compile else net
        self.optimizer, self.settings, self.kd, self.ranks = optimizer, settings, kd, ranks
        self.amp_dtype, self.scaler = mixed_precision(settings.device)
        fill = settings.fill if settings.fill is not None else torch.zeros(1)
        self.augment = Augmenter(settings.augment, fill.to(settings.device)) if settings.augment else None

    def run(self, epoch: int, x, y: torch.Tensor) -> tuple[float, int, float]:
        """(summed loss, correct predictions, seconds spent making batches) of one epoch."""
        settings, ranks = self.settings, self.ranks
        autocast = torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        generator = torch.Generator().manual_seed(settings.seed * 100_003 + epoch)
        order = torch.randperm(len(x), generator=generator).to(y.device, non_blocking=True)
        total_loss, correct, waited = 0.0, 0, 0.0
        for begin in range(0, len(x), settings.batch_size):
            made = time.perf_counter()
            batch = order[begin:begin + settings.batch_size]
            part, real, weight = ranks.split_batch(len(batch))
            index = batch[part]
            xb, yb, mixed = x[index], y[index], None
            view = self._view(epoch)
            if view is not None:
                xb = self._augment_as_view(xb, index, view)
            elif self.augment is not None:
                xb, mixed = self.augment(xb, yb, generator)
            waited += time.perf_counter() - made
            with autocast:
                logits, loss = self.net(xb, self._teacher_batch(index, xb, view), yb, mixed)
            self.optimizer.zero_grad(set_to_none=True)
            _step(loss * weight if ranks.distributed else loss, self.optimizer, self.scaler)
            # summed as tensors (float64: the same numbers as Python floats), read once per epoch
            total_loss += loss.detach().double() * real
            correct += (logits[:real].argmax(1) == yb[:real]).sum()
        summed_loss, summed_correct = ranks.sum([float(total_loss), int(correct)], settings.device)
        return summed_loss, int(summed_correct), waited

    def _augment_as_view(self, xb: torch.Tensor, index: torch.Tensor, view: int) -> torch.Tensor:
        """The batch as cached view ``view`` drew it (a view exists only with its augmenter and draws)."""
        assert self.augment is not None and self.kd is not None and self.kd.views is not None
        return self.augment.geometric(xb, {name: draws[index] for name, draws in self.kd.views[view].items()})

    def _view(self, epoch: int) -> int | None:
        """Which cached augmented view (``--teacher-views``) this epoch trains on, if any."""
        views = self.kd.views if self.kd is not None else None
        return epoch % len(views) if views else None

    def _teacher_batch(self, index: torch.Tensor, xb: torch.Tensor, view: int | None) -> dict[str, torch.Tensor]:
        """Rows of the cache (of this epoch's view), or the live teacher on the very batch the student sees."""
        kd = self.kd
        if kd is None:
            return {}
        if kd.teacher is not None and view is None:
            return teacher_outputs(kd.teacher, xb, kd.loss.needs)
        assert kd.outputs is not None           # no live teacher: its outputs were cached
        if view is not None:
            return {kind: rows[view][index] for kind, rows in kd.outputs.items()}
        return {kind: rows[index] for kind, rows in kd.outputs.items()}


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


def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)        # skips the step when fp16 gradients overflowed
    scaler.update()
