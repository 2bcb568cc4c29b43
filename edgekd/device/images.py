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

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.core.errors import ConfigError, DataError

MAX_SIDE = 4096          # a larger side is a typo (4096×4096 RGB is 48 MB per image), not a wish
CHANNELS = (1, 3)
SIZE_HINT = "give N (a square, e.g. --image-size 96) or H,W (e.g. --image-size 96,128)"
MODES = {1: "L", 3: "RGB"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
#: Pillow's fixed-point luma (its RGB → L conversion): the array path gives the same bytes as a folder
LUMA = (19595, 38470, 7471)
GRAY_MODES = ("1", "L", "P", "I", "I;16")       # decoded as grayscale (L); every other mode as RGB
#: An image file is read only within these, checked on its header before a pixel is decoded (PIL's
#: own limit of about 89 M pixels comes on top). The largest camera sensors (61 MP, 9504×6336) fit;
#: a longer side is a scan, a stitched panorama or a bomb. A strip longer than 16:1 is no picture of
#: one thing, and resizing it to cover the model's input grows it by that factor (a 2 kB
#: 2,000,000×1 PNG resized to cover 8×8 is 16,000,000×8 pixels).
MAX_FILE_SIDE = 12_000
MAX_ASPECT = 16


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


# -- image files: decoded as a folder source decodes them, and as a predictor reads one -----------

def read_image(path: Path, channels: int, size) -> np.ndarray:
    """The image file at ``path`` as the model sees it: steps 1–3 on its pixels, C×H×W uint8."""
    with opened(path) as img:
        return image_pixels(img, channels, size)


def image_pixels(img, channels: int, size) -> np.ndarray:
    """Steps 1–3 on a Pillow image (decoded): C×H×W uint8 of ``channels`` at ``size`` (H, W)."""
    pixels = np.asarray(fit(img.convert(MODES[channels]), tuple(size)))
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


@contextmanager
def opened(path: Path, decode: bool = True):
    """The image at ``path`` (its pixels decoded unless ``decode`` is False), its errors as
    DataErrors. Its size is checked from the header first (``Image.open`` reads no pixels):
    against MAX_FILE_SIDE and MAX_ASPECT, and PIL's decompression bomb limit, refused from the
    limit on (PIL only warns between its pixel limit and twice it, then decodes it all)."""
    from PIL import Image

    what = f"image '{path}'"
    with read_errors(what), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(path)
    with img:
        check_size(what, *img.size)
        if decode:
            with read_errors(what):
                img.load()
        yield img


@contextmanager
def read_errors(what: str):
    """PIL's errors reading ``what`` (``image 'PATH'``) as one DataError each."""
    from PIL import Image, UnidentifiedImageError

    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{what} is too large to load: {exc}",
                        hint=f"images over {Image.MAX_IMAGE_PIXELS:,} pixels are refused as possible "
                             "decompression bombs: resize or remove it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read {what}: {exc}", hint="remove or replace the file") from None


def check_size(what: str, width: int, height: int) -> None:
    """Refuse ``what`` (``image 'PATH'``, an array) larger than MAX_FILE_SIDE a side or longer than MAX_ASPECT:1."""
    if max(width, height) > MAX_FILE_SIDE or max(width, height) > MAX_ASPECT * min(width, height):
        raise DataError(f"{what} is {width:,}×{height:,} pixels (width×height): edgekd reads images of "
                        f"at most {MAX_FILE_SIDE:,} pixels a side and {MAX_ASPECT}:1 in shape",
                        hint="a larger or longer one is a scan, a panorama or a decompression bomb, "
                             "not a training image: resize or crop it, or remove it")


# -- folders of image files ------------------------------------------------------------------------

def inside_folder(path: Path, top: Path) -> Path:
    """``path``, unless it is a link that leads out of ``top``: then refused before it is opened
    (a ``.png`` link to a private file would land in the run's eval data and its bundle)."""
    if path.is_symlink():
        target = Path(os.path.realpath(path))        # not Path.resolve: it raises on a link loop
        if not target.is_relative_to(top):
            raise DataError(f"'{path}' is a link to '{target}', outside the folder '{top}'",
                            hint="folder: reads only files inside the folder it is given: "
                                 "copy the file into the folder, or remove the link")
    return path


def image_files(root: Path, top: Path, hint: str) -> list[Path]:
    """Every image file under ``root`` (sub-folders too), sorted; a link out of ``top`` refused
    (:func:`inside_folder`). A sub-folder that cannot be read is an error (``hint``: what to do), not
    skipped as ``Path.rglob`` skips it. Links to folders are not followed: a loop cannot trap it."""
    def unreadable(exc: OSError) -> None:
        raise DataError(f"cannot read the folder '{exc.filename}': {exc.strerror}", hint=hint)

    files = sorted(Path(folder) / name for folder, _, names in os.walk(root, onerror=unreadable) for name in names)
    return [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and inside_folder(p, top).is_file()]
