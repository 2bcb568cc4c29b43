"""``cv.json``: what ``edgekd distill`` writes into the run folder (and ``run_experiment`` returns).
Torch-free and numpy-free.

The TypedDicts below are the document's shape, declared once: :func:`from_json`, the reader's
check (:func:`read`: the sweep, ``benchmarks/``), is derived from them, and :func:`to_json`, the
writer's text, runs it first, so a written cv.json always passes the reader's check.
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, TypedDict

from edgekd.core.errors import ModelError
from edgekd.core.schema import TRAINED_ROLES
from edgekd.core.schema.fields import Count, Keys, check_document
from edgekd.core.schema.jsonfile import json_text, read_json

CV_FILE = "cv.json"
#: a run folder's resolved configuration (``DistillConfig.to_toml``), and the line it starts with
CONFIG_FILE = "config.toml"
CONFIG_HEADER = "# edgekd distill configuration"


class Stats(TypedDict):
    mean: float
    std: float              # sample standard deviation over folds (0 for one fold)
    min: float
    max: float


class GapStats(TypedDict):
    """``cv.gap_closed``: :class:`Stats` of the folds' ``gap_closed`` over the folds where it is
    defined (each None where it is in none), and how many those are."""
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    folds: int


class _Summary(TypedDict):
    """``cv``: each role's accuracy over the folds, and the distillation gain (student − simple)."""
    teacher: Stats
    student: Stats
    simple: Stats
    distillation_gain: Stats


class Summary(_Summary, total=False):
    gap_closed: GapStats    # absent from a cv.json written before it (edgekd.core.gap.cv_gap_closed: its folds')


class ModelInfo(TypedDict):
    arch: str
    parameters: int | None  # None: a brought ONNX or .pt2 teacher has no torch layers to count
    macs: int | None


class _Data(TypedDict):
    source: str
    classes: int
    labels: list[str]
    input_shape: list[int]
    image: dict[str, Any] | None      # the image transform (edgekd.device.images.describe); None: none was applied
    cv_samples: int
    test_samples: int


class Transfer(TypedDict):
    """``data.unlabelled``: the transfer set of ``--unlabelled`` from a file or folder (``rest`` is cut
    per split: each split's ``unlabelled_samples`` says how many)."""
    source: str
    samples: Count           # the images kept
    dropped: Count           # the images that were labelled or held-out samples too


class Data(_Data, total=False):
    unlabelled: Transfer


class Qat(TypedDict):
    """``final.student.qat``, present when ``--qat-epochs`` fine-tuned the final student with fake
    quantization (``edgekd.train.distill.qat``); every accuracy is on the held-out test split."""
    epochs: Count
    lr: float
    seconds: float
    accuracy_before: float          # the distilled student, before QAT
    accuracy_after: float           # the float student with the QAT-trained weights: the run's student
    fake_quant_accuracy: float      # the QAT graph itself, fake int8 in place
    quantizer: str
    export: str                     # what export does with it (re-calibrates; no QAT ranges carried)
    history: list[dict[str, Any]]


class _Scored(TypedDict):
    accuracy: float


class Stage(_Scored, total=False):
    """One role's entry of a split: its ``accuracy`` and its stage info (trained, epochs, seconds,
    samples_per_second, the step mode: precision, memory_format, mode_why and compiled (absent from a cv.json
    written before them), history, whose val_accuracy is on at most 2,000 rows of the split's evaluation part;
    a brought teacher: trained false and its source; the final student with --qat-epochs: ``qat``), left as
    written but for the QAT record."""
    qat: Qat


class _Split(TypedDict):
    split: str
    train_samples: int
    student_samples: int
    eval_samples: int
    teacher: Stage
    student: Stage
    simple: Stage


class Split(_Split, total=False):
    """One split (a fold, or "final": trained on all non-test data, scored on the test split)."""
    # (student − simple) / (teacher − simple) on this split (edgekd.core.gap); None where the teacher is
    # not ahead of the simple model; absent from a cv.json written before it
    gap_closed: float | None
    unlabelled_samples: Count      # --unlabelled: the transfer set's images the student learned from here


class Document(TypedDict):
    schema_version: int
    config: dict[str, Any]                    # the resolved DistillConfig
    data: Data
    models: Annotated[dict[str, ModelInfo], Keys(TRAINED_ROLES)]     # role -> ModelInfo
    folds: list[Split]
    cv: Summary
    test: Annotated[dict[str, float], Keys(TRAINED_ROLES)]  # role -> held-out accuracy of the final split
    final: Split
    samples_per_second: dict[str, float]    # role -> training throughput (trained roles only)
    seconds: float
    world_size: int
    device: str


def read(folder: Path) -> Document:
    """The cv.json of the run folder ``folder``, strict JSON and checked (:func:`from_json`)."""
    path = Path(folder) / CV_FILE
    return from_json(read_json(path, CV_FILE, ModelError), f"'{path}'")


def from_json(doc: dict[str, Any], where: str) -> Document:
    """The cv.json document in ``doc``, checked against :class:`Document`; one ModelError naming the
    field otherwise."""
    check_document(doc, Document, where, "cv.json", ModelError)
    if not doc["folds"]:
        raise ModelError(f"{where}: folds must list at least one fold")
    return typing.cast(Document, doc)


def to_json(doc: Document) -> str:
    """The file's text: checked by the reader's rules first (a writer's bug fails here)."""
    return json_text(from_json(dict(doc), f"the {CV_FILE} being written"))
