"""The fit loop: one model, one data set, plain CE or a distillation loss against the teacher.

Design choices that matter for speed and reproducibility:
- Data lives in one tensor; batches are index slices (no per-sample Python work).
- The teacher's outputs that the loss needs (logits) are computed once and sliced per
  batch; the teacher runs every step only when augmentation changes the inputs.
- On CUDA: mixed precision (bf16 where the GPU has it, else fp16 with a gradient scaler),
  data copied once to the GPU from pinned memory, and no per-step host synchronisation
  (loss and accuracy are summed on the device and read once per epoch).
- The learning rate is a pure function of the epoch (cosine) and each epoch's shuffle is
  seeded from (seed, epoch), so a run resumed from an epoch checkpoint is bit-identical
  to one that never stopped.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..fsutil import atomic_write_bytes, atomic_write_json
from .distributed import SINGLE, Ranks
from .losses import DistillationLoss, LossInputs

EVAL_BATCH = 1024


@dataclass
class KDTarget:
    """What the student learns from: a distillation loss and the teacher's outputs it needs,
    cached, or a live teacher when augmenting."""
    loss: DistillationLoss
    outputs: dict[str, torch.Tensor] | None = None   # cached: kind → one row per training sample
    teacher: nn.Module | None = None             # run every step (augmentation on)
    teacher_x: torch.Tensor | None = None        # the same samples in the teacher's input space
    teacher_pad: torch.Tensor | None = None


@dataclass
class FitSettings:
    """How one model trains; ``pad`` fills the border of shifted images (``augment``), and a
    ``validation`` set (x, y), when given, is scored after every epoch into the history."""
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    augment: bool = False
    device: str = "cpu"
    pad: torch.Tensor | None = None
    validation: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_second: float = 0.0
    precision: str = "fp32"


def mixed_precision(device: str) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """(autocast dtype, gradient scaler): bf16 on a GPU that has it, else fp16, whose small
    range needs the scaler; nothing on the CPU, whose path stays plain fp32."""
    if not device.startswith("cuda"):
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def predict_logits(model: nn.Module, x: torch.Tensor, ranks: Ranks = SINGLE) -> torch.Tensor:
    """Logits of every row of ``x``; under torchrun each rank computes a block and all gather."""
    model.eval()

    def rows(part: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([model(part[i:i + EVAL_BATCH]) for i in range(0, len(part), EVAL_BATCH)])

    return ranks.map_rows(rows, x)


def teacher_outputs(teacher: nn.Module, x: torch.Tensor, needs: tuple[str, ...],
                    ranks: Ranks = SINGLE) -> dict[str, torch.Tensor]:
    """The teacher's outputs a loss ``needs`` for every row of ``x``, by kind
    (``losses.TEACHER_OUTPUTS``: logits today; a feature loss adds its kind here)."""
    computes = {"logits": lambda: predict_logits(teacher, x, ranks)}
    return {kind: computes[kind]() for kind in needs}


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ranks: Ranks = SINGLE) -> float:
    return float((predict_logits(model, x, ranks).argmax(1) == y).float().mean())


def random_shifts(n: int, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    return torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)


def shift_images(x: torch.Tensor, offsets: torch.Tensor, pad: torch.Tensor, max_shift: int = 1) -> torch.Tensor:
    """Translate each image by its own (dy, dx) offset, filling with ``pad`` (per channel),
    with one gather for the whole batch."""
    n, c, h, w = x.shape
    padded = pad.view(1, c, 1, 1).expand(n, c, h + 2 * max_shift, w + 2 * max_shift).clone()
    padded[:, :, max_shift:max_shift + h, max_shift:max_shift + w] = x
    offsets = offsets.to(x.device)
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)   # (n, h)
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)   # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class HardLabels(nn.Module):
    """Cross-entropy on the labels alone: the simple model's and the teacher's loss."""
    needs: tuple[str, ...] = ()

    def forward(self, batch: LossInputs) -> torch.Tensor:
        return batch.cross_entropy()


class Trainee(nn.Module):
    """The model and its loss in one module, so that the optimizer, the epoch checkpoint and
    DDP (which all-reduces the gradients of every parameter of the module it wraps) carry a
    loss's own parameters (a feature adapter) together with the model's."""

    def __init__(self, model: nn.Module, loss: nn.Module, label_smoothing: float = 0.0):
        super().__init__()
        self.model, self.loss, self.label_smoothing = model, loss, label_smoothing

    def forward(self, x: torch.Tensor, teacher: dict[str, torch.Tensor], targets: torch.Tensor,
                mixed: tuple[torch.Tensor, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(x)
        return logits, self.loss(LossInputs(logits, teacher, targets, mixed, self.label_smoothing))

    def parts(self) -> dict[str, nn.Module]:
        """What an epoch checkpoint keeps, by key prefix: the model, and a loss that has state."""
        return {"model": self.model, **({"loss": self.loss} if self.loss.state_dict() else {})}


class EpochCheckpoint:
    """Model, loss and optimizer state after each epoch, for ``--resume`` (safetensors + JSON)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.weights, self.meta = self.folder / "epoch.safetensors", self.folder / "epoch.json"

    def save(self, trainee: Trainee, optimizer: torch.optim.Optimizer, epoch: int, history: list[dict]) -> None:
        from safetensors.torch import save

        tensors = {f"{prefix}.{k}": v.detach().contiguous()
                   for prefix, part in trainee.parts().items() for k, v in part.state_dict().items()}
        opt = optimizer.state_dict()
        for index, state in opt["state"].items():
            for name, value in state.items():
                tensors[f"opt.{index}.{name}"] = torch.as_tensor(value).contiguous()
        atomic_write_bytes(self.weights, save(tensors))
        atomic_write_json(self.meta, {"epoch": epoch, "history": history, "param_groups": opt["param_groups"]})

    def load(self, trainee: Trainee, optimizer: torch.optim.Optimizer, epochs: int) -> tuple[int, list[dict]]:
        """Restore state; returns (epochs done, history), or (0, []) when there is none.
        A damaged checkpoint (truncated, edited, of another model) is a ConfigError."""
        if not (self.weights.is_file() and self.meta.is_file()):
            return 0, []
        tensors = read_checkpoint_weights(self.weights)
        meta = read_checkpoint_json(self.meta, ("epoch", "history", "param_groups"))
        done, history = meta["epoch"], meta["history"]
        whole = isinstance(done, int) and not isinstance(done, bool)
        if not (whole and 0 < done <= epochs and isinstance(history, list) and len(history) == done):
            raise damaged_checkpoint(self.meta, f"it records epoch {done!r} of a stage of {epochs} epochs, "
                                                "with another number of history entries")
        for prefix, part in trainee.parts().items():
            load_weights(part, {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(f"{prefix}.")},
                         self.weights)
        params = list(trainee.parameters())     # the optimizer's order: the model's, then the loss's
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, name = key.split(".", 2)
                # Adam's moments have their parameter's shape (its step is a scalar)
                fits = index.isdigit() and int(index) < len(params)
                if not fits or value.dim() and value.shape != params[int(index)].shape:
                    raise damaged_checkpoint(self.weights, f"its optimizer state '{key}' fits no parameter")
                state.setdefault(int(index), {})[name] = value
        try:
            optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        except (ValueError, KeyError, TypeError) as exc:
            raise damaged_checkpoint(self.meta, f"its optimizer state does not fit the model ({exc})") from None
        return done, history


