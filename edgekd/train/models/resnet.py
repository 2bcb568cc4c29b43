"""ResNet (He et al. 2016, "Deep Residual Learning for Image Recognition"), timm-style: one
configurable builder ``resnet`` and the named variants ``resnet8`` … ``resnet50`` on top of it.

- depth 8/14/20: the paper's CIFAR networks (section 4.2): 3 stages of 16/32/64 channels,
  n = (depth - 2) / 6 basic blocks each. 18/34: 4 stages of 64…512 channels, basic blocks
  [2,2,2,2] / [3,4,6,3]. 50: bottleneck blocks [3,4,6,3], expansion 4, the stride on the 3×3
  convolution (torchvision's and timm's "v1.5": 4.1 G MACs at 224 rather than the paper's 3.8 G).
- Shortcuts: identity, or a projection (1×1 convolution + BatchNorm, the paper's option B) where
  the shape changes; also on CIFAR depths, where the paper used zero-padding (option A): +2,752
  parameters on ResNet-20 (272,474 rather than about 270k), and only convolutions in the graph.
- stem ``cifar``: 3×3 convolution, stride 1, no max-pool; ``imagenet``: 7×7 stride 2 + 3×3 max-pool
  stride 2; ``auto``: cifar when the smaller side of the input is under 64 px, else imagenet.
- ``stem_stride`` (the option of every conv family, ``layers.StemStride``): the stem's total stride with
  the kernel ``stem`` chose: 1 (the conv at stride 1), 2 (at stride 2), 4 (at stride 2, then the 3×3
  max-pool at stride 2); ``auto`` is the stem's own (cifar 1, imagenet 4). ``resnet8:stem_stride=2`` is
  the CIFAR network on a quarter of the pixels.
- ``stem_width`` multiplies the stem conv's channels (on top of ``width``); where they then differ
  from the first stage's, its first block gets a projection shortcut.
- ``width`` multiplies every stage's channels (the stem's are the first stage's); a count becomes
  the nearest multiple of 8, halves rounded up, at least 8 and not over 10 % short (``channels``).
- Module and state-dict names are torchvision's and timm's (conv1, bn1, layer1.0.conv1, …,
  downsample.0/1, fc), so a ResNet state dict trained with either loads as ``--teacher-weights``.
- Export-friendly: Conv2d, BatchNorm2d, ReLU, MaxPool2d, a mean over H and W (not
  AdaptiveAvgPool2d) and Linear, with no data-dependent control flow.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from edgekd.train.models import register_model
from edgekd.train.models.layers import SMALL_IMAGE, StemStride, make_divisible
from edgekd.train.models.spec import image_shape
from edgekd.train.options import PositiveFloat

Depth = Literal[8, 14, 20, 18, 34, 50]
Stem = Literal["auto", "cifar", "imagenet"]
CIFAR_WIDTHS, IMAGENET_WIDTHS = (16, 32, 64), (64, 128, 256, 512)
#: each stem's own stride (``stem_stride=auto``): its conv's, times 2 for the imagenet stem's max-pool
STEM_STRIDES = {"cifar": 1, "imagenet": 4}


def conv_bn(in_chans: int, out_chans: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(in_chans, out_chans, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(out_chans)


def shortcut(in_chans: int, out_chans: int, stride: int) -> nn.Module:
    """Identity where the shape is kept, else the projection (1×1 convolution + BatchNorm)."""
    if stride == 1 and in_chans == out_chans:
        return nn.Identity()
    return nn.Sequential(*conv_bn(in_chans, out_chans, 1, stride))


class BasicBlock(nn.Module):
    """3×3 → BN → ReLU → 3×3 → BN, plus the shortcut, → ReLU."""

    expansion = 1

    def __init__(self, in_chans: int, planes: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(in_chans, planes, 3, stride)
        self.conv2, self.bn2 = conv_bn(planes, planes, 3)
        self.relu = nn.ReLU()
        self.downsample = shortcut(in_chans, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + self.downsample(x))


class Bottleneck(nn.Module):
    """1×1 (reduce) → 3×3 (with the stride) → 1×1 (expand ×4), BN after each, plus the shortcut."""

    expansion = 4

    def __init__(self, in_chans: int, planes: int, stride: int):
        super().__init__()
        out_chans = planes * self.expansion
        self.conv1, self.bn1 = conv_bn(in_chans, planes, 1)
        self.conv2, self.bn2 = conv_bn(planes, planes, 3, stride)
        self.conv3, self.bn3 = conv_bn(planes, out_chans, 1)
        self.relu = nn.ReLU()
        self.downsample = shortcut(in_chans, out_chans, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + self.downsample(x))


#: depth → (block, blocks per stage, channels per stage before ``width``)
LAYOUTS: dict[int, tuple[type[BasicBlock | Bottleneck], tuple[int, ...], tuple[int, ...]]] = {
    **{depth: (BasicBlock, ((depth - 2) // 6,) * 3, CIFAR_WIDTHS) for depth in (8, 14, 20)},
    18: (BasicBlock, (2, 2, 2, 2), IMAGENET_WIDTHS),
    34: (BasicBlock, (3, 4, 6, 3), IMAGENET_WIDTHS),
    50: (Bottleneck, (3, 4, 6, 3), IMAGENET_WIDTHS),
}


class ResNet(nn.Module):
    """Stem → stages (``layer1`` …; each but the first halves H and W) → mean over H, W → Linear."""

    def __init__(self, in_chans: int, num_classes: int, depth: int = 18,
                 stem: Literal["cifar", "imagenet"] = "imagenet", width: float = 1.0,
                 stem_stride: int | None = None, stem_width: float = 1.0):
        super().__init__()
        block, counts, bases = LAYOUTS[depth]
        planes = [make_divisible(base * width) for base in bases]
        stride = stem_stride or STEM_STRIDES[stem]
        features = make_divisible(bases[0] * width * stem_width)
        self.conv1, self.bn1 = conv_bn(in_chans, features, 3 if stem == "cifar" else 7, min(stride, 2))
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stride == 4 else nn.Identity()
        self.stage_names = tuple(f"layer{index + 1}" for index in range(len(counts)))
        for index, (name, count, size) in enumerate(zip(self.stage_names, counts, planes)):
            strides = [1 if index == 0 else 2] + [1] * (count - 1)
            blocks = []
            for block_stride in strides:
                blocks.append(block(features, size, block_stride))
                features = size * block.expansion
            self.add_module(name, nn.Sequential(*blocks))
        self.num_features = features
        self.fc = nn.Linear(features, num_classes)
        for module in self.modules():   # He et al. 2015's initialisation, as torchvision and timm use
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        # mean over H and W (not AdaptiveAvgPool2d) keeps the graph simple for every converter
        return self.fc(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def pick_stem(input_shape: tuple[int, ...], stem: str) -> Literal["cifar", "imagenet"]:
    """``auto``: cifar (full resolution) when the smaller side is under ``SMALL_IMAGE`` px."""
    if stem != "auto":
        return stem  # type: ignore[return-value]
    _, height, width_px = image_shape(tuple(input_shape), "resnet")
    return "cifar" if min(height, width_px) < SMALL_IMAGE else "imagenet"


@register_model("resnet")
def resnet(input_shape: tuple[int, int, int], in_chans: int, num_classes: int, depth: Depth = 18,
           stem: Stem = "auto", width: PositiveFloat = 1.0, stem_stride: StemStride = "auto",
           stem_width: PositiveFloat = 1.0) -> ResNet:
    """ResNet of depth 8, 14, 20 (CIFAR) or 18, 34, 50 (ImageNet).

    ``resnet:depth=20,stem=cifar,width=0.5``; the module docstring says what each option does."""
    return ResNet(in_chans, num_classes, depth, pick_stem(input_shape, stem), width,
                  None if stem_stride == "auto" else stem_stride, stem_width)


def _variant(depth: Depth):
    def variant(input_shape: tuple[int, int, int], in_chans: int, num_classes: int, stem: Stem = "auto",
                width: PositiveFloat = 1.0, stem_stride: StemStride = "auto",
                stem_width: PositiveFloat = 1.0) -> ResNet:
        return resnet(input_shape, in_chans, num_classes, depth, stem, width, stem_stride, stem_width)

    variant.__name__ = variant.__qualname__ = f"resnet{depth}"
    variant.__doc__ = f"``resnet:depth={depth}`` (options: stem, width, stem_stride, stem_width)."
    return variant


for _depth in get_args(Depth):         # LAYOUTS' depths, typed as the option's choices
    register_model(f"resnet{_depth}", family="resnet")(_variant(_depth))
