"""One epoch of training steps (``EpochLoop``): the batches of the labelled rows and, with a transfer
set (``--unlabelled``), of the unlabelled ones beside them, the teacher's outputs for each, forward,
backward, step.

A step takes ``batch_size`` labelled rows and ``ratio × batch_size`` unlabelled ones; an epoch is one
pass over whichever of the two takes more steps, the other set cycling through fresh permutations
(every one of its batches full). Each set has its own generator seeded from (seed, epoch), so a
resumed epoch repeats its batches and augmentations exactly; under torchrun every rank takes its
slice of both batches.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from edgekd.train.distill.augment import Augmenter
from edgekd.train.distill.distributed import Ranks
from edgekd.train.distill.fastpath import StepMode, step_mode
from edgekd.train.distill.inference import teacher_outputs
from edgekd.train.distill.optim import ordered_parameters

if TYPE_CHECKING:      # train.py runs this loop: its types only
    from edgekd.train.distill.train import FitSettings, KDTarget, Transfer

TRANSFER_STREAM = 2**40        # the transfer set's generator: apart from the labelled rows' (seed, epoch) stream


@dataclass
class EpochTotals:
    """An epoch summed over the ranks: loss and correct predictions of the labelled rows, how many
    labelled rows and how many rows in all (unlabelled too), and the seconds spent making batches."""
    loss: float
    correct: int
    labelled: int
    samples: int
    waited: float


def epoch_steps(labelled: int, batch_size: int, transfer: Transfer | None, least: int = 0) -> int:
    """Steps in an epoch: one pass over the labelled rows, or over the transfer set at ``ratio``
    times the batch size, whichever takes more, and at least ``least``."""
    steps = max(math.ceil(labelled / batch_size), least)
    if transfer is None:
        return steps
    return max(steps, math.ceil(len(transfer.x) / (batch_size * transfer.ratio)))


def batch_order(rows: int, batch_size: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """The row order of ``steps`` batches of ``batch_size`` from ``rows`` rows: one permutation when one
    pass takes the steps (its last batch may be short), else permutations one after another, cut
    where the steps end."""
    total = rows if math.ceil(rows / batch_size) >= steps else steps * batch_size
    return torch.cat([torch.randperm(rows, generator=generator) for _ in range(math.ceil(total / rows))])[:total]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s shuffle and augmentation: a pure function, so a resumed epoch repeats them."""
    return seed * 100_003 + epoch


def rank_rows(order: torch.Tensor, step: int, size: int, ranks: Ranks) -> tuple[torch.Tensor, int, float, int]:
    """Step ``step``'s batch of ``order`` as this rank takes it: (its rows, how many are real, its loss
    weight: ``Ranks.split_batch``, and how many rows the batch has on all ranks)."""
    rows = order[step * size:(step + 1) * size]
    part, real, weight = ranks.split_batch(len(rows))
    return rows[part], real, weight, len(rows)


def as_view(augment: Augmenter | None, x: torch.Tensor, views: list[dict[str, torch.Tensor]] | None,
            index: torch.Tensor, view: int) -> torch.Tensor:
    """The rows ``index`` as cached view ``view`` drew them (a view exists only with its augmenter and draws)."""
    assert augment is not None and views is not None
    return augment.geometric(x, {name: draws[index] for name, draws in views[view].items()})


@dataclass
class TransferBatch:
    """This rank's unlabelled rows of a step: their indices and (augmented) images, how many are
    real, the loss weight (``Ranks.split_batch``) and the rows of the step on all ranks."""
    index: torch.Tensor
    x: torch.Tensor
    real: int
    weight: float
    rows: int


class TransferBatches:
    """The unlabelled half of each step of one epoch, in its own seeded order."""

    def __init__(self, transfer: Transfer, size: int, steps: int, seed: int, device: torch.device):
        self.transfer, self.size = transfer, size
        self.generator = torch.Generator().manual_seed(seed + TRANSFER_STREAM)
        self.order = batch_order(len(transfer.x), size, steps, self.generator).to(device, non_blocking=True)

    def batch(self, step: int, loop: EpochLoop, view: int | None) -> TransferBatch:
        """Step ``step``'s rows as the labelled ones are made: cached view ``view`` or the augmenter
        (mixup/cutmix pair unlabelled images with each other)."""
        index, real, weight, rows = rank_rows(self.order, step, self.size, loop.ranks)
        x = self.transfer.x[index]
        if view is not None:
            x = as_view(loop.augment, x, self.transfer.views, index, view)
        elif loop.augment is not None:
            x, _ = loop.augment(x, torch.zeros(len(x), dtype=torch.long, device=x.device), self.generator)
        return TransferBatch(index, x, real, weight, rows)


