"""``cv.json``: what ``edgekd distill`` writes into the run folder (and ``run_experiment`` returns).
Torch-free and numpy-free.

The TypedDicts below are the document's shape. :func:`to_json` is the writer's (it checks the
document before it is written, so a written cv.json always passes the reader's check) and
:func:`from_json` the reader's (``benchmarks/demo_figures.py``): the fields the report, the terminal
table and the benchmarks read.
"""
from __future__ import annotations

from typing import TypedDict

from edgekd.core.errors import ModelError
from edgekd.core.schema import TRAINED_ROLES
from edgekd.core.schema.fields import COUNT, LIST, NUMBER, OBJECT, TEXT, WHOLE, check_fields
from edgekd.core.schema.jsonfile import check_version

CV_FILE = "cv.json"
#: a run folder's resolved configuration (``DistillConfig.to_toml``), and the line it starts with
CONFIG_FILE = "config.toml"
CONFIG_HEADER = "# edgekd distill configuration"


class Stats(TypedDict):
    mean: float
    std: float              # sample standard deviation over folds (0 for one fold)
    min: float
    max: float


class ModelInfo(TypedDict):
    arch: str
    parameters: int | None  # None: a brought ONNX or .pt2 teacher has no torch layers to count
    macs: int | None


class Data(TypedDict):
    source: str
    classes: int
    labels: list[str]
    input_shape: list[int]
    image: dict | None      # the image transform (edgekd.train.data.images.describe); None: none was applied
    cv_samples: int
    test_samples: int


class Qat(TypedDict):
    """``final.student.qat``, present when ``--qat-epochs`` fine-tuned the final student with fake
    quantization (``edgekd.train.distill.qat``); every accuracy is on the held-out test split."""
    epochs: int
    lr: float
    seconds: float
    accuracy_before: float          # the distilled student, before QAT
    accuracy_after: float           # the float student with the QAT-trained weights: the run's student
    fake_quant_accuracy: float      # the QAT graph itself, fake int8 in place
    quantizer: str
    export: str                     # what export does with it (re-calibrates; no QAT ranges carried)
    history: list[dict]


QAT = {"epochs": COUNT, "lr": NUMBER, "seconds": NUMBER, "accuracy_before": NUMBER, "accuracy_after": NUMBER,
       "fake_quant_accuracy": NUMBER, "quantizer": TEXT, "export": TEXT, "history": LIST}


class Split(TypedDict):
    """One split (a fold, or "final": trained on all non-test data, scored on the test split);
    each role's entry holds its ``accuracy`` and its stage info (trained, epochs, seconds,
    samples_per_second, precision, history; a brought teacher: trained false and its source; the final
    student with --qat-epochs: ``qat``, a :class:`Qat`)."""
    split: str
    train_samples: int
    student_samples: int
    eval_samples: int
    teacher: dict
    student: dict
    simple: dict


class Document(TypedDict):
    schema_version: int
    config: dict                    # the resolved DistillConfig
    data: Data
    models: dict[str, ModelInfo]    # role -> ModelInfo
    folds: list[Split]
    cv: dict[str, Stats]            # role -> accuracy over folds, and "distillation_gain" (student - simple)
    test: dict[str, float]          # role -> held-out accuracy of the final split
    final: Split
    samples_per_second: dict[str, float]    # role -> training throughput (trained roles only)
    seconds: float
    world_size: int
    device: str


TOP = {"config": OBJECT, "data": OBJECT, "models": OBJECT, "folds": LIST, "cv": OBJECT, "test": OBJECT,
       "final": OBJECT, "samples_per_second": OBJECT, "seconds": NUMBER, "world_size": WHOLE,
       "device": TEXT}
SPLIT = {"split": TEXT, **{role: OBJECT for role in TRAINED_ROLES}}


def from_json(doc: dict, where: str) -> Document:
    """The cv.json document in ``doc``, checked; one ModelError naming the field otherwise."""
    check_version(doc, where, "cv.json", ModelError)
    check_fields(doc, TOP, where, ModelError)
    check_fields(doc["cv"], {role: OBJECT for role in (*TRAINED_ROLES, "distillation_gain")}, f"{where}: cv",
                ModelError, sep=".")
    for role in TRAINED_ROLES:
        check_fields(doc["cv"][role], {key: NUMBER for key in Stats.__annotations__}, f"{where}: cv.{role}",
                    ModelError, sep=".")
    check_fields(doc["test"], {role: NUMBER for role in TRAINED_ROLES}, f"{where}: test", ModelError, sep=".")
    check_fields(doc["models"], {role: OBJECT for role in TRAINED_ROLES}, f"{where}: models", ModelError, sep=".")
    if not doc["folds"]:
        raise ModelError(f"{where}: folds must list at least one fold")
    for name, split in [*((f"folds[{i}]", s) for i, s in enumerate(doc["folds"])), ("final", doc["final"])]:
        if not isinstance(split, dict):
            raise ModelError(f"{where}: {name} must be an object, got {split!r}")
        check_fields(split, SPLIT, f"{where}: {name}", ModelError, sep=".")
        for role in TRAINED_ROLES:
            check_fields(split[role], {"accuracy": NUMBER}, f"{where}: {name}.{role}", ModelError, sep=".")
    _check_qat(doc["final"]["student"], where)
    return doc


def _check_qat(student: dict, where: str) -> None:
    if "qat" not in student:
        return
    if not isinstance(student["qat"], dict):
        raise ModelError(f"{where}: final.student.qat must be an object, got {student['qat']!r}")
    check_fields(student["qat"], QAT, f"{where}: final.student.qat", ModelError, sep=".")


def to_json(doc: Document) -> dict:
    """The document as written: checked by the reader's rules first (a writer's bug fails here)."""
    return dict(from_json(dict(doc), f"the {CV_FILE} being written"))
