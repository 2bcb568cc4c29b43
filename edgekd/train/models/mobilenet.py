"""MobileNetV2 (Sandler et al. 2018) and MobileNetV3 (Howard et al. 2019), timm-style: one
configurable builder per family (``mobilenetv2:width=0.25``, ``mobilenetv3:variant=small``) and
timm's named variants on top (``mobilenetv2_100``, ``mobilenetv3_small_100``, …).

``width`` multiplies the channels of every layer, rounded by ``make_divisible`` (multiples of 8), as
in both papers; the last 1×1 conv of V2 (1280) and the hidden layer of V3's head (1280 / 1024) only
grow with it (V2 §6.1, TF's ``finegrain_classification_mode``). Images under 64 px get a stride-1
stem (``layers.stem_stride``); everything else is the papers' ImageNet network.

``stem_stride`` (``auto``, 1, 2, 4) and ``stem_width`` (a multiplier of the stem conv's channels, on top of
``width``) are the stem options of every conv family (``layers.StemStride``); the ``_s2`` variants below
are the small-image students: a stride-2 stem at 28–32 px, so the blocks do not run at full resolution."""
from __future__ import annotations

from typing import Literal

from edgekd.train.models import register_model
from edgekd.train.models.layers import (InvertedResidualNet, Stage, StemStride, chosen_stem_stride, make_divisible,
                                        register_variant)
from edgekd.train.options import Fraction, PositiveFloat

# MobileNetV2, Table 2: expansion t, channels c, repeats n, stride s (3×3 depthwise, ReLU6, no SE)
V2_TABLE = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1)]

# MobileNetV3, Tables 1 and 2, one row per block: kernel, expansion size, out channels, SE, activation, stride
V3_LARGE = [(3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2), (3, 72, 24, False, "relu", 1),
            (5, 72, 40, True, "relu", 2), (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
            (3, 240, 80, False, "hardswish", 2), (3, 200, 80, False, "hardswish", 1),
            (3, 184, 80, False, "hardswish", 1), (3, 184, 80, False, "hardswish", 1),
            (3, 480, 112, True, "hardswish", 1), (3, 672, 112, True, "hardswish", 1),
            (5, 672, 160, True, "hardswish", 2), (5, 960, 160, True, "hardswish", 1),
            (5, 960, 160, True, "hardswish", 1)]
V3_SMALL = [(3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2), (3, 88, 24, False, "relu", 1),
            (5, 96, 40, True, "hardswish", 2), (5, 240, 40, True, "hardswish", 1),
            (5, 240, 40, True, "hardswish", 1), (5, 120, 48, True, "hardswish", 1),
            (5, 144, 48, True, "hardswish", 1), (5, 288, 96, True, "hardswish", 2),
            (5, 576, 96, True, "hardswish", 1), (5, 576, 96, True, "hardswish", 1)]
#: the tables' stem, last conv (before pooling) and hidden layer of the head
V3_SIZES = {"large": (V3_LARGE, 16, 960, 1280), "small": (V3_SMALL, 16, 576, 1024)}


@register_model("mobilenetv2")
def mobilenetv2(input_shape: tuple[int, int, int], num_classes: int, in_chans: int, width: PositiveFloat = 1.0,
                stem_stride: StemStride = "auto", stem_width: PositiveFloat = 1.0,
                dropout: Fraction = 0.2) -> InvertedResidualNet:
    """MobileNetV2: inverted residuals, 3×3 depthwise convs, ReLU6.

    MobileNetV2 1.0 at 224×224, 1000 classes: 3.5M parameters, 300M MACs (Table 4)."""
    stages = [Stage(3, t, make_divisible(c * width), n, s, False, "relu6") for t, c, n, s in V2_TABLE]
    return InvertedResidualNet(in_chans, num_classes, stages, stem=make_divisible(32 * width * stem_width),
                               head=max(1280, make_divisible(1280 * width)),
                               stride=chosen_stem_stride(stem_stride, input_shape), dropout=dropout)


def v3_stages(rows: list[tuple], stem: int, width: float) -> list[Stage]:
    """The table's expansion sizes as ratios of each block's input channels (72 / 24 = 3, 88 / 24 ≈ 3.67,
    as timm writes them), so that ``width`` scales the expansions with the channels."""
    stages, cin = [], stem
    for kernel, expansion, cout, se, act, stride in rows:
        stages.append(Stage(kernel, expansion / cin, make_divisible(cout * width), 1, stride, se, act))
        cin = cout
    return stages


@register_model("mobilenetv3")
def mobilenetv3(input_shape: tuple[int, int, int], num_classes: int, in_chans: int,
                variant: Literal["large", "small"] = "large", width: PositiveFloat = 1.0,
                stem_stride: StemStride = "auto", stem_width: PositiveFloat = 1.0,
                dropout: Fraction = 0.2) -> InvertedResidualNet:
    """MobileNetV3 Large or Small: hard-swish, squeeze-excitation, a ``width`` multiplier.

    MobileNetV3 at 224×224, 1000 classes (Tables 3 and 4): Large 1.0 5.4M parameters, 219M MACs;
    Small 1.0 2.5M, 56M. Hard-swish, squeeze-excite with hard-sigmoid; its head pools first, then
    a Linear of 1280 (1024) with hard-swish, no BatchNorm."""
    rows, stem, last, hidden = V3_SIZES[variant]
    return InvertedResidualNet(in_chans, num_classes, v3_stages(rows, stem, width),
                               stem=make_divisible(stem * width * stem_width), head=make_divisible(last * width),
                               stride=chosen_stem_stride(stem_stride, input_shape),
                               hidden=max(hidden, make_divisible(hidden * width)), dropout=dropout)


# timm's names: the width multiplier × 100
register_variant("mobilenetv2_100", mobilenetv2, width=1.0)
register_variant("mobilenetv2_050", mobilenetv2, width=0.5)
register_variant("mobilenetv3_small_100", mobilenetv3, variant="small", width=1.0)
register_variant("mobilenetv3_large_100", mobilenetv3, variant="large", width=1.0)
# small-image students, ``_s2``: the papers' stride-2 stem kept under 64 px (at 224 px each is the plain
# variant); at 28 px 1/4.5 (v3_small_100) to 1/12 (v3_small_050) of ResNet-8's MACs, the feature map 1×1
register_variant("mobilenetv2_050_s2", mobilenetv2, width=0.5, stem_stride=2)
register_variant("mobilenetv2_035_s2", mobilenetv2, width=0.35, stem_stride=2)
register_variant("mobilenetv3_small_100_s2", mobilenetv3, variant="small", width=1.0, stem_stride=2)
register_variant("mobilenetv3_small_050_s2", mobilenetv3, variant="small", width=0.5, stem_stride=2)
