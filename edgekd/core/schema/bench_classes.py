"""bench.json's per-class results: each evaluated file's accuracy per class and confusion matrix, and the
classes a student lost against a teacher. Declared here and held by :mod:`.bench`'s ``Model`` and
``Comparison`` (a module of its own so each stays short). Torch-free.

:func:`check_classes` is the reader's cross-check of one model's per-class fields: the types alone
would let a confusion matrix of the wrong size, or counts that disagree with the file's accuracy,
through to a report.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Mapping, TypedDict

from edgekd.core.rules import Check
from edgekd.core.schema.fields import FRACTION, WHOLE, Invalid

#: a confusion matrix is written up to this many classes: a million counts, about 3 MB of JSON per
#: file; beyond it a file's per-class accuracy alone
MAX_CONFUSION = 1000
#: per-class accuracy up to this many classes (a reader refuses a longer list before walking it)
MAX_CLASSES = 100_000

COUNT_OR_ZERO = Check("a whole number >= 0", lambda v: WHOLE.test(v) and v >= 0)
#: top-k accuracy is written where it says something top-1 does not: with more than K classes
TOP_K = 5
CLASS_LIST = Check(f"a list of at most {MAX_CLASSES:,} classes",
                   lambda v: isinstance(v, list) and len(v) <= MAX_CLASSES)
MATRIX_ROWS = Check(f"a list of at most {MAX_CONFUSION:,} rows",
                    lambda v: isinstance(v, list) and len(v) <= MAX_CONFUSION)
Counted = Annotated[int, COUNT_OR_ZERO]


class ClassScore(TypedDict):
    """One class of one file on the eval set."""
    label: str                    # the manifest's label (the class index as text where it has none)
    samples: Counted              # eval samples of the class: its confusion row's sum
    correct: Counted              # of them predicted as the class: the row's diagonal cell
    accuracy: Annotated[float | None, FRACTION]     # correct / samples; null: no sample of the class


class LostClass(TypedDict):
    """A class the model gets right less often than the teacher, beyond sampling noise (the test is
    :func:`edgekd.device.bench.classes.lost_classes`'s)."""
    label: str
    samples: Counted
    accuracy: Annotated[float, FRACTION]            # the model's on the class
    teacher_accuracy: Annotated[float, FRACTION]
    only_teacher_right: Counted   # samples of the class the teacher gets right and the model wrong
    only_model_right: Counted     # … and the other way round
    p_value: Annotated[float, FRACTION]             # one-sided exact McNemar, Holm-adjusted over the classes


#: a confusion matrix's rows; declared as lists of anything because the generic check would take
#: seconds over a 1000-class matrix's million cells: :func:`check_classes` checks the cells
Confusion = Annotated[list[Any], MATRIX_ROWS]
PerClass = Annotated[list[ClassScore], CLASS_LIST]
LostClasses = Annotated[list[LostClass], CLASS_LIST]


def check_classes(model: Mapping[str, Any], at: str) -> None:
    """A model's ``per_class``, ``confusion`` and ``top5_accuracy`` agree with one another and with
    its ``accuracy`` and ``eval_samples``; Invalid naming the first field that does not."""
    confusion, per_class = model.get("confusion"), model.get("per_class")
    if confusion is not None:
        _check_matrix(confusion, f"{at}.confusion")
        if per_class is not None:
            _check_rows(confusion, per_class, at)
    for i, c in enumerate(per_class or []):
        _check_score(c, f"{at}.per_class[{i}]")
    if confusion is not None:
        _check_totals(model, sum(map(sum, confusion)), sum(row[i] for i, row in enumerate(confusion)), at)
    elif per_class is not None:
        _check_totals(model, sum(c["samples"] for c in per_class), sum(c["correct"] for c in per_class), at)
    _check_top5(model, len(confusion if confusion is not None else per_class or []), at)


def _check_matrix(confusion: list[Any], at: str) -> None:
    n = len(confusion)
    if n == 0:
        raise Invalid(f"{at} must hold one row per class, got none")
    for i, row in enumerate(confusion):
        if not isinstance(row, list) or len(row) != n:
            size = f"{len(row)} cells" if isinstance(row, list) else type(row).__name__
            raise Invalid(f"{at}[{i}] must be a row of {n} counts (one per class), got {size}")
        if not all(type(v) is int and v >= 0 for v in row):      # bool is no count: type, not isinstance
            raise Invalid(f"{at}[{i}] must hold whole numbers >= 0")


def _check_rows(confusion: list[list[int]], per_class: list[Mapping[str, Any]], at: str) -> None:
    if len(per_class) != len(confusion):
        raise Invalid(f"{at}.per_class has {len(per_class)} classes, but {at}.confusion {len(confusion)}")
    for i, (row, c) in enumerate(zip(confusion, per_class)):
        if c["samples"] != sum(row) or c["correct"] != row[i]:
            raise Invalid(f"{at}.per_class[{i}] ({c['samples']} samples, {c['correct']} correct) disagrees "
                          f"with row {i} of {at}.confusion ({sum(row)} samples, {row[i]} on the diagonal)")


def _check_score(c: Mapping[str, Any], at: str) -> None:
    want = c["correct"] / c["samples"] if c["samples"] else None
    if c["correct"] > c["samples"] or not _same(c["accuracy"], want):
        raise Invalid(f"{at}: accuracy {c['accuracy']!r} is not correct / samples ({c['correct']} / {c['samples']})")


def _check_totals(model: Mapping[str, Any], total: int, right: int, at: str) -> None:
    samples = model.get("eval_samples")
    if isinstance(samples, int) and total != samples:
        raise Invalid(f"{at}'s per-class counts add up to {total} samples, its eval_samples to {samples}")
    if model.get("accuracy") is not None and not _same(model["accuracy"], right / total if total else None):
        raise Invalid(f"{at}.accuracy {model['accuracy']!r} is not its per-class counts' ({right} of {total})")


def _check_top5(model: Mapping[str, Any], classes: int, at: str) -> None:
    top5, top1 = model.get("top5_accuracy"), model.get("accuracy")
    if top5 is None:
        return
    if classes and classes <= TOP_K:
        raise Invalid(f"{at}.top5_accuracy is given for {classes} classes; it is written only for more than {TOP_K}")
    if top1 is not None and top5 < top1 - 1e-9:
        raise Invalid(f"{at}.top5_accuracy {top5!r} is below its top-1 accuracy {top1!r}")


def _same(a: float | None, b: float | None) -> bool:
    """Equal fractions, but for the last bits of float arithmetic (a file's own text round-trips exactly)."""
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
