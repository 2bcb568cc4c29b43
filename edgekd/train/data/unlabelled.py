"""Transfer sets (``--unlabelled SOURCE``): images without labels that the student learns from the
teacher's soft targets alone (Hinton et al. 2015, arXiv:1503.02531, section 2: the *transfer set*
need not be labelled). Torch-free.

Sources: ``folder:DIR`` (image files anywhere under DIR, no class folders), ``npz:PATH`` (an array
``x``; a ``y`` beside it is ignored), ``idx:FILE`` (an IDX images file), and ``rest`` — the part of
each training split whose labels ``--student-fraction`` withholds (cut per split by the trio, so
nothing is loaded here). Every image becomes what a labelled sample is: a folder's images are
decoded at the labelled data's channels and size; arrays go through the run's ``--image-size``
and ``--channels`` and must then have the labelled samples' shape.

An image that is also a labelled or held-out sample (the same bytes after that transform) is
dropped: a validation or test image in the transfer set would let the teacher's knowledge of it
leak into the student's score.
"""
from __future__ import annotations

import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgekd.core.errors import ConfigError, DataError
from edgekd.core.registry import Registry
from edgekd.train.data import Dataset, as_images_or_table
from edgekd.train.data.cache import DataCache, stat_digest
from edgekd.train.data.folder import decode_images, transform_dataset
from edgekd.device.images import IMAGE_SUFFIXES, MODES, ImageOptions, image_files
from edgekd.train.data.sources import existing_path, mapped_member, read_idx
from edgekd.core.npzfile import check_npz

REST = "rest"          # not a loader: the trio cuts it from each split
OPTION = "--unlabelled"


@dataclass
class TransferSet:
    """An external transfer set: its raw samples (often the memory-mapped uint8 cache), the rows kept
    (the others repeat a labelled or held-out sample) and how many were dropped so."""
    source: str
    x: np.ndarray
    keep: np.ndarray
    dropped: int

    def __len__(self) -> int:
        return len(self.keep)


Loader = Callable[[str | None, Dataset, ImageOptions, DataCache], np.ndarray]
TRANSFER_SOURCES: Registry[Loader] = Registry("transfer set source (--unlabelled)", ConfigError)


def load_transfer(spec: str, data: Dataset, images: ImageOptions, cache: DataCache) -> TransferSet | None:
    """The transfer set of ``--unlabelled spec`` for the labelled ``data`` (None for ``rest``: the
    trio cuts it per split); one DataError when it cannot be read or brought to ``data``'s shape."""
    name, _, arg = spec.partition(":")
    if name == REST:
        return None
    x = TRANSFER_SOURCES.get(name)(arg or None, data, images, cache)
    if x.dtype != data.x.dtype:         # standardised with the labelled data's statistics: one scale for both
        raise DataError(f"the transfer set '{spec}' holds {x.dtype} values, the labelled data {data.x.dtype}",
                        hint="save both with one type and scale (8-bit images as uint8 0..255); a folder: transfer "
                             "set decodes to uint8, so it goes with labelled images stored as uint8")
    if tuple(x.shape[1:]) != data.input_shape:
        raise DataError(f"the transfer set '{spec}' has samples of shape {tuple(x.shape[1:])}, the labelled data "
                        f"{data.input_shape} (channels, height, width)",
                        hint="--image-size and --channels bring both to one shape; a folder: transfer set is "
                             "decoded at the labelled data's shape by itself")
    keep = unseen_rows(x, [data.x] + ([data.test[0]] if data.test is not None else []))
    if not len(keep):
        raise DataError(f"every image of the transfer set '{spec}' is also a labelled or held-out sample",
                        hint="give images the labelled data does not hold, or --unlabelled rest")
    return TransferSet(spec, x, keep, len(x) - len(keep))


def unseen_rows(x: np.ndarray, seen: list[np.ndarray]) -> np.ndarray:
    """The indices of the rows of ``x`` whose bytes are in no array of ``seen`` (each of ``x``'s row
    shape and dtype, checked by the caller: bytes of another type would match nothing)."""
    known = {_digest(row) for part in seen for row in part}
    return np.asarray([i for i, row in enumerate(x) if _digest(row) not in known], np.int64)


def _digest(row: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(row).tobytes(), digest_size=16).digest()


@TRANSFER_SOURCES.register("npz")
def _npz(arg: str | None, data: Dataset, images: ImageOptions, cache: DataCache) -> np.ndarray:
    """The array ``x`` of an npz (memory-mapped when stored uncompressed); the rest is ignored."""
    path = existing_path(arg, "npz", "file", OPTION)
    check_npz(path, DataError)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive.files:
                raise DataError(f"'{path}' has no array 'x'", hint=f"it holds: {', '.join(archive.files) or 'nothing'}; "
                                                                  "save the images with np.savez(path, x=...)")
            x = mapped_member(archive, path, "x")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"cannot read '{path}' as npz: {exc}", hint="write it with np.savez(path, x=...)") from None
    return _transformed(as_images_or_table(x, str(path)), f"npz:{path}", images, cache)


@TRANSFER_SOURCES.register("idx")
def _idx(arg: str | None, data: Dataset, images: ImageOptions, cache: DataCache) -> np.ndarray:
    """One IDX images file (``…-images-idx3-ubyte[.gz]``)."""
    path = existing_path(arg, "idx", "file", OPTION)
    return _transformed(as_images_or_table(read_idx(path), str(path)), f"idx:{path}", images, cache)


def _transformed(x: np.ndarray, spec: str, images: ImageOptions, cache: DataCache) -> np.ndarray:
    """``x`` through ``--image-size``/``--channels`` into the cache, as the labelled arrays are."""
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"the transfer set '{spec}' holds no samples", hint="give a file with at least one image")
    if not images.given:
        return x
    unlabelled = Dataset(x, np.zeros(len(x), np.int64), [], spec)
    return transform_dataset(unlabelled, f"unlabelled-{spec}", images, cache).x


@TRANSFER_SOURCES.register("folder")
def _folder(arg: str | None, data: Dataset, images: ImageOptions, cache: DataCache) -> np.ndarray:
    """Every image file under DIR (sub-folders too, in sorted order), decoded at the labelled data's
    channels and size into the cache; a link out of DIR is refused as ``folder:`` refuses it."""
    root = existing_path(arg, "folder", "folder", OPTION)
    if not data.is_image:
        raise DataError(f"--unlabelled folder:{root} holds images, but the labelled data is tabular "
                        f"(samples of shape {data.input_shape})", hint="give an npz:PATH of rows like the data's")
    top = root.resolve()
    paths = image_files(root, top, "make it readable, or move it out of the folder given to --unlabelled")
    if not paths:
        raise DataError(f"no images found under '{root}' (--unlabelled)",
                        hint=f"supported: {', '.join(sorted(IMAGE_SUFFIXES))}")
    channels, height, width = data.input_shape
    if channels not in MODES:
        raise DataError(f"--unlabelled folder:{root} decodes gray or RGB images, but the labelled samples have "
                        f"{channels} channels", hint="give the transfer set as an npz:PATH of arrays like the data's")
    key = {"source": f"unlabelled-folder:{top}", "size": [height, width], "channels": channels}
    return cache.load(key, stat_digest(paths, root), lambda: ((len(paths), channels, height, width), np.dtype(np.uint8)),
                      lambda out, progress: decode_images(paths, out, progress))
