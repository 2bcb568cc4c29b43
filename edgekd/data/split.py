"""Held-out test split, k folds and the student's subset — all stratified and seeded.
Uses scikit-learn (a training-side dependency; the device never imports this)."""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from . import Dataset


def holdout(data: Dataset, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, train_y, test_x, test_y); a source's own test split wins over a random one."""
    if data.test is not None:
        return data.x, data.y, data.test[0], data.test[1]
    _require_per_class(data.y, 2, data.labels, "a stratified held-out test split")
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(data.y)), test_size=test_fraction,
                                   stratify=data.y, random_state=seed)
    return data.x[train], data.y[train], data.x[test], data.y[test]


def folds(y: np.ndarray, count: int, validation_fraction: float, seed: int,
          labels: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold (train, validation) indices; ``count == 1`` is one stratified split."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    _require_per_class(y, max(count, 2), labels, f"{count}-fold cross-validation")
    if count == 1:
        train, val = train_test_split(np.arange(len(y)), test_size=validation_fraction, stratify=y, random_state=seed)
        return [(np.sort(train), np.sort(val))]
    splitter = StratifiedKFold(n_splits=count, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def stratified_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``fraction`` of each class (at least one sample each), sorted indices."""
    if fraction >= 1.0:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(y == c))[:max(1, round(fraction * int((y == c).sum())))]
              for c in np.unique(y)]
    return np.sort(np.concatenate(chosen))


def _require_per_class(y: np.ndarray, minimum: int, labels: list[str], purpose: str) -> None:
    counts = np.bincount(y, minlength=len(labels))
    short = [(labels[c], int(n)) for c, n in enumerate(counts) if n < minimum]
    if short:
        shown = ", ".join(f"'{name}' has {n}" for name, n in short[:5])
        raise DataError(f"too few samples per class for {purpose}: {shown} (need {minimum})",
                        hint="use fewer --folds, add samples, or drop the class")

