"""The zoo as a table (``edgekd models``, timm's ``list_models``): each name with its family, its
parameters and MACs at an input size, and the first line of its builder's docstring."""
from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass

import torch

from edgekd.core.errors import ModelError, close_names
from edgekd.device.images import ImageOptions
from edgekd.train.models import FAMILIES, MODELS, build, count_macs, count_parameters

WILDCARDS = "*?["


@dataclass(frozen=True)
class ZooEntry:
    name: str
    family: str              # the configurable builder it is a variant of (resnet8: resnet), or its own name
    parameters: int
    macs: int                # multiply-accumulates of one sample
    description: str         # the first line of its docstring, '' where it has none


@dataclass(frozen=True)
class ZooListing:
    input_shape: tuple[int, int, int]      # (channels, height, width) the counts were made at
    num_classes: int
    models: list[ZooEntry]                 # by family, then MACs


def counts(spec: str, input_shape: tuple[int, ...], num_classes: int) -> tuple[int, int]:
    """Parameters and MACs of ``spec``, built on the meta device (shapes only: no memory, no weights)."""
    with torch.device("meta"):
        model = build(spec, input_shape, num_classes)
        return count_parameters(model), count_macs(model, input_shape)


def matching(pattern: str | None) -> list[str]:
    """The zoo's names that ``pattern`` matches: fnmatch (``mobilenet*``), or a part of the name where it
    has no wildcard (``lite`` finds every EfficientNet-Lite); none matching is a ModelError."""
    if pattern is None:
        return MODELS.names()
    wanted = pattern.lower() if any(c in pattern for c in WILDCARDS) else f"*{pattern.lower()}*"
    names = [name for name in MODELS.names() if fnmatch.fnmatchcase(name, wanted)]
    if not names:
        close = close_names(pattern, MODELS.names())
        raise ModelError(f"no zoo model matches '{pattern}'",
                         hint=(f"close: {', '.join(close)}; " if close else "") + "'edgekd models' lists them all")
    return names


def list_models(pattern: str | None = None, image_size: tuple[int, int] = (32, 32), channels: int = 3,
                num_classes: int = 10) -> ZooListing:
    """The zoo's models that ``pattern`` matches (all without one), counted on images of ``image_size``
    (height, width) and ``channels`` (1 or 3, as distill's --image-size and --channels make them) with
    ``num_classes`` outputs. The defaults are an edge student's usual task, CIFAR-sized RGB images and
    10 classes; the papers' ImageNet figures are at 224×224 and 1000 classes."""
    height, width = image_size
    ImageOptions((height, width), channels)        # distill's rules for both: sides 1..4096 px, channels 1 or 3
    if num_classes < 1:
        raise ModelError(f"a model needs at least 1 class, got {num_classes}")
    shape = (channels, height, width)
    entries = []
    for name in matching(pattern):
        parameters, macs = counts(name, shape, num_classes)
        doc = inspect.getdoc(MODELS.get(name)) or ""
        entries.append(ZooEntry(name, FAMILIES[name], parameters, macs,
                                doc.splitlines()[0].replace("``", "") if doc else ""))
    return ZooListing(shape, num_classes, sorted(entries, key=lambda e: (e.family, e.macs, e.name)))
