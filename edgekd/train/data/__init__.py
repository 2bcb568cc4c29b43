"""Datasets as numpy arrays, from a registry of sources. Torch-free.

A source spec is ``name`` or ``name:ARG``: ``digits``, ``npz:PATH``, ``idx:DIR``,
``folder:DIR``, ``csv:PATH``. Every source returns a ``Dataset`` of raw features (images
as N×C×H×W, tables as N×F) and integer class indices 0..K-1; a source that ships its own
test split (IDX ``t10k-*`` files, npz ``x_test``/``y_test``) carries it.

Large data is held once: 8- and 16-bit integer features keep their type (exact in
float32, and 4× smaller than it: 60,000 28×28 images are 47 MB, not 188 MB), and an
uncompressed IDX file or npz member is memory-mapped rather than read. Standardisation
(``preprocess.standardize``) makes the float32 copy the training needs, one per split.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from edgekd.core.errors import DataError
from edgekd.core.registry import Registry

#: the input layouts written into model.json: images (batch, channels, height, width) and
#: tables (batch, features)
IMAGE_LAYOUT, TABULAR_LAYOUT = "NCHW", "NF"


@dataclass
class Dataset:
    x: np.ndarray                      # raw (not yet normalised): float32, or 8/16-bit integers
    y: np.ndarray                      # int64 class indices 0..K-1
    labels: list[str]                  # class names, index → name
    name: str
    test: tuple[np.ndarray, np.ndarray] | None = None   # the source's own test split
    image: dict | None = None          # the image transform the samples went through (images.describe)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4

    @property
    def layout(self) -> str:
        return IMAGE_LAYOUT if self.is_image else TABULAR_LAYOUT


Source = Callable[..., Dataset]
SOURCES: Registry[Source] = Registry("data source", DataError)
# spelled out: the source modules import it while this module is still loading, where mypy cannot infer it
register_source: Callable[[str], Callable[[Source], Source]] = SOURCES.register


def load_dataset(spec: str, label_column: str | None = None, images: ImageOptions | None = None,
                 cache: DataCache | None = None) -> Dataset:
    """Load ``spec`` (e.g. ``digits``, ``npz:data.npz``) through the source registry.
    ``label_column`` goes only to a source that takes it: elsewhere it is a mistake, not ignored.
    ``images`` (size, channels) decodes ``folder:`` at that size and transforms the images of the
    other sources alike, once, into ``cache`` (default: ``DataCache()``, the user's cache folder)."""
    name, _, arg = spec.partition(":")
    loader = SOURCES.get(name)
    images = images or ImageOptions()
    options: dict = {}
    if label_column is not None:
        if not _takes(loader, "label_column"):
            takers = [n for n in SOURCES if _takes(SOURCES.get(n), "label_column")]
            raise DataError(f"--label-column does not apply to data source '{name}'",
                            hint=f"only {', '.join(takers)} data has a label column; drop --label-column")
        options["label_column"] = label_column
    if _takes(loader, "images"):        # it decodes files: at the size asked, into the cache
        return loader(arg or None, images=images, cache=cache, **options)
    data = loader(arg or None, **options)
    return transform_dataset(data, spec, images, cache) if images.given else as_pictures(data)


def as_pictures(data: Dataset) -> Dataset:
    """8-bit gray or RGB images as stored (idx:, npz: of uint8) are pictures at their own size: their
    transform is recorded as the identity, so that a predictor takes a camera's uint8 frame (resized to
    them as ``--image-size`` would) and export can fold their standardisation into the model."""
    if data.image is not None or data.x.dtype != np.uint8 or not data.is_image or data.x.shape[1] not in MODES:
        return data
    return replace(data, image=describe(data.x.shape[2:], data.x.shape[1], data.x.dtype))


def _takes(loader: Callable[..., Dataset], option: str) -> bool:
    return option in inspect.signature(loader).parameters


def encode_labels(raw: np.ndarray, where: str, names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Raw integer labels → contiguous indices; non-integer labels are a user error."""
    raw = np.asarray(raw)
    if raw.ndim != 1:
        raise DataError(f"labels in {where} must be one-dimensional, got shape {raw.shape}")
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
            raise DataError(f"labels in {where} must be integers", hint="found fractional or NaN values")
        raw = raw.astype(np.int64)
    elif raw.dtype.kind not in "iu":
        raise DataError(f"labels in {where} must be integers, got dtype {raw.dtype}",
                        hint="map class names to 0..K-1, or use folder:DIR / csv:PATH which do it for you")
    classes, y = np.unique(raw, return_inverse=True)
    if names is not None:
        _check_names(names, len(classes), where)
    return y.astype(np.int64), names if names is not None else [str(c) for c in classes]


def _check_names(names: list[str], classes: int, where: str) -> None:
    """Class names given with the data name each class once (they were dropped silently)."""
    if len(names) != classes:
        raise DataError(f"{where} has {len(names)} label names for {classes} classes",
                        hint="'labels' needs one name per distinct value of y, in sorted order of y")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"the labels of {where} names a class twice: {', '.join(repr(n) for n in twice[:5])}",
                        hint="give every class its own name")


SMALL_INTEGERS = (np.uint8, np.int8, np.uint16, np.int16)     # kept as they are: exact in float32


def as_images_or_table(x: np.ndarray, where: str) -> np.ndarray:
    """N×F tables stay; N×H×W gains a channel; N×H×W×C (C ≤ 4) becomes N×C×H×W.
    Small integers keep their type (a memory-mapped array stays mapped); the rest becomes float32."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise DataError(f"features in {where} must be numeric, got dtype {x.dtype}")
    if x.dtype not in SMALL_INTEGERS:
        with np.errstate(over="ignore"):      # beyond float32 becomes inf: one error below, not numpy's warning
            x = x.astype(np.float32, copy=False)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] <= 4 and x.shape[1] > 4:
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim not in (2, 4):
        raise DataError(f"features in {where} must be N×F, N×H×W or N×C×H×W, got shape {x.shape}")
    with np.errstate(invalid="ignore", over="ignore"):                  # inf − inf: NaN, refused just below
        finite = x.dtype.kind != "f" or bool(np.isfinite(x.sum(dtype=np.float64)))     # a sum, not an N-sized mask
    if not finite:
        raise DataError(f"features in {where} contain NaN or infinite values, or values beyond float32's range",
                        hint="training runs in float32 (|x| < 3.4e38); drop or rescale those features")
    return np.ascontiguousarray(x)


def check_pair(x: np.ndarray, y: np.ndarray, where: str) -> None:
    if len(x) != len(y):
        raise DataError(f"{where} has {len(x)} samples but {len(y)} labels", hint="x and y must have the same length")
    if len(x) == 0:
        raise DataError(f"{where} holds no samples")


from edgekd.train.data import folder, sources  # noqa: E402,F401  (registers the built-in sources)
from edgekd.train.data.cache import DataCache  # noqa: E402
from edgekd.train.data.folder import transform_dataset  # noqa: E402
from edgekd.device.images import MODES, ImageOptions, describe  # noqa: E402
