"""Held-out test split, k folds and the student's subset — all stratified and seeded.
Uses scikit-learn (a training-side dependency; the device never imports this)."""
from __future__ import annotations

import math

import numpy as np

from edgekd.core.errors import DataError
from edgekd.train.data import Dataset


def holdout(data: Dataset, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, train_y, test_x, test_y); a source's own test split wins over a random one."""
    if data.test is not None:
        return data.x, data.y, data.test[0], data.test[1]
    train, test = _split(data.y, test_fraction, seed, data.labels, "the held-out test split")
    return data.x[train], data.y[train], data.x[test], data.y[test]


def folds(y: np.ndarray, count: int, validation_fraction: float, seed: int,
          labels: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold (train, validation) indices; ``count == 1`` is one stratified split."""
    from sklearn.model_selection import StratifiedKFold

    if count == 1:
        train, val = _split(y, validation_fraction, seed, labels, "the validation split of --folds 1")
        return [(np.sort(train), np.sort(val))]
    # at least `count` per class: every validation fold then gets one of each, every training part count − 1
    _require_per_class(y, count, labels, f"{count}-fold cross-validation")
    splitter = StratifiedKFold(n_splits=count, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def _split(y: np.ndarray, fraction: float, seed: int, labels: list[str], purpose: str) -> tuple[np.ndarray, np.ndarray]:
    """One stratified (train, held) split in which both parts hold every class; checked up
    front where scikit-learn would fail, and after where its rounding leaves a class out."""
    from sklearn.model_selection import train_test_split

    _require_per_class(y, 2, labels, purpose)
    _require_split_sizes(len(y), len(labels), fraction, purpose)
    train, held = train_test_split(np.arange(len(y)), test_size=fraction, stratify=y, random_state=seed)
    for part, name in ((held, purpose), (train, f"the training part beside {purpose}")):
        missing = np.setdiff1d(np.arange(len(labels)), y[part])
        if missing.size:
            shown = ", ".join(f"'{labels[c]}'" for c in missing[:5])
            raise DataError(f"{name} (--test-fraction {fraction}) gets no sample of class {shown}",
                            hint="those classes have too few samples for this split: add samples, "
                                 "drop the classes, or change --test-fraction")
    return train, held


def _require_split_sizes(total: int, classes: int, fraction: float, purpose: str) -> None:
    """Both parts of a stratified split need at least one sample per class (scikit-learn's
    rule, which would otherwise fail with a message about ``test_size``)."""
    held = math.ceil(fraction * total)         # scikit-learn rounds the held-out part up
    lowest, highest = math.ceil(1000 * classes / total) / 1000, math.floor(1000 * (total - classes) / total) / 1000
    if held < classes:
        raise DataError(f"{purpose} (--test-fraction {fraction}) would hold {held} of {total} samples, "
                        f"fewer than the {classes} classes", hint=f"use --test-fraction {lowest} or more, or add samples")
    if total - held < classes:
        raise DataError(f"the training part beside {purpose} (--test-fraction {fraction}) would hold "
                        f"{total - held} of {total} samples, fewer than the {classes} classes",
                        hint=f"use --test-fraction {highest} or less, or add samples")


def stratified_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``fraction`` of each class (at least one sample each), sorted indices."""
    if fraction >= 1.0:
        return np.arange(len(y))
    return _stratified_sample(y, _subset_quota(y, fraction), seed)


def withheld(y: np.ndarray, fraction: float) -> int:
    """How many samples of ``y`` ``stratified_subset`` leaves out (``--unlabelled rest``'s size)."""
    return 0 if fraction >= 1.0 else len(y) - int(_subset_quota(y, fraction).sum())


def _subset_quota(y: np.ndarray, fraction: float) -> np.ndarray:
    counts = np.unique(y, return_counts=True)[1]
    return np.maximum(1, np.round(fraction * counts)).astype(int)


def stratified_indices(y: np.ndarray, samples: int, seed: int = 0) -> np.ndarray:
    """``samples`` indices (all of them if there are fewer), each class in proportion to its
    share and at least one of each where ``samples`` allows; sorted."""
    if samples >= len(y):
        return np.arange(len(y))
    counts = np.unique(y, return_counts=True)[1]
    quota = np.minimum(np.maximum(1, np.floor(counts / len(y) * samples)).astype(int), counts)
    # hand out what rounding left over to the largest remainders
    while quota.sum() < samples:
        frac = counts / len(y) * samples - quota
        frac[counts - quota <= 0] = -np.inf
        quota[int(np.argmax(frac))] += 1
    while quota.sum() > samples:
        quota[int(np.argmax(quota))] -= 1
    return _stratified_sample(y, quota, seed)


def _stratified_sample(y: np.ndarray, quota: np.ndarray, seed: int) -> np.ndarray:
    """The one sampling rule: ``quota[i]`` samples of the i-th class (in ``np.unique`` order), the
    first of a seeded permutation of that class's indices; sorted."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(np.unique(y), quota)]
    return np.sort(np.concatenate(chosen))


def _require_per_class(y: np.ndarray, minimum: int, labels: list[str], purpose: str) -> None:
    counts = np.bincount(y, minlength=len(labels))
    short = [(labels[c], int(n)) for c, n in enumerate(counts) if n < minimum]
    if short:
        shown = ", ".join(f"'{name}' has {n}" for name, n in short[:5])
        raise DataError(f"too few samples per class for {purpose}: {shown} (need {minimum})",
                        hint="use fewer --folds, add samples, or drop the class")

