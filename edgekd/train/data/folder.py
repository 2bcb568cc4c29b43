"""The ``folder:DIR`` source (one sub-folder of images per class) and the image transform of the
array sources, both decoded once into the uint8 cache (:mod:`.cache`) and memory-mapped from it."""
from __future__ import annotations

import hashlib
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgekd.core.errors import DataError
from edgekd.train.data import Dataset, register_source
from edgekd.train.data.cache import DataCache, path_digest, stat_digest
from edgekd.train.data.images import MAX_SIDE, MODES, ImageOptions, describe, fit, output_dtype, transform_arrays, transformed_shape
from edgekd.train.data.sources import existing_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
GRAY_MODES = ("1", "L", "P", "I", "I;16")       # decoded as grayscale (L); every other mode as RGB
PROGRESS_STEPS = 200
#: An image file is read only within these, checked on its header before a pixel is decoded (PIL's
#: own limit of about 89 M pixels comes on top). The largest camera sensors (61 MP, 9504×6336) fit;
#: a longer side is a scan, a stitched panorama or a bomb. A strip longer than 16:1 is no picture of
#: one thing, and resizing it to cover the model's input grows it by that factor (a 2 kB
#: 2,000,000×1 PNG resized to cover 8×8 is 16,000,000×8 pixels).
MAX_FILE_SIDE = 12_000
MAX_ASPECT = 16


@register_source("folder")
def load_folder(arg: str | None, images: ImageOptions = ImageOptions(), cache: DataCache | None = None) -> Dataset:
    """One sub-folder per class; or ``train/`` and ``test/`` each with one sub-folder per class, the
    second the source's own test split (ImageNet's layout). Every image is converted to
    ``images.channels`` (default: the first image's kind, gray or RGB) and fitted to ``images.size``
    (default: their one size; images of several sizes need ``images.size``) by :func:`.images.fit`;
    decoded once into the cache, then memory-mapped from it. A link that leads out of ``arg`` is
    refused, one that stays inside followed."""
    root = existing_path(arg, "folder", "folder")
    top = root.resolve()
    cache = cache or DataCache()
    if not _has_test_folder(root):
        classes, x, y = _load_classes(root, top, images, cache)
        return Dataset(x, y, classes, f"folder:{root}", image=describe(x.shape[2:], x.shape[1], x.dtype))
    classes, x, y = _load_classes(root / "train", top, images, cache)
    # the test images as the training images are, whatever the first test image's size or mode
    test_options = ImageOptions(tuple(x.shape[2:]), x.shape[1])
    test_classes, x_test, y_test = _load_classes(root / "test", top, test_options, cache, 1)
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise DataError(f"'{root / 'test'}' has classes that '{root / 'train'}' lacks: {', '.join(unknown[:5])}",
                        hint="the test split's class folders must be among the training split's")
    as_train = np.asarray([classes.index(name) for name in test_classes], np.int64)
    return Dataset(x, y, classes, f"folder:{root}", (x_test, as_train[y_test]),
                   image=describe(x.shape[2:], x.shape[1], x.dtype))


def _has_test_folder(root: Path) -> bool:
    """``root`` holds exactly the folders ``train`` and ``test`` (and no class named so beside others)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir()) == ["test", "train"]


def _load_classes(root: Path, top: Path, images: ImageOptions, cache: DataCache,
                  least: int = 2) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(class names, the uint8 cache's images, int64 class indices) of one folder of class folders
    inside ``top``, the resolved folder the user gave."""
    classes, paths, targets = _listing(root, top, least)
    key = {"source": f"folder:{root.resolve()}", "size": images.size, "channels": images.channels}
    x = cache.load(key, stat_digest(paths, root), lambda: _plan(paths, images),
                   lambda out, progress: decode_images(paths, out, progress))
    return classes, x, np.asarray(targets, np.int64)


