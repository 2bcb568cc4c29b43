"""A user's own model for edgekd's tests, one the zoo does not have: ShuffleNet units (Zhang et al.
2018) — grouped 1x1 convolutions, a channel shuffle between them, a depthwise 3x3 — at a size for
8x8 digits. It names its input channels ``in_channels`` (torch's word), not timm's ``in_chans``.

    edgekd distill --student tests/user_models/shufflenet_tiny.py:shufflenet_tiny:width=24,groups=3
"""
from __future__ import annotations

import torch
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    # (N, g*c, H, W) -> (N, c*g, H, W): no batch size named, so the batch stays dynamic when traced
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


class ShuffleUnit(nn.Module):
    """Grouped 1x1 (reduce) -> shuffle -> depthwise 3x3 -> grouped 1x1 (expand), plus the input."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        middle = channels // 2
        self.groups = groups
        self.reduce = nn.Sequential(nn.Conv2d(channels, middle, 1, groups=groups, bias=False),
                                    nn.BatchNorm2d(middle), nn.ReLU())
        self.depthwise = nn.Sequential(nn.Conv2d(middle, middle, 3, padding=1, groups=middle, bias=False),
                                       nn.BatchNorm2d(middle))
        self.expand = nn.Sequential(nn.Conv2d(middle, channels, 1, groups=groups, bias=False),
                                    nn.BatchNorm2d(channels))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.expand(self.depthwise(channel_shuffle(self.reduce(x), self.groups)))
        return self.relu(x + branch)


class ShuffleNetTiny(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int, groups: int, depth: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.units = nn.Sequential(*[ShuffleUnit(width, groups) for _ in range(depth)])
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.units(self.stem(x)).mean(dim=(2, 3)))


def shufflenet_tiny(num_classes: int, in_channels: int, width: int = 24, groups: int = 3,
                    depth: int = 2) -> nn.Module:
    if width % (2 * groups):
        raise ValueError(f"width {width} must be a multiple of 2 x groups ({2 * groups})")
    return ShuffleNetTiny(in_channels, num_classes, width, groups, depth)
