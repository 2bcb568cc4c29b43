"""How a training step runs on this hardware (``StepMode``): its precision and memory format, chosen
per model from ``--precision`` and ``--memory-format`` and recorded with why.

Measured on a 2-core Xeon with AMX-BF16 (``benchmarks/train_speed.py``, its record and README table):
bf16 autocast made the dense-convolution models (ResNet, the demo CNN) faster and, at 28×28, every model
with depthwise convolutions (MobileNetV2/V3, EfficientNet-Lite) slower (oneDNN's bf16 depthwise
kernels; wide ones at 224 px can gain: MobileNetV2-1.0 did); a model without convolutions (the MLP) was
slower in bf16 too. channels_last was a win for every convolutional model in fp32. So ``auto`` is:

- precision: on a CPU with native bf16 (AMX or AVX512-BF16), bf16 for a model whose convolutions are all
  dense, else fp32; on a GPU, bf16 where it is native (Ampere or newer), else fp16 with a loss scaler.
- memory format: channels_last for a model with 2-D convolutions, contiguous otherwise.

bf16 is autocast's: the weights, the optimizer's state and the teacher's cached logits stay fp32, and
the logits (and feature maps) are cast back to fp32 before any loss (``train.Trainee``).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from edgekd.core.errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
STEP_PRECISIONS = ("fp32", *DTYPES)        # what a step runs in: --precision's choices resolved, and fp16 on an older GPU


@dataclass(frozen=True)
class StepMode:
    """A training step's precision (fp32 | bf16 | fp16), memory format, and why they were chosen."""
    precision: str = "fp32"
    channels_last: bool = False
    why: str = ""

    def autocast(self, device: str):
        """The autocast context of the step's forward pass (none in fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=DTYPES[self.precision])

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the step's memory format (images: NCHW tensors)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def lay_out(self, model: nn.Module, training: bool) -> None:
        """``model``'s 4-D weights in place in the step's memory format while ``training``, else back in
        the contiguous one that export and the checkpoints expect."""
        if self.channels_last:
            fmt = torch.channels_last if training else torch.contiguous_format
            model.to(memory_format=fmt)     # type: ignore[call-overload]  # torch's stubs omit memory_format

    @property
    def memory_format(self) -> str:
        """The format's name, as ``--memory-format`` takes it."""
        return "channels_last" if self.channels_last else "contiguous"

    def record(self) -> dict:
        return {"precision": self.precision, "memory_format": self.memory_format, "why": self.why}


def native_bf16(device: str) -> str | None:
    """What gives ``device`` native bf16 arithmetic (its name), or None."""
    if torch.device(device).type == "cuda":
        major, _ = torch.cuda.get_device_capability(torch.device(device))
        return f"{torch.cuda.get_device_name(torch.device(device))} (compute capability {major}.x)" if major >= 8 else None
    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return "AVX512-BF16"
    return None


def step_mode(model: nn.Module, device: str, precision: str = "auto", memory_format: str = "auto") -> StepMode:
    """The step mode of ``model`` on ``device`` for ``--precision`` and ``--memory-format``
    (module docstring); bf16 asked for where the hardware has none is a ConfigError."""
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    grouped = sum(m.groups > 1 for m in convolutions)
    chosen, why = _precision(precision, device, len(convolutions), grouped)
    channels_last = memory_format == "channels_last" or (memory_format == "auto" and bool(convolutions))
    return StepMode(chosen, channels_last, why)


def require_native(asked: str, device: str) -> str | None:
    """What gives ``device`` native bf16 (None: nothing); ``--precision bf16`` without it is a ConfigError,
    which ``Experiment.prepare`` raises before the run folder (or its staging folder) is made."""
    native = native_bf16(device)
    if asked == "bf16" and native is None:
        raise ConfigError(f"--precision bf16: this {'GPU' if device.startswith('cuda') else 'CPU'} has no "
                          "native bf16 (a CPU needs AMX or AVX512-BF16, a GPU Ampere or newer), and emulated "
                          "bf16 trains slower than fp32", hint="use --precision auto (fp32 here) or fp32")
    return native


def _precision(asked: str, device: str, convolutions: int, grouped: int) -> tuple[str, str]:
    native = require_native(asked, device)
    if asked == "fp32":
        return "fp32", "--precision fp32"
    if asked == "bf16":
        return "bf16", f"--precision bf16 ({native})"
    if device.startswith("cuda"):
        return ("bf16", f"auto: native bf16 ({native})") if native else ("fp16", "auto: a GPU without bf16")
    if native is None:
        return "fp32", "auto: the CPU has no native bf16"
    if not convolutions:
        return "fp32", "auto: no convolutions (bf16 measured slower without them)"
    if grouped:
        return "fp32", (f"auto: {grouped} of {convolutions} convolutions are grouped or depthwise "
                        "(bf16 measured slower for them)")
    return "bf16", f"auto: native bf16 ({native}), dense convolutions"
