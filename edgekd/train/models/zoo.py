"""Built-in students and teachers: plain, export-friendly layers only (Conv2d,
BatchNorm2d, ReLU, MaxPool2d, mean pooling, Linear, Dropout), which ONNX and LiteRT int8 handle.

Each family is a module class plus a ``@register_model`` builder function whose keyword
parameters, with their annotations and defaults, are the spec's options (timm's pattern)."""
from __future__ import annotations

import torch
from torch import nn

from edgekd.train.models import register_model
from edgekd.train.models.spec import image_shape
from edgekd.train.options import Fraction, PositiveInt


class MLP(nn.Module):
    """Flatten → ``depth`` × (Linear(hidden) → ReLU [→ Dropout]) → Linear(classes). Any input shape."""

    def __init__(self, input_shape, num_classes, hidden: int = 32, depth: int = 1, dropout: float = 0.0):
        super().__init__()
        features = 1
        for size in input_shape:
            features *= size
        layers: list[nn.Module] = [nn.Flatten()]
        for _ in range(depth):
            layers += [nn.Linear(features, hidden), nn.ReLU()]
            # only when asked: a Dropout(0) layer would renumber the weights of every saved mlp
            layers += [nn.Dropout(dropout)] if dropout else []
            features = hidden
        layers.append(nn.Linear(features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations (N, hidden): all layers but the classifier."""
        return self.net[:-1](x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[-1](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model("mlp")
def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: PositiveInt = 32, depth: PositiveInt = 1,
        dropout: Fraction = 0.0) -> MLP:
    """Multi-layer perceptron on the flattened input, any shape (tabular data too).

    ``dropout`` after each hidden layer, in training only (Hinton et al. 2015's MNIST teacher used it)."""
    return MLP(input_shape, num_classes, hidden, depth, dropout)


class CNN(nn.Module):
    """``depth`` × (Conv3x3 → BatchNorm → ReLU), 2x2 max-pooling between blocks while the
    feature map is at least 4x4, then global average pooling and a Linear classifier."""

    def __init__(self, input_shape, num_classes, width: int = 16, depth: int = 2):
        super().__init__()
        channels, height, width_px = image_shape(tuple(input_shape), "cnn")
        layers: list[nn.Module] = []
        for block in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
            if block < depth - 1 and min(height, width_px) >= 4:
                layers.append(nn.MaxPool2d(2))
                height, width_px = height // 2, width_px // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's feature map (N, width, H', W')."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        # mean over H and W (not AdaptiveAvgPool2d) keeps the graph simple for every converter
        return self.classifier(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model("cnn")
def cnn(input_shape: tuple[int, int, int], num_classes: int, width: PositiveInt = 16,
        depth: PositiveInt = 2) -> CNN:
    """Plain CNN: 3×3 conv, BatchNorm, ReLU and max-pooling blocks; a linear head."""
    return CNN(input_shape, num_classes, width, depth)
