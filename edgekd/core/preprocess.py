"""Standardisation fitted on training data only, recorded in model.json and the manifest. In the core
tier (numpy only) because whatever feeds a model raw input needs it: training and export today, and a
predictor on the device."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgekd.core.errors import BundleError, DataError, unknown_name


CHUNK_ELEMENTS = 1 << 19      # float64 temporaries of 4 MB, however large the data set
NORMALIZATIONS = ("data", "imagenet")
#: ImageNet's per-channel statistics (RGB, of pixels in 0..1), as torchvision's pretrained models use them
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _rows_per_chunk(x: np.ndarray) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, x[:1].size))


def fit_standardize(x: np.ndarray) -> dict:
    """Mean and std per channel (images) or per feature (tables) of the training data.
    Accumulated in float64 over chunks of rows: ``x.std`` would make a float64 copy of all
    of ``x`` (359 MB on Fashion-MNIST's 60,000 images)."""
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    mean = x.mean(axis=axes, dtype=np.float64)      # a buffered reduction: no full-size copy
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    rows = _rows_per_chunk(x)
    squares = np.zeros_like(mean)
    for start in range(0, len(x), rows):
        deviation = np.subtract(x[start:start + rows], mean.reshape(shape), dtype=np.float64)
        squares += np.square(deviation, out=deviation).sum(axis=axes)
    std = np.sqrt(squares / (x.size // mean.size))
    std[std < 1e-8] = 1.0        # a constant channel or feature: leave its scale alone
    return {"type": "standardize", "axis": "channel" if x.ndim == 4 else "feature",
            "mean": mean.tolist(), "std": std.tolist()}


def imagenet_statistics(input_shape: tuple[int, ...]) -> dict:
    """ImageNet's mean and std, scaled to pixels of 0..255, in ``fit_standardize``'s format; for RGB
    images only (a DataError otherwise: there is no ImageNet statistic of a gray channel or a feature)."""
    if len(input_shape) != 3 or input_shape[0] != 3:
        kind = f"{input_shape[0]}-channel images" if len(input_shape) == 3 else "tabular data"
        raise DataError(f"--normalize imagenet needs RGB images (3 channels), but the data is {kind}",
                        hint="add --channels 3 to convert grayscale images to RGB, or use --normalize data")
    return {"type": "standardize", "axis": "channel", "mean": [round(255 * m, 6) for m in IMAGENET_MEAN],
            "std": [round(255 * s, 6) for s in IMAGENET_STD], "statistics": "imagenet"}


def preprocessing(normalize: str, x_train: np.ndarray, image: dict | None, brought: dict | None = None) -> dict:
    """model.json's ``preprocessing``: the statistics (a brought teacher's own win, then ``normalize``:
    ``data`` fits them on ``x_train``, ``imagenet`` takes ImageNet's), and under ``image`` the image
    transform the samples went through (:func:`edgekd.device.images.describe`), when there was one."""
    if brought is not None:
        pre = {k: v for k, v in brought.items() if k != "image"}    # the transform is this run's data's
    elif normalize == "imagenet":
        pre = imagenet_statistics(x_train.shape[1:])
    elif normalize == "data":
        pre = fit_standardize(x_train)
    else:
        raise unknown_name("normalization", normalize, NORMALIZATIONS, DataError)
    return {**pre, "image": image} if image is not None else pre


def standardize(pre: dict, x: np.ndarray) -> np.ndarray:
    """Apply ``fit_standardize``'s statistics: ``(x − mean) / std`` into one new float32 array.
    Computed in float64 over chunks of rows (4 MB temporaries, not full-size ones): in float32,
    ``x − mean`` overflows for finite data near float32's limit (±3e38) whose standardised
    values are small. Values that do not fit float32 even so (statistics of other data, a
    brought teacher's) are refused rather than trained on as inf."""
    shape = (1, -1, 1, 1) if pre["axis"] == "channel" else (1, -1)
    mean = np.asarray(pre["mean"], np.float64).reshape(shape)
    std = np.asarray(pre["std"], np.float64).reshape(shape)
    out = np.empty(x.shape, np.float32)
    rows = _rows_per_chunk(x)
    with np.errstate(over="ignore"):         # a value beyond float32 becomes inf, refused below
        for start in range(0, len(x), rows):
            chunk = np.subtract(x[start:start + rows], mean, dtype=np.float64)
            out[start:start + rows] = np.divide(chunk, std, out=chunk)
    if not np.isfinite(out.sum(dtype=np.float64)):      # a sum, not an N-sized mask
        raise DataError("the standardised features go beyond float32's range",
                        hint="the data's values lie far outside the statistics they are standardised with "
                             "(those of the training split, or of a --teacher-from run): rescale the data")
    return out


def zero_point(pre: dict) -> np.ndarray:
    """Where a raw 0 (an empty pixel) lands after standardisation, per channel: the fill for shifted images."""
    return (-np.asarray(pre["mean"]) / np.asarray(pre["std"])).astype(np.float32)


def checked_statistics(pre: Any, width: int, images: bool, where: str) -> dict:
    """``pre`` (a manifest's ``preprocessing``, read from a file someone sent) if it can standardise samples
    of ``width`` channels (``images``) or features: a finite mean and a std above 0 for each, and an
    ``image`` that is a dict where there is one; else one BundleError naming ``where``."""
    fields: list[Any] = [pre.get(k) for k in ("mean", "std")] if isinstance(pre, dict) else []
    good = (len(fields) == 2 and pre.get("type") == "standardize"
            and pre.get("axis") == ("channel" if images else "feature")
            and isinstance(pre.get("image", {}), dict)
            and all(isinstance(f, list) and len(f) == width and all(_finite(v) for v in f) for f in fields)
            and all(v > 0 for v in fields[1]))
    if not good:
        raise BundleError(f"{where}: the manifest's preprocessing must standardise each of the {width} "
                          f"{'channels' if images else 'features'} with a finite mean and a std above 0",
                          hint="export the bundle again")
    return pre


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def eight_bit(pre: dict | None) -> bool:
    """Whether the standardised samples were made from 8-bit images (``preprocessing.image.dtype`` uint8,
    one mean and std per channel): then :func:`to_pixels` gives back their pixels exactly."""
    image = (pre or {}).get("image") or {}
    return image.get("dtype") == "uint8" and (pre or {}).get("axis") == "channel"


def to_pixels(pre: dict | None, x: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    """The inverse of :func:`standardize` for 8-bit images: standardised (N, C, H, W) floats → the uint8
    pixels they were made from, (N, C, H, W), or with ``layout="NHWC"`` (N, H, W, C) as a camera gives
    them and ``export --input uint8``'s files take them. ``rint(x·std + mean)`` clipped to 0..255 is exact
    for 8-bit data: a standardised value is a float32 rounding of ``(p − mean) / std``, off by far less
    than half a pixel."""
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be NCHW or NHWC, got {layout!r}")
    if pre is None or not eight_bit(pre) or x.ndim != 4 or x.shape[1] != len(pre["mean"]):
        raise DataError(f"samples of shape {list(x.shape[1:])} standardised with these statistics were not "
                        "made from 8-bit images: they have no pixels to give back",
                        hint="--input uint8 is for runs trained on image files (preprocessing.image.dtype uint8)")
    mean = np.asarray(pre["mean"], np.float64).reshape(1, -1, 1, 1)
    std = np.asarray(pre["std"], np.float64).reshape(1, -1, 1, 1)
    nhwc = layout == "NHWC"
    out = np.empty((x.shape[0], *x.shape[2:], x.shape[1]) if nhwc else x.shape, np.uint8)
    rows = _rows_per_chunk(x)
    for start in range(0, len(x), rows):      # float64 temporaries of a chunk, not of the whole set
        pixels = np.clip(np.rint(np.asarray(x[start:start + rows], np.float64) * std + mean), 0, 255)
        out[start:start + rows] = pixels.transpose(0, 2, 3, 1) if nhwc else pixels
    return out
