"""EfficientNet-Lite (Tan & Le 2019; TensorFlow's ``efficientnet/lite``): EfficientNet-B0's MBConv
stages, compound-scaled in width and depth, with the three changes TF made for int8 on mobile CPUs:
no squeeze-excitation, ReLU6 instead of swish, and a stem (32) and head (1280) that do not scale,
nor do the repeats of the first and last stage. ``efficientnet_lite:variant=lite1`` or timm's names
``efficientnet_lite0`` … ``efficientnet_lite2``. Images under 64 px get a stride-1 stem
(``layers.stem_stride``); ``stem_stride`` and ``stem_width`` (a multiplier of the stem's 32 channels) are
the stem options of every conv family (``layers.StemStride``)."""
from __future__ import annotations

import math
from typing import Literal

from edgekd.train.models import register_model
from edgekd.train.models.layers import (InvertedResidualNet, Stage, StemStride, chosen_stem_stride, make_divisible,
                                        register_variant)
from edgekd.train.options import Fraction, PositiveFloat

# EfficientNet-B0, Table 1: kernel, expansion, channels, repeats, stride
B0 = [(3, 1, 16, 1, 1), (3, 6, 24, 2, 2), (5, 6, 40, 2, 2), (3, 6, 80, 3, 2), (5, 6, 112, 3, 1),
      (5, 6, 192, 4, 2), (3, 6, 320, 1, 1)]
#: TF's efficientnet_lite_builder: (width, depth) coefficients; its resolutions are 224, 240, 260
LITE = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}


def lite_stages(width: float, depth: float) -> list[Stage]:
    stages = []
    for index, (kernel, expand, channels, repeats, stride) in enumerate(B0):
        fixed = index in (0, len(B0) - 1)   # TF's fix_head_stem keeps these repeats too
        stages.append(Stage(kernel, expand, make_divisible(channels * width),
                            repeats if fixed else math.ceil(depth * repeats), stride, False, "relu6"))
    return stages


@register_model("efficientnet_lite")
def efficientnet_lite(input_shape: tuple[int, int, int], num_classes: int, in_chans: int,
                      variant: Literal["lite0", "lite1", "lite2"] = "lite0", width: PositiveFloat = 1.0,
                      stem_stride: StemStride = "auto", stem_width: PositiveFloat = 1.0,
                      dropout: Fraction = 0.2) -> InvertedResidualNet:
    """EfficientNet-Lite0 to Lite2: MBConv without squeeze-excitation, ReLU6.

    TF's figures, 1000 classes: lite0 4.7M parameters, 407M MACs at 224; lite1 5.4M, 631M at 240;
    lite2 6.1M, 899M at 260 (TF trains lite2 with dropout 0.3). ``width`` multiplies the variant's width
    coefficient (the blocks' channels; the stem and head stay fixed, as TF keeps them)."""
    coefficient, depth = LITE[variant]
    return InvertedResidualNet(in_chans, num_classes, lite_stages(coefficient * width, depth),
                               stem=make_divisible(32 * stem_width),
                               head=1280, stride=chosen_stem_stride(stem_stride, input_shape), dropout=dropout)


for _variant in LITE:
    register_variant(f"efficientnet_{_variant}", efficientnet_lite, variant=_variant)
# the small-image student: a third of lite0's channels, the stride-2 stem kept under 64 px (mobilenet.py's ``_s2``)
register_variant("efficientnet_lite0_035_s2", efficientnet_lite, variant="lite0", width=0.35, stem_stride=2)