class EpochLoop:
    """One epoch of steps: shuffle seeded from (seed, epoch), batches gathered, standardised and
    augmented, the teacher's outputs (cached rows, or the live teacher on the augmented batch),
    forward, backward, step, in the step's ``mode`` (precision, memory format). Loss and accuracy are
    summed on the device and read once."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, settings: FitSettings,
                 kd: KDTarget | None, ranks: Ranks, mode: StepMode):
        # compiled: the module (its parameters) stays the one the optimizer and checkpoint hold. Each fit
        # starts dynamo afresh: its guards on Trainee.forward pile up across the fits of a run (folds, roles),
        # and past its recompile limit (8) dynamo silently runs the step eager
        if settings.compile:
            torch._dynamo.reset()
        self.net = torch.compile(net) if settings.compile else net
        self.optimizer, self.settings, self.kd, self.ranks, self.mode = optimizer, settings, kd, ranks, mode
        # fp16's small range needs the loss scaled (PyTorch's AMP recipe); bf16 has fp32's range
        self.scaler = torch.amp.GradScaler("cuda") if mode.precision == "fp16" else None
        # a live teacher runs in its own precision (a dense teacher of a depthwise student in bf16, say)
        teacher = kd.teacher if kd is not None else None
        self.teacher_mode = ranks.on_main(lambda: step_mode(teacher, settings.device, settings.precision)) \
            if teacher is not None else mode
        fill = settings.fill if settings.fill is not None else torch.zeros(1)
        self.augment = Augmenter(settings.augment, fill.to(settings.device)) if settings.augment else None

    def run(self, epoch: int, x, y: torch.Tensor) -> EpochTotals:
        """One epoch: ``steps`` batches of labelled rows (and, with a transfer set, of unlabelled ones);
        the loss and accuracy are of the labelled rows, summed over the ranks."""
        settings, ranks, mode = self.settings, self.ranks, self.mode
        generator = torch.Generator().manual_seed(epoch_seed(settings.seed, epoch))
        transfer = self.kd.transfer if self.kd is not None else None
        size = settings.batch_size
        steps = epoch_steps(len(x), size, transfer, settings.min_steps)
        order = batch_order(len(x), size, steps, generator).to(y.device, non_blocking=True)
        unlabelled = TransferBatches(transfer, size * transfer.ratio, steps, epoch_seed(settings.seed, epoch),
                                     y.device) if transfer is not None else None
        view = self._view(epoch)
        total_loss, correct, labelled, samples, waited = 0.0, 0, 0, 0, 0.0
        for step in range(steps):
            made = time.perf_counter()
            index, real, weight, rows = rank_rows(order, step, size, ranks)
            xb, yb, mixed = x[index], y[index], None
            if view is not None:
                xb = as_view(self.augment, xb, self.kd.views if self.kd is not None else None, index, view)
            elif self.augment is not None:
                xb, mixed = self.augment(xb, yb, generator)
            extra = unlabelled.batch(step, self, view) if unlabelled is not None else None
            xb = mode.layout(xb)
            waited += time.perf_counter() - made
            teacher = self._teacher_batch(index, xb, view, self.kd.outputs if self.kd is not None else None)
            pair = (mode.layout(extra.x), self._teacher_batch(extra.index, extra.x, view, transfer.outputs)) \
                if extra is not None and transfer is not None else None
            logits, loss, soft = self.net(xb, teacher, yb, mixed, pair)
            step_loss = loss * weight if ranks.distributed else loss
            if extra is not None:
                step_loss = step_loss + (soft * extra.weight if ranks.distributed else soft)
            self.optimizer.zero_grad(set_to_none=True)
            _step(step_loss, self.optimizer, self.scaler, settings.clip_grad)
            # summed as tensors (float64: the same numbers as Python floats), read once per epoch
            total_loss += loss.detach().double() * real
            if extra is not None:       # the step's soft term once per labelled row, as one process sums it
                total_loss += soft.detach().double() * (extra.real * rows / extra.rows)
            correct += (logits[:real].argmax(1) == yb[:real]).sum()
            labelled, samples = labelled + real, samples + real + (extra.real if extra is not None else 0)
        summed = ranks.sum([float(total_loss), int(correct), labelled, samples], settings.device)
        return EpochTotals(summed[0], int(summed[1]), int(summed[2]), int(summed[3]), waited)

    def _view(self, epoch: int) -> int | None:
        """Which cached augmented view (``--teacher-views``) this epoch trains on, if any."""
        views = self.kd.views if self.kd is not None else None
        return epoch % len(views) if views else None

    def _teacher_batch(self, index: torch.Tensor, xb: torch.Tensor, view: int | None,
                       cached: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        """Rows of the ``cached`` outputs (of this epoch's view), or the live teacher on the very batch
        the student sees."""
        kd = self.kd
        if kd is None:
            return {}
        if kd.teacher is not None and view is None:      # in its own precision, handed to the loss in fp32
            with self.teacher_mode.autocast(self.settings.device):
                outputs = teacher_outputs(kd.teacher, xb, kd.loss.needs)
            return {kind: rows.float() for kind, rows in outputs.items()}
        assert cached is not None           # no live teacher: its outputs were cached
        if view is not None:
            return {kind: rows[view][index] for kind, rows in cached.items()}
        return {kind: rows[index] for kind, rows in cached.items()}


def _step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
          clip_grad: float) -> None:
    """Backward and step; with ``clip_grad`` the gradient of every parameter the optimizer steps (the
    Trainee's: model and loss) is scaled to that norm at most: after DDP's all-reduce, so every rank
    clips alike, and with fp16's scaler after unscaling (PyTorch's AMP examples, "Gradient clipping").
    The norm stays a device tensor: no host synchronisation."""
    if scaler is None:
        loss.backward()
        if clip_grad:
            nn.utils.clip_grad_norm_(ordered_parameters(optimizer), clip_grad)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    if clip_grad:
        scaler.unscale_(optimizer)        # the norm of the true gradient, not of the scaled one
        nn.utils.clip_grad_norm_(ordered_parameters(optimizer), clip_grad)
    scaler.step(optimizer)        # skips the step when fp16 gradients overflowed
    scaler.update()