def damaged_checkpoint(path: Path, problem: str) -> ConfigError:
    return ConfigError(f"the interrupted run's checkpoint '{path}' is damaged: {problem}",
                       hint="start over: run the same command without --resume and with --force "
                            "(which discards the interrupted run)")


def read_checkpoint_json(path: Path, keys: tuple[str, ...]) -> dict:
    """A checkpoint's JSON document, which must be an object with ``keys``."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:         # ValueError: bad JSON, not UTF-8
        raise damaged_checkpoint(path, str(exc)) from None
    missing = [key for key in keys if not isinstance(document, dict) or key not in document]
    if missing:
        raise damaged_checkpoint(path, f"it lacks {', '.join(missing)}")
    return document


def read_checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise damaged_checkpoint(path, str(exc)) from None


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    """``model.load_state_dict(weights)``; weights of another shape or with other names are damage."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise damaged_checkpoint(path, str(exc).splitlines()[0]) from None


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: FitSettings, *,
        kd: KDTarget | None = None, checkpoint: EpochCheckpoint | None = None,
        on_epoch: Callable[[dict], None] | None = None, ranks: Ranks = SINGLE) -> FitResult:
    """Train ``model`` in place with Adam and a cosine learning rate; CE, or ``kd.loss`` when
    ``kd`` (the loss's own parameters train too). Under torchrun (``ranks``) every rank trains
    on its slice of each batch through DDP."""
    trainee = Trainee(model, kd.loss.to(settings.device) if kd else HardLabels())
    optimizer = torch.optim.Adam(trainee.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    start_epoch, history = _resume(trainee, optimizer, checkpoint, settings.epochs, ranks)
    net = ranks.wrap(trainee)
    amp_dtype, scaler = mixed_precision(settings.device)
    autocast = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    started, seen = time.perf_counter(), 0
    for epoch in range(start_epoch, settings.epochs):
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * 0.5 * (1 + math.cos(math.pi * epoch / settings.epochs))
        if kd:
            kd.loss.start_epoch(epoch, settings.epochs)
        generator = torch.Generator().manual_seed(settings.seed * 100_003 + epoch)
        order = torch.randperm(len(x), generator=generator).to(x.device, non_blocking=True)
        # the epoch's offsets, drawn whole on every rank and moved to the device once, not per step
        shifts = random_shifts(len(x), generator).to(x.device) if settings.augment else None
        trainee.train()
        total_loss, correct = 0.0, 0
        for begin in range(0, len(x), settings.batch_size):
            batch = order[begin:begin + settings.batch_size]
            part, real, weight = ranks.split_batch(len(batch))
            index = batch[part]
            xb, yb = x[index], y[index]
            offsets = shifts[begin:begin + settings.batch_size][part] if shifts is not None else None
            if offsets is not None:
                xb = shift_images(xb, offsets, settings.pad)
            with autocast:
                logits, loss = net(xb, _teacher_batch(kd, index, offsets), yb)
            optimizer.zero_grad(set_to_none=True)
            _step(loss * weight if ranks.distributed else loss, optimizer, scaler)
            # summed as tensors (float64: the same numbers as Python floats), read once per epoch
            total_loss += loss.detach().double() * real
            correct += (logits[:real].argmax(1) == yb[:real]).sum()
        total_loss, correct = ranks.sum([float(total_loss), int(correct)], settings.device)
        _require_finite(total_loss / len(x), epoch + 1, settings, ranks)
        seen += len(x)
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
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype, "fp32")
    return FitResult(history, seconds, seen / seconds if seconds > 0 else 0.0, precision)


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


