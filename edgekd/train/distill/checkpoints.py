"""The epoch checkpoint of the fit loop, for ``--resume``: model, loss and optimizer state after each
epoch (safetensors + JSON, never a pickle), and restoring it on every torchrun rank."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from edgekd.core.errors import ConfigError
from edgekd.core.fsutil import atomic_write_bytes, atomic_write_json
from edgekd.train.distill.distributed import Ranks
from edgekd.train.distill.fastpath import STEP_PRECISIONS, StepMode, native_bf16
from edgekd.train.options import MEMORY_FORMATS
from edgekd.train.distill.optim import ordered_parameters

if TYPE_CHECKING:
    from edgekd.train.distill.train import Trainee


class EpochCheckpoint:
    """Model, loss and optimizer state after each epoch, for ``--resume`` (safetensors + JSON)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.weights, self.meta = self.folder / "epoch.safetensors", self.folder / "epoch.json"

    def save(self, trainee: "Trainee", optimizer: torch.optim.Optimizer, epoch: int, history: list[dict],
             mode: StepMode) -> None:
        from safetensors.torch import save

        tensors = {f"{prefix}.{k}": v.detach().contiguous()
                   for prefix, part in trainee.parts().items() for k, v in part.state_dict().items()}
        opt = optimizer.state_dict()
        for index, state in opt["state"].items():
            for name, value in state.items():
                tensors[f"opt.{index}.{name}"] = torch.as_tensor(value).contiguous()
        atomic_write_bytes(self.weights, save(tensors))
        atomic_write_json(self.meta, {"epoch": epoch, "history": history, "param_groups": opt["param_groups"],
                                      "mode": mode.record()})

    def mode(self, device: str) -> StepMode | None:
        """The step mode the interrupted stage trained in (None: no checkpoint): a resumed stage goes on in
        it, whatever ``--precision auto`` would choose now, so that it repeats the run that never stopped."""
        if not (self.weights.is_file() and self.meta.is_file()):      # as load() finds a checkpoint
            return None
        record = read_checkpoint_json(self.meta, ("mode",))["mode"]
        fields = isinstance(record, dict) and record.get("memory_format") in MEMORY_FORMATS[1:]
        if not fields or record.get("precision") not in STEP_PRECISIONS or not isinstance(record.get("why"), str):
            raise damaged_checkpoint(self.meta, f"its step mode {record!r} is not one edgekd writes")
        if record["precision"] == "fp16" and not device.startswith("cuda"):
            raise damaged_checkpoint(self.meta, "it records fp16, which edgekd trains in on a GPU only")
        if record["precision"] == "bf16" and native_bf16(device) is None:
            raise ConfigError("the interrupted run trained in bf16, which this machine has no native support for; "
                              "resuming in another precision would not repeat it",
                              hint="resume on the machine that started it, or start over with --force")
        return StepMode(record["precision"], record["memory_format"] == "channels_last", record["why"])

    def load(self, trainee: "Trainee", optimizer: torch.optim.Optimizer, epochs: int) -> tuple[int, list[dict]]:
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
        params = ordered_parameters(optimizer)     # the numbering of the optimizer's state
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, name = key.split(".", 2)
                # Adam's moments have their parameter's shape (its step is a scalar)
                fits = index.isdigit() and int(index) < len(params)
                if not fits or value.dim() and value.shape != params[int(index)].shape:
                    raise damaged_checkpoint(self.weights, f"its optimizer state '{key}' fits no parameter")
                # in the parameter's memory format (channels_last), as the unstopped run's state is
                shaped = torch.empty_like(params[int(index)]).copy_(value) if value.dim() else value
                state.setdefault(int(index), {})[name] = shaped
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


def resume(trainee: "Trainee", optimizer: torch.optim.Optimizer, checkpoint: EpochCheckpoint | None,
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
