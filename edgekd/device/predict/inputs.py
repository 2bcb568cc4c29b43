"""What a :class:`~edgekd.device.predict.Predictor` feeds its model: image files, Pillow images and
arrays turned into the model's input by the transform the bundle's manifest records. Torch-free.

The transform is the data side's own code, not a copy: :mod:`edgekd.device.images` (colour,
resize to cover, center crop; what ``folder:`` and ``--image-size`` did to the training images) and
:func:`edgekd.core.preprocess.standardize` (the training split's statistics).

Which input is which, by its type:

- a path or a Pillow image: a picture, decoded as a ``folder:`` source decodes its files;
- a uint8 array: a picture in memory (a camera frame, RGB or gray), H×W, H×W×C or N×H×W×C;
- a float array: already preprocessed, as the bundle's ``eval.npz`` holds samples: C×H×W or a batch.

Pictures are for a model trained on 8-bit images (the manifest's ``preprocessing.image.dtype`` is
uint8); one trained on other arrays (digits, float images) takes its samples, raw to ``preprocess``
or preprocessed to ``predict``. A picture's transparent pixels have no defined colour: an image whose
alpha is not opaque everywhere is refused (an opaque alpha is dropped, as training drops it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.core.errors import BundleError, DataError
from edgekd.core.preprocess import checked_statistics, eight_bit, standardize, to_pixels
from edgekd.core.schema.manifest import takes_pixels
from edgekd.device.images import (CHANNELS, MAX_SIDE, check_size, convert_channels, describe, image_pixels, opened,
                                  read_errors, resize_sample)

ALPHA_HINT = ("edgekd does not guess what lies behind transparent pixels: flatten the image onto a background "
              "first (Pillow: Image.alpha_composite), or drop the alpha (.convert('RGB'); an array: frame[..., :3])")
#: Pillow's modes with an alpha band (LAB's "A" is a colour, not an alpha)
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


@dataclass(frozen=True)
class InputContract:
    """How one model file of a bundle takes its input (from its manifest entry and the runtime)."""
    sample: tuple[int, ...]               # one preprocessed sample: C×H×W (or features), NCHW
    statistics: dict[str, Any] | None     # the standardisation (fit_standardize's format)
    size: tuple[int, int] | None          # the image transform's H, W (None: not 8-bit pictures)
    channels: int | None                  # … and its channels, 1 (gray) or 3 (RGB)
    pixels: bool                          # the file takes raw uint8 N×H×W×C pixels

    @classmethod
    def of(cls, manifest: dict, entry: dict, input_shape: list) -> "InputContract":
        """The contract of ``entry`` (a manifest model) whose runtime reports ``input_shape``;
        a manifest whose preprocessing does not fit the file is a BundleError."""
        pixels = takes_pixels(entry)
        dims = list(input_shape[1:])
        sample = (dims[2], dims[0], dims[1]) if pixels and len(dims) == 3 else tuple(dims)
        where = f"'{entry['file']}'"
        if not all(isinstance(d, int) and d > 0 for d in sample):
            raise BundleError(f"{where} has an input of shape {input_shape}; a predictor needs fixed sample "
                              "dimensions", hint="export the bundle again")
        pre = manifest.get("preprocessing")
        stats = None if pre is None else checked_statistics(pre, sample[0], len(sample) == 3, where)
        size, channels = _image(stats, sample, where) if stats is not None and eight_bit(stats) else (None, None)
        if pixels and channels is None:
            raise BundleError(f"{where} takes raw pixels, but the manifest records no 8-bit image transform",
                              hint="export the bundle again")
        return cls(sample, stats, size, channels, pixels)

    # -- the model's input ----------------------------------------------------------------------
    def preprocess(self, images: Any) -> np.ndarray:
        """Pictures (paths, Pillow images, uint8 arrays; raw samples for a model without 8-bit pictures)
        → the model's input before the runtime's own quantization: standardised float32 N×C×H×W, or
        uint8 N×H×W×C pixels for a camera-ready file."""
        return self.finish(self.pictures(images))

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """:meth:`pictures`' batch → what :meth:`preprocess` returns."""
        if self.pixels:
            return np.ascontiguousarray(raw.transpose(0, 2, 3, 1))
        if self.statistics is None:
            return raw.astype(np.float32)
        return standardize(self.statistics, raw)

    def pictures(self, images: Any) -> np.ndarray:
        """The inputs as N×C×H×W at the model's channels and size (uint8 pictures), not yet standardised."""
        if isinstance(images, np.ndarray) and images.dtype.kind not in "uif":
            raise DataError(f"cannot predict an array of {images.dtype}", hint=self._array_hint())
        if isinstance(images, np.ndarray) and self.channels is not None:
            return self._frames(images)
        if isinstance(images, np.ndarray):
            return self._batch(images)
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise DataError("no images to predict", hint="give one image or a list of them")
        return np.concatenate([self.pictures(item) if isinstance(item, np.ndarray) else self._picture(item)[None]
                               for item in items])

    def levels(self) -> np.ndarray | None:
        """What :meth:`preprocess` makes of each of the 256 values of an 8-bit pixel, per channel (C×256,
        float32): ``standardize`` run once on every value, so a lookup in it gives its very numbers
        (a per-pixel function), without its float64 pass over each image. None: no 8-bit pictures."""
        if self.channels is None or self.statistics is None:
            return None
        every = np.broadcast_to(np.arange(256, dtype=np.uint8), (1, self.channels, 1, 256))
        return standardize(self.statistics, every)[0, :, 0, :]

    def model_input(self, x: np.ndarray) -> np.ndarray:
        """Preprocessed float samples (one, or a batch) → the batch the model takes."""
        batch = self._batch(np.asarray(x, np.float32))
        if not np.isfinite(batch).all():
            raise DataError("the array holds values that are not finite (NaN or infinity)")
        if self.pixels:
            return to_pixels(self.statistics, batch, "NHWC")
        return batch

    def accepts_pictures(self) -> None:
        """A DataError unless the model was trained on 8-bit pictures (files, frames mean nothing to it)."""
        if self.channels is None:
            raise DataError("this model was trained on arrays, not on 8-bit images (the manifest records no 8-bit "
                            "image transform), so a picture has no defined input", hint=self._array_hint())

    def _array_hint(self) -> str:
        if self.channels is None:
            return "give samples shaped like the bundle's eval.npz x, or a batch of them"
        return ("give a picture (a path, a Pillow image or a uint8 H×W×C array) to have it resized, or float "
                "samples shaped like the bundle's eval.npz x (already preprocessed)")

    # -- pictures → N×C×H×W at the model's size -------------------------------------------------
    def _picture(self, item: Any) -> np.ndarray:
        """A path or a Pillow image: decoded, converted and fitted by the data side's own functions."""
        self.accepts_pictures()
        if isinstance(item, (str, os.PathLike)):
            with opened(Path(item)) as img, read_errors(f"image '{item}'"):
                return self._decoded(img, f"image '{item}'")
        from PIL import Image

        if not isinstance(item, Image.Image):
            raise DataError(f"cannot predict a {type(item).__name__}",
                            hint="give a path, a Pillow image or a numpy array (or a list of them)")
        check_size(f"the {item.mode} image", *item.size)
        with read_errors(f"the {item.mode} image"):
            return self._decoded(item, f"the {item.mode} image")

    def _decoded(self, img: Any, what: str) -> np.ndarray:
        if (img.mode in ALPHA_MODES or "transparency" in img.info) and img.convert("RGBA").getextrema()[3][0] < 255:
            raise DataError(f"{what} has transparent pixels", hint=ALPHA_HINT)
        assert self.channels is not None and self.size is not None
        return image_pixels(img, self.channels, self.size)

    def _frames(self, x: np.ndarray) -> np.ndarray:
        """H×W, H×W×C or N×H×W×C uint8 pictures (C: 1, 3 or 4) → N×C×H×W at the model's channels and size."""
        if x.dtype != np.uint8:
            raise DataError(f"a picture in memory is a uint8 array, got {x.dtype}",
                            hint="give 8-bit pixels (0..255), or float samples already preprocessed")
        if x.ndim not in (2, 3, 4) or x.size == 0 or (x.ndim > 2 and x.shape[-1] not in (1, 3, 4)):
            raise DataError(f"an image array is H×W, H×W×C or N×H×W×C with C 1, 3 or 4, got shape {_shape(x.shape)}",
                            hint=self._array_hint())
        frames = x[None, ..., None] if x.ndim == 2 else x[None] if x.ndim == 3 else x
        check_size("the image array", frames.shape[2], frames.shape[1])
        if frames.shape[-1] == 4 and frames[..., 3].min() < 255:
            raise DataError("the image array's alpha channel has transparent pixels", hint=ALPHA_HINT)
        assert self.channels is not None and self.size is not None
        batch = convert_channels(frames.transpose(0, 3, 1, 2), self.channels, "the array")
        return np.stack([resize_sample(sample, self.size) for sample in batch])

    def _batch(self, x: np.ndarray) -> np.ndarray:
        """``x`` as a batch of the model's samples (one sample gains the batch axis); else a DataError."""
        batch = x[None] if x.ndim == len(self.sample) else x
        if batch.shape[1:] != self.sample or not batch.size:
            raise DataError(f"the array has samples of shape {_shape(batch.shape[1:])}, but the model takes "
                            f"{_shape(self.sample)}", hint=self._array_hint())
        return batch


def _shape(shape: tuple) -> str:
    return "×".join(str(d) for d in shape) or "a scalar"


def _image(pre: dict, sample: tuple, where: str) -> tuple[tuple[int, int], int]:
    """(H, W) and channels of the manifest's 8-bit image transform: the one this edgekd applies
    (``describe``'s), at the model's sample shape; else a BundleError."""
    image = pre["image"]
    size, channels = image.get("size"), image.get("channels")
    fits = (isinstance(size, list) and len(size) == 2 and all(_whole(s, 1, MAX_SIDE) for s in size)
            and channels in CHANNELS and not isinstance(channels, bool) and sample == (channels, *size))
    if not fits or image != describe(size, channels, np.dtype(np.uint8)):
        raise BundleError(f"the manifest's preprocessing.image ({image!r:.120}) is not a transform this edgekd "
                          f"applies to {where}, whose samples are {_shape(sample)}", hint="export the bundle again")
    return (size[0], size[1]), channels


def _whole(v: Any, low: int, high: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
