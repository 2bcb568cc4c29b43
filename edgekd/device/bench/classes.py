"""Per-class results of a bench: each evaluated file's confusion matrix, per-class accuracy and top-5
accuracy, and the classes a student lost against a teacher. Torch-free.

The counting over the eval set (:func:`class_counts`) runs in the worker, from the logits it already
has; the rest runs in the parent on counts and on the files' top-1 predictions.
"""
from __future__ import annotations

from math import comb
from typing import Any, Mapping, Sequence

import numpy as np

from edgekd.core.schema.bench_classes import MAX_CLASSES, MAX_CONFUSION, TOP_K, ClassScore, LostClass

#: a class is lost when the chance that noise alone made its drop (adjusted over the classes) is below this
SIGNIFICANCE = 0.05


def class_counts(logits: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """One file's counts on the eval set: ``samples`` and ``correct`` per class, the ``confusion``
    matrix (rows: true class, columns: predicted; None beyond MAX_CONFUSION classes) and
    ``top5_accuracy`` (None with TOP_K classes or fewer, where every sample would be a hit)."""
    classes = int(logits.shape[1])
    pred = np.argmax(logits, axis=1)
    out: dict[str, Any] = {"classes": classes, "samples": np.bincount(y, minlength=classes).tolist(),
                           "correct": np.bincount(y[pred == y], minlength=classes).tolist(),
                           "confusion": None, "top5_accuracy": None}
    if classes <= MAX_CONFUSION:
        matrix = np.zeros((classes, classes), np.int64)
        np.add.at(matrix, (y, pred), 1)
        out["confusion"] = matrix.tolist()
    if classes > TOP_K and len(y):
        # a hit when fewer than K classes score strictly above the true one: a top-1 hit (the argmax)
        # is then always a top-5 hit, ties included, so top-5 >= top-1 holds exactly
        true_score = logits[np.arange(len(y)), y]
        out["top5_accuracy"] = float(np.mean((logits > true_score[:, None]).sum(axis=1) < TOP_K))
    return out


def label_names(labels: Sequence[Any] | None, classes: int) -> list[str]:
    """The manifest's label of each class index, else the index as text (a single file, or a
    manifest with fewer labels than the model has outputs)."""
    labels = list(labels or [])
    return [str(labels[i]) if i < len(labels) else str(i) for i in range(classes)]


def per_class(counts: Mapping[str, Any], labels: Sequence[Any] | None) -> list[ClassScore] | None:
    """Each class's samples, correct predictions and accuracy, in class-index order."""
    if counts["classes"] > MAX_CLASSES:
        return None
    names = label_names(labels, counts["classes"])
    return [ClassScore(label=name, samples=n, correct=right, accuracy=right / n if n else None)
            for name, n, right in zip(names, counts["samples"], counts["correct"])]


def lost_classes(y: Sequence[int], model: Sequence[int], teacher: Sequence[int],
                 names: Sequence[str]) -> list[LostClass]:
    """The classes the model gets right less often than the teacher beyond sampling noise, largest
    drop first. ``y``: the eval labels; ``model``, ``teacher``: the two files' top-1 predictions.

    Why this test: both files answer the same samples, so a class's samples both get right (or both
    wrong) say nothing about which is better; the evidence is the discordant ones, those only the
    teacher gets right against those only the model does. With no real difference each discordant
    sample is a fair coin, so the one-sided exact McNemar (sign) test gives the chance of a drop at
    least this large from noise alone; exact because a class has few samples. Holm's adjustment over
    the classes tested keeps the chance of naming *any* class lost by noise at 5 %: unadjusted, a
    student as good as its teacher would lose a class by chance in most runs of a 100-class model.
    """
    n = len(names)
    samples, right, ref_right, only_ref, only_model = ([0] * n for _ in range(5))
    for truth, m, t in zip(y, model, teacher):
        samples[truth] += 1
        right[truth] += m == truth
        ref_right[truth] += t == truth
        only_ref[truth] += t == truth and m != truth
        only_model[truth] += m == truth and t != truth
    tested = [c for c in range(n) if only_ref[c] + only_model[c]]
    adjusted = holm({c: sign_test(only_ref[c], only_model[c]) for c in tested})
    lost = [LostClass(label=names[c], samples=samples[c], accuracy=right[c] / samples[c],
                      teacher_accuracy=ref_right[c] / samples[c], only_teacher_right=only_ref[c],
                      only_model_right=only_model[c], p_value=adjusted[c])
            for c in tested if only_ref[c] > only_model[c] and adjusted[c] < SIGNIFICANCE]
    return sorted(lost, key=lambda c: c["accuracy"] - c["teacher_accuracy"])


def sign_test(wins: int, losses: int) -> float:
    """P(X >= wins) for X ~ Binomial(wins + losses, 1/2): exact, in whole numbers until the division."""
    total = wins + losses
    return sum(comb(total, k) for k in range(wins, total + 1)) / 2 ** total


def holm(p_values: Mapping[int, float]) -> dict[int, float]:
    """Holm's step-down adjusted p-values (each at most 1, never below an earlier one's)."""
    m = len(p_values)
    adjusted, running = {}, 0.0
    for rank, (key, p) in enumerate(sorted(p_values.items(), key=lambda kv: kv[1])):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[key] = running
    return adjusted


def class_drops(model: Mapping[str, Any], teacher: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """(label, teacher accuracy, model accuracy) of every class the model scores lower on, largest
    drop first: what the lost-classes line names when no drop is beyond noise."""
    pairs = zip(model.get("per_class") or [], teacher.get("per_class") or [])
    drops = [(m["label"], t["accuracy"], m["accuracy"]) for m, t in pairs
             if m["accuracy"] is not None and t["accuracy"] is not None and m["accuracy"] < t["accuracy"]]
    return sorted(drops, key=lambda d: d[2] - d[1])
