"""Built-in students and teachers: plain, export-friendly layers only (Conv2d,
BatchNorm2d, ReLU, MaxPool2d, mean pooling, Linear), which ONNX and LiteRT int8 handle."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from . import register_model


def _image_shape(input_shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ModelError(f"model '{name}' needs image input (channels, height, width), got shape {input_shape}",
                         hint="use 'mlp' for tabular data")
    return input_shape  # type: ignore[return-value]


@register_model("mlp")
class MLP(nn.Module):
    """Flatten → ``depth`` × (Linear(hidden) → ReLU) → Linear(classes). Any input shape."""

    def __init__(self, input_shape, num_classes, hidden: int = 32, depth: int = 1):
        super().__init__()
        features = 1
        for size in input_shape:
            features *= size
        layers: list[nn.Module] = [nn.Flatten()]
        for _ in range(depth):
            layers += [nn.Linear(features, hidden), nn.ReLU()]
            features = hidden
        layers.append(nn.Linear(features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_model("cnn")
class CNN(nn.Module):
    """``depth`` × (Conv3x3 → BatchNorm → ReLU), 2x2 max-pooling between blocks while the
    feature map is at least 4x4, then global average pooling and a Linear classifier."""

    def __init__(self, input_shape, num_classes, width: int = 16, depth: int = 2):
        super().__init__()
        channels, height, width_px = _image_shape(tuple(input_shape), "cnn")
        layers: list[nn.Module] = []
        for block in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
            if block < depth - 1 and min(height, width_px) >= 4:
                layers.append(nn.MaxPool2d(2))
                height, width_px = height // 2, width_px // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # mean over H and W (not AdaptiveAvgPool2d) keeps the graph simple for every converter
        return self.classifier(self.features(x).mean(dim=(2, 3)))
