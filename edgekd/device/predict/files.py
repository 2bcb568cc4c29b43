"""``edgekd predict``'s inputs: image files, folders of them (recursively) and npz archives, each
turned into predictions a batch at a time. Torch-free.

An unreadable image is one DataError naming it; with ``skip_bad`` it is counted and passed over
instead, and the rest are predicted. A folder's links that lead out of it are refused as
``folder:`` refuses them. An npz's ``x`` holds samples already preprocessed (float, as the bundle's
``eval.npz``) or uint8 pictures (N×H×W×C); it is opened as bench opens eval data (never unpickled,
never inflated past its limit).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from edgekd.core.errors import DataError
from edgekd.core.npzfile import read_arrays
from edgekd.device.images import IMAGE_SUFFIXES, image_files
from edgekd.device.predict import Prediction, Predictor

#: images decoded before the model runs on them (a memory bound for a folder of any size)
BATCH = 64
NPZ = ".npz"
SAVE_HINT = "save the samples with np.savez(path, x=...)"


@dataclass
class Skipped:
    """The inputs ``skip_bad`` passed over: (source, the error's message) each."""
    items: list[tuple[str, str]] = field(default_factory=list)


def expand(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files as given, folders as their image files (sorted, sub-folders too); a path that is
    neither, or a folder without images, is a DataError."""
    out: list[Path] = []
    for given in map(Path, inputs):
        if given.is_dir():
            found = image_files(given, given.resolve(), "make it readable, or leave it out of the inputs")
            if not found:
                raise DataError(f"no images found under '{given}'", hint=f"supported: {', '.join(sorted(IMAGE_SUFFIXES))}")
            out += found
        elif given.is_file():
            out.append(given)
        else:
            raise DataError(f"input '{given}' not found", hint="give image files, folders of them, or an .npz")
    return out


def predict_paths(predictor: Predictor, paths: list[Path], top_k: int, skipped: Skipped | None = None
                  ) -> Iterator[Prediction]:
    """Each path's predictions in order (an npz: one per sample), a batch of images at a time.
    ``skipped``: collect the images that cannot be read there instead of raising."""
    if any(path.suffix.lower() != NPZ for path in paths):
        predictor.contract.accepts_pictures()         # before --skip-bad could count every file as unreadable
    images: list[tuple[str, np.ndarray]] = []
    for path in paths:
        if path.suffix.lower() == NPZ:
            yield from _flush(predictor, images, top_k)
            yield from _npz(predictor, path, top_k)
            continue
        try:
            images.append((str(path), predictor.preprocess(path)))
        except DataError as exc:
            if skipped is None:
                raise
            skipped.items.append((str(path), exc.message))
        if len(images) == BATCH:
            yield from _flush(predictor, images, top_k)
    yield from _flush(predictor, images, top_k)


def _flush(predictor: Predictor, images: list[tuple[str, np.ndarray]], top_k: int) -> Iterator[Prediction]:
    """The predictions of the decoded ``images`` (which it empties)."""
    if not images:
        return
    batch = np.concatenate([x for _, x in images])
    rows = predictor.runtime.logits(batch)
    for (source, _), row in zip(images, rows):
        yield replace(predictor.top(row, top_k), source=source)
    images.clear()


def _npz(predictor: Predictor, path: Path, top_k: int) -> Iterator[Prediction]:
    x = load_x(path)
    for start in range(0, len(x), BATCH):
        for i, p in enumerate(predictor.predict(x[start:start + BATCH], top_k), start):
            yield replace(p, source=f"{path}[{i}]")


def load_x(path: Path) -> np.ndarray:
    """The array ``x`` of an npz (checked as bench checks eval data before numpy reads it): uint8
    pictures N×H×W×C, or float samples N×…; never one picture cut into rows."""
    x = read_arrays(path, ("x",), DataError, SAVE_HINT)["x"]
    if x.dtype == np.uint8 and x.ndim != 4:
        raise DataError(f"'{path}': uint8 x must be a batch of pictures N×H×W×C, got shape {x.shape}",
                        hint="one picture: save it as x=frame[None]; float x holds preprocessed samples")
    if x.ndim < 2 or not len(x) or x.dtype.kind not in "uf":
        raise DataError(f"'{path}': x must be a batch of uint8 pictures or float samples, got {x.dtype} of "
                        f"shape {x.shape}", hint=SAVE_HINT)
    return x
