"""Building blocks of the inverted-residual families (MobileNetV2/V3, EfficientNet-Lite), timm-style,
and the one network they are all made of: stem → stages of inverted residuals → 1×1 head conv →
mean over H and W → [hidden Linear] → dropout → classifier.

Export-friendly by construction: Conv2d, BatchNorm2d, ReLU/ReLU6/Hardswish/Hardsigmoid, ``mean``
(never AdaptiveAvgPool2d), Linear; no data-dependent control flow (every branch is decided when the
module is built). ``act`` names are ``relu``, ``relu6`` and ``hardswish``.
"""
from __future__ import annotations

import inspect
from typing import Callable, Literal, NamedTuple

import torch
from torch import nn

from edgekd.train.models import register_model
from edgekd.train.options import Fraction
ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish}
#: images under this many pixels on their shorter side get a stride-1 stem (see ``stem_stride``)
SMALL_IMAGE = 64
#: the ``stem_stride`` option of every conv family: ``auto`` is the family's rule for the image size, else
#: the stem's stride (4: the stem conv at stride 2 then a 3×3 max-pool at stride 2, ResNet's ImageNet stem)
StemStride = Literal["auto", 1, 2, 4]


def make_divisible(value: float, divisor: int = 8) -> int:
    """The MobileNet channel rounding (TF's ``_make_divisible``, timm's ``make_divisible``): the nearest
    multiple of ``divisor``, at least ``divisor``, and never more than 10 % below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def stem_stride(height: int, width: int) -> int:
    """2 as in the papers (224 px ImageNet), 1 for images under ``SMALL_IMAGE`` px on the shorter side:
    the stem's stride would halve an 8×8 digit or a 28×28 image before any block sees it, and with the
    four stride-2 stages after it a 32×32 image would reach the head at 1×1."""
    return 1 if min(height, width) < SMALL_IMAGE else 2


def chosen_stem_stride(option: StemStride, input_shape: tuple[int, int, int]) -> int:
    """The stride of a ``stem_stride`` option: ``auto`` is ``stem_stride`` of the image's size."""
    return stem_stride(*input_shape[1:]) if option == "auto" else option


def register_variant(name: str, builder: Callable[..., nn.Module], **fixed) -> Callable[..., nn.Module]:
    """Register ``name`` as ``builder`` with ``fixed`` options (timm's ``mobilenetv2_050`` is
    ``mobilenetv2`` at width 0.5): its one option left is ``dropout``, with the builder's default."""
    default = inspect.signature(builder).parameters["dropout"].default

    def variant(input_shape: tuple[int, int, int], num_classes: int, in_chans: int,
                dropout: Fraction = default) -> nn.Module:
        return builder(input_shape, num_classes, in_chans, dropout=dropout, **fixed)

    variant.__name__ = variant.__qualname__ = name
    settings = ", ".join(f"{key}={value}" for key, value in fixed.items())
    variant.__doc__ = f"``{builder.__name__}:{settings}``"
    return register_model(name, family=builder.__name__)(variant)


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias: BatchNorm has one) → BatchNorm2d → activation (``act=None``: linear)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "relu"):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        super().__init__(*layers, *([ACTIVATIONS[act]()] if act else []))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation as in MobileNetV3 (Howard et al. 2019, §5.3): channel mean → 1×1 conv to
    ``make_divisible(channels / 4)`` → ReLU → 1×1 conv back → hard-sigmoid gate on the input."""

    def __init__(self, channels: int, ratio: float = 0.25):
        super().__init__()
        reduced = make_divisible(channels * ratio)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(scale))))


class InvertedResidual(nn.Module):
    """MBConv (Sandler et al. 2018): 1×1 expansion to ``make_divisible(cin × expand)`` (none when
    ``expand`` is 1) → k×k depthwise at ``stride`` → [squeeze-excite] → linear 1×1 projection, plus the
    input when the block keeps its shape (stride 1, ``cin == cout``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, expand: float = 6.0,
                 act: str = "relu6", se: bool = False):
        super().__init__()
        mid = make_divisible(cin * expand) if expand != 1 else cin
        layers: list[nn.Module] = [ConvBNAct(cin, mid, 1, act=act)] if expand != 1 else []
        layers.append(ConvBNAct(mid, mid, kernel, stride, groups=mid, act=act))
        layers += [SqueezeExcite(mid)] if se else []
        layers.append(ConvBNAct(mid, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class Stage(NamedTuple):
    """``repeats`` inverted residuals to ``channels``; the first has ``stride``, the rest stride 1."""

    kernel: int
    expand: float
    channels: int
    repeats: int
    stride: int
    se: bool
    act: str


class InvertedResidualNet(nn.Module):
    """The network of the three families. ``stem`` and ``head`` are output channels (already rounded
    by the family's rule); ``stride`` is the stem's: 1 or 2 on its 3×3 conv, 4 adds a 3×3 max-pool at
    stride 2 after it (``stem_pool``; an Identity otherwise, so the weights' names do not change).
    ``hidden`` (MobileNetV3) adds Linear → activation after the pooling. The stem, head and hidden layer
    use the last stage's activation, as all three papers do (ReLU6 in V2 and Lite, hard-swish in V3)."""

    def __init__(self, in_chans: int, num_classes: int, stages: list[Stage], *, stem: int, head: int,
                 stride: int = 2, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        act = stages[-1].act
        self.stem = ConvBNAct(in_chans, stem, 3, min(stride, 2), act=act)
        self.stem_pool = nn.MaxPool2d(3, 2, 1) if stride == 4 else nn.Identity()
        blocks: list[nn.Module] = []
        channels = stem
        for stage in stages:
            for index in range(stage.repeats):
                blocks.append(InvertedResidual(channels, stage.channels, stage.kernel, stage.stride if index == 0 else 1,
                                               stage.expand, stage.act, stage.se))
                channels = stage.channels
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(channels, head, 1, act=act)
        # MobileNetV3's last stage: a Linear (no BatchNorm) on the pooled features, as its 1×1 conv in the paper
        self.hidden = nn.Sequential(nn.Linear(head, hidden), ACTIVATIONS[act]()) if hidden else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden or head, num_classes)
        self.num_features = hidden or head
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The feature map after the head conv: (N, head, H / total stride, W / total stride)."""
        return self.head(self.blocks(self.stem_pool(self.stem(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Mean over H and W (not AdaptiveAvgPool2d: the graph stays simple for every converter)."""
        x = self.dropout(self.hidden(x.mean(dim=(2, 3))))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet init: He-normal convolutions (fan out), unit BatchNorm, small Linear."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