def _resume(trainee: Trainee, optimizer: torch.optim.Optimizer, checkpoint: EpochCheckpoint | None,
            epochs: int, ranks: Ranks) -> tuple[int, list[dict]]:
    """(epochs done, history) from the epoch checkpoint. Under torchrun only rank 0 holds
    checkpoints: it sends the optimizer state to the others, and the weights (the loss's too)
    follow when DDP wraps the trainee (which copies rank 0's parameters and buffers to every rank)."""
    def load():
        done, history = checkpoint.load(trainee, optimizer, epochs) if checkpoint else (0, [])
        # on the CPU: CUDA tensors would be unpickled onto cuda:0 by every rank
        state = _on_cpu(optimizer.state_dict()) if done and ranks.distributed else None
        return done, history, state

    done, history, optimizer_state = ranks.on_main(load)
    if optimizer_state is not None and not ranks.is_main:
        optimizer.load_state_dict(optimizer_state)
    return done, history


def _on_cpu(state):
    """A state dict (nested dicts and lists of tensors) with every tensor on the CPU."""
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, dict):
        return {key: _on_cpu(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_on_cpu(value) for value in state)
    return state


def _teacher_batch(kd: KDTarget | None, index: torch.Tensor, offsets: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The teacher's outputs for this batch: rows of the cache, or the live teacher on the shifted batch."""
    if kd is None:
        return {}
    if offsets is None or kd.teacher is None:
        return {kind: rows[index] for kind, rows in kd.outputs.items()}
    return teacher_outputs(kd.teacher, shift_images(kd.teacher_x[index], offsets, kd.teacher_pad), kd.loss.needs)


def to_tensors(x: np.ndarray, y: np.ndarray, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Arrays as tensors on ``device``: once per split, used at once (pinning would only add a
    full host copy with nothing to overlap)."""
    return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in (x, y))
