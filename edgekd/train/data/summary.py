"""What a ``folder:`` source holds, said before a pixel of it is decoded: its classes and images per
class, the images' sizes (read from their headers, once: the cache keeps them while the folder is
unchanged), the entries it passes over and why, and warnings about what ``--image-size`` makes of it
(most images upsampled; decoded images too large to hold lightly). Torch-free."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgekd.core.numbers import size as byte_size
from edgekd.device.images import GRAY_MODES, ImageOptions, opened
from edgekd.train.data.cache import DataCache, stat_digest
from edgekd.train.data.folder import Listing, has_test_folder, list_classes
from edgekd.train.data.sources import existing_path

#: decoded images larger than this (uint8, in the cache on disk, and about as much in memory while
#: training: the held-out split and each fold's training part are copies of their rows) are said so
LARGE_BYTES = 4 << 30
NAMED_CLASSES = 8        # up to this many classes each is named with its count; beyond, the fewest and the most


@dataclass
class FolderPart:
    """One folder of class folders (the source, or its ``train`` or ``test`` half): its listing, its
    images' (width, height) → count, and the channels its first image decodes to without ``--channels``."""
    name: str
    listing: Listing
    sizes: Counter[tuple[int, int]]
    channels: int


@dataclass
class FolderSummary:
    source: str
    parts: list[FolderPart]
    images: ImageOptions
    cache: Path           # where the decoded images go

    @property
    def count(self) -> int:
        return sum(len(part.listing.paths) for part in self.parts)

    def decoded_shape(self) -> tuple[int, int, int] | None:
        """C×H×W of a decoded image (a test half takes the training half's); None where the images'
        several sizes leave it open without ``--image-size`` (loading refuses them)."""
        first = self.parts[0]
        channels = self.images.channels or first.channels
        if self.images.size is not None:
            return channels, *self.images.size
        if len(first.sizes) != 1:
            return None
        (width, height), = first.sizes
        return channels, height, width

    def upsampled(self) -> int:
        """The images smaller than ``--image-size`` in height or width: resized up to cover it."""
        if self.images.size is None:
            return 0
        height, width = self.images.size
        return sum(n for part in self.parts for (w, h), n in part.sizes.items() if w < width or h < height)

    def lines(self) -> list[str]:
        """A line per folder of class folders, and one of the entries passed over (if any)."""
        lines = [f"data {self.source}{' ' + part.name if part.name else ''}: {_classes_text(part.listing)}; "
                 f"{_sizes_text(part.sizes)}" for part in self.parts]
        skipped = sum((part.listing.skipped for part in self.parts), Counter())
        if skipped:
            lines.append(f"skipped {skipped.total():,} entr{'ies' if skipped.total() != 1 else 'y'}: "
                         + ", ".join(f"{why} {n:,}" for why, n in skipped.most_common()))
        return lines

    def warnings(self) -> list[str]:
        """What to know before the images are decoded: most of them upsampled, or a large decoded size."""
        warnings = []
        total, upsampled, shape = self.count, self.upsampled(), self.decoded_shape()
        if self.images.size is not None and 2 * upsampled > total:
            height, width = self.images.size
            every = sum((part.sizes for part in self.parts), Counter())
            warnings.append(f"--image-size {height},{width} upsamples {upsampled:,} of {total:,} images, smaller "
                            f"than {height}×{width} (height×width) in a side ({_sizes_text(every)}): upsampling "
                            "adds pixels to train on, not detail")
        if shape is not None and total * shape[0] * shape[1] * shape[2] > LARGE_BYTES:
            channels, height, width = shape
            warnings.append(f"the decoded images take {byte_size(total * channels * height * width)} "
                            f"({total:,} × {channels}×{height}×{width} bytes, uint8) in the image cache "
                            f"'{self.cache}', and about as much memory while training: a smaller --image-size "
                            "takes less")
        return warnings


def summarize_folder(arg: str | None, images: ImageOptions = ImageOptions(),
                     cache: DataCache | None = None) -> FolderSummary:
    """``folder:ARG`` as ``load_folder`` will read it (the same listing and the same refusals: a link
    out of the folder, too few class folders, no image), from the images' headers: nothing decoded."""
    root = existing_path(arg, "folder", "folder")
    top, cache = root.resolve(), cache or DataCache()
    halves = [("train", root / "train", 2), ("test", root / "test", 1)] if has_test_folder(root) else [("", root, 2)]
    return FolderSummary(f"folder:{root}", [_part(name, folder, top, cache, least) for name, folder, least in halves],
                         images, cache.folder)


def _part(name: str, folder: Path, top: Path, cache: DataCache, least: int) -> FolderPart:
    listing = list_classes(folder, top, least)
    key = {"source": f"folder:{folder.resolve()}", "document": "headers"}
    headers = cache.document(key, stat_digest(listing.paths, folder), lambda: _headers(listing.paths))
    sizes = Counter({(width, height): n for width, height, n in headers["sizes"]})
    return FolderPart(name, listing, sizes, 1 if headers["mode"] in GRAY_MODES else 3)


def _headers(paths: list[Path]) -> dict:
    """Every image's size and the first one's mode, from the headers (a header that cannot be read,
    or too large an image, is the DataError loading would raise, only sooner)."""
    sizes: Counter[tuple[int, int]] = Counter()
    mode = None
    for path in paths:
        with opened(path, decode=False) as img:
            sizes[img.size] += 1
            mode = mode or img.mode
    return {"sizes": [[width, height, n] for (width, height), n in sorted(sizes.items())], "mode": mode}


def _classes_text(listing: Listing) -> str:
    """``3 classes, 12 images (cat 4, dog 4, fox 4)``; with many classes, the fewest and the most per class."""
    counts = Counter(listing.targets)
    per_class = [(name, counts[index]) for index, name in enumerate(listing.classes)]
    if len(per_class) <= NAMED_CLASSES:
        detail = ", ".join(f"{name} {n:,}" for name, n in per_class)
    else:
        (fewest, low), (most, high) = min(per_class, key=lambda c: c[1]), max(per_class, key=lambda c: c[1])
        detail = f"{low:,} ('{fewest}') to {high:,} ('{most}') per class"
    classes = len(per_class)
    return f"{classes} class{'es' if classes != 1 else ''}, {len(listing.paths):,} images ({detail})"


def _sizes_text(sizes: Counter[tuple[int, int]]) -> str:
    """``all 28×28 pixels (width×height)``, or the range of widths and of heights."""
    if len(sizes) == 1:
        (width, height), = sizes
        return f"all {width}×{height} pixels (width×height)"
    widths, heights = [w for w, _ in sizes], [h for _, h in sizes]
    return (f"{len(sizes):,} sizes: widths {min(widths)}–{max(widths)}, "
            f"heights {min(heights)}–{max(heights)} pixels")
