"""Images at the size and colour the model wants (``--image-size``, ``--channels``). Torch-free.

The one transform, for folders of image files and for image arrays alike, is the evaluation and
export transform a device repeats before it feeds the model (``describe`` writes it down for
model.json and the bundle's manifest):

1. colour: convert to grayscale (``L``, ITU-R 601-2 luma, as Pillow's ``convert("L")``) or RGB
   (gray copied to all three channels; an alpha channel dropped);
2. resize with Pillow's bilinear filter (antialiased when shrinking) by the one scale
   ``s = max(H / h, W / w)`` that makes the ``w×h`` image cover ``H×W`` — the shorter side becomes
   the target's for a square size — to ``max(W, round(w·s)) × max(H, round(h·s))``;
3. center crop to ``H×W``, the left and top offsets ``(resized − target) // 2``.

8-bit images stay 8-bit (0..255); other arrays are resized as float32 (Pillow's ``F`` mode).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd.core.errors import ConfigError, DataError

MAX_SIDE = 4096          # a larger side is a typo (4096×4096 RGB is 48 MB per image), not a wish
CHANNELS = (1, 3)
SIZE_HINT = "give N (a square, e.g. --image-size 96) or H,W (e.g. --image-size 96,128)"
MODES = {1: "L", 3: "RGB"}
#: Pillow's fixed-point luma (its RGB → L conversion): the array path gives the same bytes as a folder
LUMA = (19595, 38470, 7471)


@dataclass(frozen=True)
class ImageOptions:
    """``size`` (height, width) and ``channels`` (1 or 3) to convert images to; None: as stored."""
    size: tuple[int, int] | None = None
    channels: int | None = None

    def __post_init__(self) -> None:
        if self.channels is not None and self.channels not in CHANNELS:
            raise ConfigError(f"--channels must be 1 (grayscale) or 3 (RGB), got {self.channels}",
                              hint="leave it out to keep the channels the data has")
        if self.size is not None and not (len(self.size) == 2 and all(1 <= s <= MAX_SIDE for s in self.size)):
            raise ConfigError(f"--image-size sides must be between 1 and {MAX_SIDE} pixels, got {self.size}",
                              hint=SIZE_HINT)

    @classmethod
    def parse(cls, image_size: str | None, channels: int | None) -> "ImageOptions":
        """From the option strings ``--image-size N|H,W`` and ``--channels 1|3``; ConfigError if bad."""
        return cls(parse_image_size(image_size) if image_size is not None else None, channels)

    @property
    def given(self) -> bool:
        return self.size is not None or self.channels is not None


def parse_image_size(text: str) -> tuple[int, int]:
    """``"96"`` → (96, 96); ``"96,128"`` → (96, 128) as height, width; each side 1..MAX_SIDE."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) not in (1, 2) or not all(p.lstrip("-").isdigit() for p in parts):
        raise ConfigError(f"--image-size must be N or H,W in whole pixels, got '{text}'", hint=SIZE_HINT)
    sides = [int(p) for p in parts]
    if not all(1 <= s <= MAX_SIDE for s in sides):
        raise ConfigError(f"--image-size sides must be between 1 and {MAX_SIDE} pixels, got '{text}'",
                          hint=SIZE_HINT)
    return (sides[0], sides[-1])


def describe(size: tuple[int, int], channels: int, dtype: np.dtype) -> dict:
    """The transform as model.json's ``preprocessing.image`` records it (see the module docstring)."""
    return {"size": [int(size[0]), int(size[1])], "channels": int(channels), "color": MODES.get(channels),
            "dtype": np.dtype(dtype).name, "resize": "shorter side (cover HxW)", "crop": "center",
            "interpolation": "bilinear", "resampler": "Pillow"}


def fit(img, size: tuple[int, int]):
    """Steps 2 and 3 on one Pillow image: resize to cover ``size`` (H, W), then center crop."""
    from PIL import Image

    height, width = size
    w, h = img.size
    if (w, h) == (width, height):
        return img
    scale = max(width / w, height / h)
    new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
    # Pillow's own types name it Image.Resampling.BILINEAR, new in 9.1; edgekd takes pillow>=9, and
    # every release keeps the old name
    img = img.resize((new_w, new_h), Image.BILINEAR)  # type: ignore[attr-defined]
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return img.crop((left, top, left + width, top + height))


def convert_channels(x: np.ndarray, channels: int, where: str) -> np.ndarray:
    """Step 1 on N×C×H×W arrays (a chunk of rows at a time: it makes a copy)."""
    have = x.shape[1]
    if have == channels:
        return x
    if channels == 3 and have == 1:
        return np.repeat(x, 3, axis=1)
    if channels == 3 and have == 4:
        return x[:, :3]
    if channels == 1 and have in (3, 4):
        if x.dtype == np.uint8:
            red, green, blue = (x[:, c].astype(np.uint32) * w for c, w in enumerate(LUMA))
            weighted = red + green + blue
            return ((weighted + 0x8000) >> 16).astype(np.uint8)[:, None]
        return np.tensordot(np.asarray(LUMA, np.float64) / 65536, x[:, :3], axes=(0, 1)).astype(np.float32)[:, None]
    raise DataError(f"cannot convert the {have}-channel images of {where} to {channels} channels",
                    hint="--channels converts grayscale (1) ↔ RGB (3, or 4 with alpha) images; leave it out here")


def resize_sample(sample: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Steps 2 and 3 on one C×H×W array, channel by channel (Pillow resizes each band alike):
    8-bit channels as ``L`` images, others as float32 ``F`` images."""
    from PIL import Image

    if sample.shape[1:] == tuple(size):
        return sample
    if sample.dtype == np.uint8:
        return np.stack([np.asarray(fit(Image.fromarray(c, "L"), size)) for c in sample])
    return np.stack([np.asarray(fit(Image.fromarray(c.astype(np.float32), "F"), size)) for c in sample])


def transform_arrays(x: np.ndarray, options: ImageOptions, out: np.ndarray, progress=None, start: int = 0) -> None:
    """Write ``x`` (N×C×H×W) converted and resized into ``out[start:start + N]``, a chunk at a time."""
    rows = 256
    total = len(out)
    for first in range(0, len(x), rows):
        chunk = np.asarray(x[first:first + rows])
        if options.channels is not None:
            chunk = convert_channels(chunk, options.channels, "the data")
        for i, sample in enumerate(chunk):
            out[start + first + i] = resize_sample(sample, options.size) if options.size else sample
        if progress is not None:
            progress(start + first + len(chunk), total)


def transformed_shape(shape: tuple[int, ...], options: ImageOptions) -> tuple[int, int, int]:
    """The C×H×W of a sample of ``shape`` after ``options``."""
    height, width = options.size or shape[1:]
    return options.channels or shape[0], height, width


def output_dtype(dtype: np.dtype) -> np.dtype:
    """8-bit images stay 8-bit (the compact cache); anything else is float32, as training needs it."""
    return np.dtype(np.uint8) if dtype == np.uint8 else np.dtype(np.float32)
