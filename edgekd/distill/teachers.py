"""Bring your own teacher: a run folder's teacher, an ONNX file or a ``torch.export`` .pt2.

Each becomes an ``nn.Module`` that maps a batch to logits, so the experiment treats it
like a teacher trained here — except that it is never retrained. Nothing here executes
code from a file: safetensors + JSON, a self-contained ONNX file in onnxruntime, a checked
``torch.export`` archive (see ``checkpoint.load_program``).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import SPEC, load_model, load_program, refuse_onnx_external_data
from ..errors import ModelError


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
    """An ONNX classifier run through onnxruntime, as a torch module (no gradients)."""

    def __init__(self, path: Path):
        super().__init__()
        import onnxruntime as ort

        refuse_onnx_external_data(path, "ONNX teacher")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelError(f"cannot load ONNX teacher '{path}': {str(exc).splitlines()[0]}") from None
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        # torch.onnx.export fixes the batch size to the example's (often 1) unless told otherwise
        batch = model_input.shape[0] if model_input.shape else None
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_np = x.detach().cpu().numpy().astype(np.float32)
        if self.fixed_batch is None:
            out = self._run(x_np)
        else:
            out = np.concatenate([self._run_padded(x_np[i:i + self.fixed_batch])
                                  for i in range(0, len(x_np), self.fixed_batch)])
        return torch.from_numpy(out).to(x.device)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def _run_padded(self, x: np.ndarray) -> np.ndarray:
        """One fixed-size batch; a short last one is padded with zeros and the padding's rows dropped."""
        padding = np.zeros((self.fixed_batch - len(x), *x.shape[1:]), np.float32)
        return self._run(np.concatenate([x, padding]))[:len(x)]


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


def load_teacher(source: str) -> BroughtTeacher:
    path = Path(source).expanduser()
    if not path.exists():
        raise ModelError(f"teacher '{path}' not found",
                         hint="--teacher-from takes a run folder, a .onnx file or a .pt2 file")
    if path.is_dir():
        folder = path / "teacher" if (path / "teacher" / SPEC).is_file() else path
        module, spec = load_model(folder)
        return BroughtTeacher(module, "run", folder, tuple(spec["input"]["shape"]),
                              spec.get("preprocessing"), spec["arch"])
    if path.suffix == ".onnx":
        module = OnnxLogits(path)
        dims = module.session.get_inputs()[0].shape[1:]
        shape = tuple(d for d in dims if isinstance(d, int)) if all(isinstance(d, int) for d in dims) else None
        return BroughtTeacher(module, "onnx", path, shape, None, f"onnx:{path.name}")
    if path.suffix == ".pt2":
        program = load_program(path, ".pt2 teacher")
        return BroughtTeacher(Pt2Logits(program), "pt2", path, None, None, f"pt2:{path.name}")
    raise ModelError(f"cannot use '{path}' as a teacher",
                     hint="--teacher-from takes a run folder, a .onnx file or a .pt2 file")