def _listing(root: Path, top: Path, least: int = 2) -> tuple[list[str], list[Path], list[int]]:
    """Class names, image paths and class indices; ``least`` classes needed (a test split may hold one).
    Every folder and image it names is inside ``top``: only a link can lead out, and each is checked."""
    inside_folder(root, top)
    classes = sorted(inside_folder(p, top).name for p in root.iterdir() if p.is_dir())
    if len(classes) < least:
        raise DataError(f"'{root}' needs at least {'two class sub-folders' if least == 2 else 'one class sub-folder'}, "
                        f"found {len(classes)}")
    paths, targets = [], []
    for index, name in enumerate(classes):
        named = [inside_folder(p, top) for p in sorted((root / name).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        found = [p for p in named if p.is_file()]
        paths += found
        targets += [index] * len(found)
    if not paths:
        raise DataError(f"no images found under '{root}'", hint=f"supported: {', '.join(sorted(IMAGE_SUFFIXES))}")
    return classes, paths, targets


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


def _plan(paths: list[Path], images: ImageOptions) -> tuple[tuple[int, ...], np.dtype]:
    """The cache array's shape: the first image's channels and the images' one size unless
    ``images`` says otherwise. Read from the headers: nothing is decoded yet."""
    with _opened(paths[0], decode=False) as img:
        channels = images.channels or (1 if img.mode in GRAY_MODES else 3)
    return (len(paths), channels, *(images.size or _one_size(paths))), np.dtype(np.uint8)


def _one_size(paths: list[Path]) -> tuple[int, int]:
    """The (height, width) every image has: without ``--image-size`` it is the model's input, so the
    images must agree on it (the first image's size silently won) and it may be no larger than
    ``--image-size`` may (a 9000×9000 first image made a gigabytes-large cache of a folder)."""
    with _opened(paths[0], decode=False) as img:
        width, height = first = img.size
    for path in paths[1:]:
        with _opened(path, decode=False) as img:
            if img.size != first:
                raise DataError(f"the images differ in size: '{paths[0]}' is {width}×{height} and '{path}' is "
                                f"{img.width}×{img.height} pixels (width×height)",
                                hint=f"pass --image-size H,W (e.g. --image-size {height},{width}) to resize every "
                                     "image to one size (image_size in a config file)")
    if max(first) > MAX_SIDE:
        raise DataError(f"the images are {width}×{height} pixels (width×height): without --image-size that is "
                        f"the model's input, and its sides may be at most {MAX_SIDE}",
                        hint="pass --image-size H,W (e.g. --image-size 224) to resize every image to that size")
    return height, width


def decode_images(paths: list[Path], out: np.ndarray, progress) -> None:
    """Each image straight into its row of ``out`` (the memory-mapped cache): no list of arrays."""
    mode, size = MODES[out.shape[1]], out.shape[2:]
    step = max(1, len(paths) // PROGRESS_STEPS)
    for i, path in enumerate(paths):
        with _opened(path) as img:
            pixels = np.asarray(fit(img.convert(mode), size))
        out[i] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        if (i + 1) % step == 0 or i + 1 == len(paths):
            progress(i + 1, len(paths))


@contextmanager
def _opened(path: Path, decode: bool = True):
    """The image at ``path`` (its pixels decoded unless ``decode`` is False), its errors as
    DataErrors. Its size is checked from the header first (``Image.open`` reads no pixels):
    against MAX_FILE_SIDE and MAX_ASPECT, and PIL's decompression bomb limit, refused from the
    limit on (PIL only warns between its pixel limit and twice it, then decodes it all)."""
    from PIL import Image

    with _read_errors(path), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(path)
    with img:
        _check_size(path, *img.size)
        if decode:
            with _read_errors(path):
                img.load()
        yield img


@contextmanager
def _read_errors(path: Path):
    """PIL's errors for ``path`` as one DataError each."""
    from PIL import Image, UnidentifiedImageError

    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"image '{path}' is too large to load: {exc}",
                        hint=f"images over {Image.MAX_IMAGE_PIXELS:,} pixels are refused as possible "
                             "decompression bombs: resize or remove it") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"cannot read image '{path}': {exc}", hint="remove or replace the file") from None


def _check_size(path: Path, width: int, height: int) -> None:
    if max(width, height) > MAX_FILE_SIDE or max(width, height) > MAX_ASPECT * min(width, height):
        raise DataError(f"image '{path}' is {width:,}×{height:,} pixels (width×height): edgekd reads images of "
                        f"at most {MAX_FILE_SIDE:,} pixels a side and {MAX_ASPECT}:1 in shape",
                        hint="a larger or longer one is a scan, a panorama or a decompression bomb, "
                             "not a training image: resize or crop it, or remove it")


def transform_dataset(data: Dataset, spec: str, images: ImageOptions, cache: DataCache | None = None) -> Dataset:
    """An array source's images (and its own test split) converted and resized by ``images``, once,
    into the cache; tabular data is refused."""
    if not data.is_image:
        raise DataError(f"--image-size and --channels are for images, but data '{spec}' is tabular "
                        f"(samples of shape {data.input_shape})", hint="drop --image-size and --channels")
    name, _, arg = spec.partition(":")
    cache = cache or DataCache()
    where = Path(arg).expanduser().resolve() if arg else None
    key = {"source": f"{name}:{where}" if where else name, "size": images.size, "channels": images.channels}
    parts = [data.x] + ([data.test[0]] if data.test is not None else [])
    shape = (sum(len(p) for p in parts), *transformed_shape(data.input_shape, images))

    def fill(out: np.ndarray, progress) -> None:
        start = 0
        for part in parts:
            transform_arrays(part, images, out, progress, start)
            start += len(part)

    digest = path_digest(where) if where else _content_digest(data)
    x = cache.load(key, digest, lambda: (shape, output_dtype(data.x.dtype)), fill)
    test = (x[len(data.x):], data.test[1]) if data.test is not None else None
    return Dataset(x[:len(data.x)], data.y, data.labels, data.name, test,
                   image=describe(x.shape[2:], x.shape[1], x.dtype))


def _content_digest(data: Dataset) -> str:
    """A source without a path (digits) is small enough to be its own digest."""
    digest = hashlib.sha256()
    for part in [data.x, data.y] + (list(data.test) if data.test is not None else []):
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()
