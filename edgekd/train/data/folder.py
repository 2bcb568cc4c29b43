"""The ``folder:DIR`` source (one sub-folder of images per class) and the image transform of the
array sources, both decoded once into the uint8 cache (:mod:`.cache`) and memory-mapped from it."""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekd.core.errors import DataError
from edgekd.train.data import Dataset, register_source
from edgekd.train.data.cache import DataCache, path_digest, stat_digest
from edgekd.device.images import (GRAY_MODES, IMAGE_SUFFIXES, MAX_SIDE, ImageOptions, describe, inside_folder, opened,
                                  output_dtype, read_image,
                                  transform_arrays, transformed_shape)
from edgekd.train.data.sources import existing_path

PROGRESS_STEPS = 200


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
    if not has_test_folder(root):
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


def has_test_folder(root: Path) -> bool:
    """``root`` holds exactly the folders ``train`` and ``test`` (and no class named so beside others)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir()) == ["test", "train"]


def _load_classes(root: Path, top: Path, images: ImageOptions, cache: DataCache,
                  least: int = 2) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(class names, the uint8 cache's images, int64 class indices) of one folder of class folders
    inside ``top``, the resolved folder the user gave."""
    listing = list_classes(root, top, least)
    paths = listing.paths
    key = {"source": f"folder:{root.resolve()}", "size": images.size, "channels": images.channels}
    x = cache.load(key, stat_digest(paths, root), lambda: _plan(paths, images),
                   lambda out, progress: decode_images(paths, out, progress))
    return listing.classes, x, np.asarray(listing.targets, np.int64)


@dataclass
class Listing:
    """A folder of class folders as ``folder:`` reads it: class names, image paths and their class
    indices, and the entries it passes over, counted by why (:func:`_passed_over`)."""
    classes: list[str]
    paths: list[Path]
    targets: list[int]
    skipped: Counter[str] = field(default_factory=Counter)


def list_classes(root: Path, top: Path, least: int = 2) -> Listing:
    """``root``'s class folders and their images; ``least`` classes needed (a test split may hold one).
    Every folder and image it names is inside ``top``: only a link can lead out, and each is checked."""
    inside_folder(root, top)
    entries = sorted(root.iterdir())
    classes = [inside_folder(p, top).name for p in entries if p.is_dir()]
    if len(classes) < least:
        raise DataError(f"'{root}' needs at least {'two class sub-folders' if least == 2 else 'one class sub-folder'}, "
                        f"found {len(classes)}")
    listing = Listing(classes, [], [], Counter("files beside the class folders" for p in entries if not p.is_dir()))
    for index, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            why = _passed_over(path, top)
            if why:
                listing.skipped[why] += 1
            else:
                listing.paths.append(path)
                listing.targets.append(index)
    if not listing.paths:
        raise DataError(f"no images found under '{root}'", hint=f"supported: {', '.join(sorted(IMAGE_SUFFIXES))}")
    return listing


def _passed_over(path: Path, top: Path) -> str | None:
    """Why ``path``, an entry of a class folder, is not read as an image; None when it is one."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES and inside_folder(path, top).is_file():
        return None
    if path.is_dir():
        return "folders inside class folders (not read)"
    if suffix not in IMAGE_SUFFIXES:
        return f"{suffix} files" if suffix else "files without a suffix"
    return "not regular files"


def _plan(paths: list[Path], images: ImageOptions) -> tuple[tuple[int, ...], np.dtype]:
    """The cache array's shape: the first image's channels and the images' one size unless
    ``images`` says otherwise. Read from the headers: nothing is decoded yet."""
    with opened(paths[0], decode=False) as img:
        channels = images.channels or (1 if img.mode in GRAY_MODES else 3)
    return (len(paths), channels, *(images.size or _one_size(paths))), np.dtype(np.uint8)


def _one_size(paths: list[Path]) -> tuple[int, int]:
    """The (height, width) every image has: without ``--image-size`` it is the model's input, so the
    images must agree on it (the first image's size silently won) and it may be no larger than
    ``--image-size`` may (a 9000×9000 first image made a gigabytes-large cache of a folder)."""
    with opened(paths[0], decode=False) as img:
        width, height = first = img.size
    for path in paths[1:]:
        with opened(path, decode=False) as img:
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
    channels, size = out.shape[1], out.shape[2:]
    step = max(1, len(paths) // PROGRESS_STEPS)
    for i, path in enumerate(paths):
        out[i] = read_image(path, channels, size)
        if (i + 1) % step == 0 or i + 1 == len(paths):
            progress(i + 1, len(paths))


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
