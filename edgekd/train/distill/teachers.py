"""Bring your own teacher: a run folder's teacher, an ONNX file or a ``torch.export`` .pt2
(``--teacher-from``), or trained weights for the ``--teacher`` architecture (``--teacher-weights``).

Each becomes an ``nn.Module`` that maps a batch to logits, so the experiment treats it
like a teacher trained here — except that it is never retrained. Nothing here executes
code from a file: safetensors + JSON, a self-contained ONNX file in onnxruntime, a checked
``torch.export`` archive (see ``modelfile.load_program``).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgekd.train.modelfile import SPEC, load_model, load_program, load_state
from edgekd.device.runtimes.onnx_external import refuse_external_data
from edgekd.core.errors import ModelError, RuntimeBackendError
from edgekd.train.models import build
from edgekd.device.runtimes import open_model
from edgekd.device.images import CHANNELS, MODES


@dataclass
class BroughtTeacher:
    module: nn.Module
    kind: str                      # "run" | "onnx" | "pt2"
    path: Path
    input_shape: tuple[int, ...] | None
    preprocessing: dict | None     # a run folder's teacher carries its own; others use the run's
    arch: str

    def save_into(self, folder: Path) -> str:
        """Copy the teacher's file(s) into the new run's teacher folder; returns the format."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.kind == "run":
            shutil.copyfile(self.path / "model.safetensors", folder / "model.safetensors")
            return "safetensors"
        shutil.copyfile(self.path, folder / f"model.{self.kind}")
        return self.kind


class OnnxLogits(nn.Module):
    """An ONNX classifier run through edgekd's onnxruntime runtime, as a torch module (no gradients)."""

    def __init__(self, path: Path):
        super().__init__()
        refuse_external_data(path, str(path), ModelError, "ONNX teacher")
        try:
            self.runtime = open_model(path, providers=["cpu"], runtime="onnxruntime")
        except RuntimeBackendError as exc:
            raise ModelError(f"cannot load ONNX teacher '{path}': {exc.message}", hint=exc.hint) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one call for the whole batch; a fixed-batch file (torch.onnx.export fixes the batch to
        # the example's, often 1, unless told otherwise) is run at its own batch by the runtime
        logits = self.runtime.logits(x.detach().cpu().numpy().astype(np.float32), batch=max(1, len(x)))
        return torch.from_numpy(logits).to(x.device)


class Pt2Logits(nn.Module):
    """A ``torch.export`` program as a plain module. The program is held outside the
    module tree because an exported module refuses ``.train()``/``.eval()``; its
    mode was fixed when it was exported."""

    def __init__(self, program):
        super().__init__()
        self.program = (program.module(),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the program stays on the CPU it was loaded to (it is outside the module tree, so
        # .to(device) does not move it); a GPU run hands it CPU copies
        return self.program[0](x.cpu()).to(x.device)


def load_teacher(source: str, trust_code: bool = False) -> BroughtTeacher:
    """``--teacher-from``; ``trust_code``: rebuild a run's model whose spec names code (``load_model``)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise ModelError(f"teacher '{path}' not found",
                         hint="--teacher-from takes a run folder, a .onnx file or a .pt2 file")
    if path.is_dir():
        folder = path / "teacher" if (path / "teacher" / SPEC).is_file() else path
        module, spec = load_model(folder, trust_code)
        return BroughtTeacher(module, "run", folder, tuple(spec["input"]["shape"]),
                              spec.get("preprocessing"), spec["arch"])
    if path.suffix == ".onnx":
        module = OnnxLogits(path)
        dims = module.runtime.input.shape[1:]
        shape = tuple(dims) if all(isinstance(d, int) for d in dims) else None
        return BroughtTeacher(module, "onnx", path, shape, None, f"onnx:{path.name}")
    if path.suffix == ".pt2":
        program = load_program(path, ".pt2 teacher")
        return BroughtTeacher(Pt2Logits(program), "pt2", path, None, None, f"pt2:{path.name}")
    raise ModelError(f"cannot use '{path}' as a teacher",
                     hint="--teacher-from takes a run folder, a .onnx file or a .pt2 file")


def weights_teacher(arch: str, weights: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The ``--teacher`` architecture with the state dict of ``--teacher-weights`` (eval mode). It
    is not trained, like a ``--teacher-from`` teacher, and sees the run's own preprocessing."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(f"teacher weights '{path}' not found",
                         hint="--teacher-weights takes a safetensors state dict of the --teacher architecture")
    teacher = build(arch, input_shape, num_classes)
    load_state(teacher, path, f"the teacher '{arch}'", hint=_weights_hint(teacher, path, input_shape))
    return teacher.eval()


def _weights_hint(teacher: nn.Module, path: Path, input_shape: tuple[int, ...]) -> str:
    """What to change when the weights do not fit: --channels where they take images of other channels
    than the data's (an RGB teacher on a folder of gray images), else the --teacher spec."""
    channels = _weights_channels(teacher, path)
    if len(input_shape) == 3 and channels in CHANNELS and channels != input_shape[0]:
        return (f"the weights take {channels}-channel ({MODES[channels]}) images and the data has "
                f"{input_shape[0]}: pass --channels {channels}, which converts the images to {MODES[channels]}")
    return "the weights must come from the same architecture and options as --teacher"


def _weights_channels(teacher: nn.Module, path: Path) -> int | None:
    """The input channels of the file's first convolution (the model's first 4-D weight, by its name):
    dimension 1 of its kernel. None where there is none, or the file cannot be read (load_state says so)."""
    from safetensors import SafetensorError, safe_open

    first = next((name for name, tensor in teacher.state_dict().items() if tensor.dim() == 4), None)
    try:
        with safe_open(str(path), "pt") as weights:
            shape = weights.get_slice(first).get_shape() if first in weights.keys() else []
    except (SafetensorError, OSError, ValueError):
        return None
    return shape[1] if len(shape) == 4 else None
