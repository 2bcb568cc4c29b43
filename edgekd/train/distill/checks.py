"""The distill run's input checks: options, data, models and the output folder, all before
anything is written or trained (``Experiment.prepare`` calls them in order)."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgekd.train.config import DistillConfig, load_config
from edgekd.train.data import DataCache, Dataset, load_dataset
from edgekd.train.data.cache import Progress
from edgekd.train.data.split import withheld
from edgekd.train.data.summary import FolderSummary, summarize_folder
from edgekd.train.data.unlabelled import REST, TransferSet, load_transfer
from edgekd.core.preprocess import imagenet_statistics
from edgekd.core.errors import ConfigError, DataError, ModelError
from edgekd.core.fsutil import OutputLock, refuse_existing, refuse_foreign_folder
from edgekd.train.models import build
from edgekd.train.models.user import check_user_model, parse_user_spec
from edgekd.core.schema.cv import CONFIG_FILE
from edgekd.core.schema.tomlfile import parse_toml
from edgekd.train.distill.augment import parse_augment
from edgekd.train.distill.losses import logit_losses
from edgekd.train.distill.qat import check_student as check_qat_student
from edgekd.train.distill.teachers import BroughtTeacher, weights_teacher
from edgekd.device.runtimes import SUFFIXES

MODEL_FILES = (*SUFFIXES, ".pt2")     # what --qat-epochs refuses as a student: every runtime's files, and programs


@dataclass
class Inputs:
    """What ``prepare`` read and checked: the data, a brought teacher, the held-out split
    (``arrays``: train/CV x and y, test x and y) and the folds' (train, eval) indices."""
    data: Dataset
    brought: BroughtTeacher | None
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    splits: list[tuple[np.ndarray, np.ndarray]]
    transfer: TransferSet | None = None     # --unlabelled from a file or folder (``rest`` is cut per split)


def device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but no CUDA device is available", hint="use --device cpu or auto")
    return name


def check_output(out: Path, force: bool) -> None:
    """An existing run folder refused before the data is read or summarised (a refusal after the
    folder's summary was printed would not be the one line a mistake gets); ``staging_folder`` makes
    the run folder's other checks under its lock (a live run's lock comes first)."""
    refuse_existing(out, force, "run folder")


def staging_folder(out: Path, resume: bool, force: bool, cfg: DistillConfig, locks: list) -> Path:
    """``.NAME.partial`` beside the run folder: kept after an interruption, for --resume.
    Locked first (the lock goes into ``locks``): a live run owns its staging folder."""
    refuse_existing(out, force, "run folder")         # first: it refuses an --out without a name
    locks.append(OutputLock(out, "run folder"))
    try:
        return _check_staging(out, resume, force, cfg)
    except BaseException:
        locks.pop().release()
        raise


def staging_path(out: Path) -> Path:
    """Where a run folder is written until it is complete (and an interrupted one stays)."""
    return out.with_name(f".{out.name}.partial")


def _check_staging(out: Path, resume: bool, force: bool, cfg: DistillConfig) -> Path:
    stage = staging_path(out)
    if not resume:
        if stage.exists() and not force:
            raise ConfigError(f"an interrupted run exists at '{stage}'",
                              hint="pass --resume to continue it, or --force to start over")
        if stage.exists() or stage.is_symlink():
            refuse_foreign_folder(stage, "interrupted run")      # --force replaces only a run's own stage
            shutil.rmtree(stage)
    elif stage.exists():
        saved = (stage / CONFIG_FILE).read_text() if (stage / CONFIG_FILE).is_file() else None
        if saved is not None and saved != cfg.to_toml():
            raise ConfigError(f"the interrupted run at '{stage}' used a different configuration: "
                              f"{_differences(saved, cfg.to_toml())}",
                              hint="leave those options out (--resume takes the run's own), or pass --force to "
                                   "start over")
    return stage


def resumed_config(out: str) -> Path | None:
    """The configuration of the interrupted run ``--out`` names (its stage's config.toml), if there is one:
    ``--resume`` continues it with the options given on the command line over it."""
    saved = staging_path(Path(out)) / CONFIG_FILE
    return saved if saved.is_file() else None


def run_config(config_file: str | Path | None, trust_model_code: bool, resume: bool, **options) -> DistillConfig:
    """The configuration a run goes by: ``config_file`` (or the defaults) with ``options`` over it; a
    resume without a file continues with the interrupted run's own configuration, the options over it."""
    cfg = load_config(config_file, trust_model_code, **options)
    saved = resumed_config(cfg.out) if resume and config_file is None else None
    return load_config(saved, trust_model_code, **options) if saved else cfg


def _differences(then: str, now: str) -> str:
    """The options whose values differ between two config.toml texts, as ``--name: A then, B now``."""
    old, new = (parse_toml(text.encode(), "config.toml", "distill config", ConfigError) for text in (then, now))
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "; ".join(f"--{k.replace('_', '-')}: {old.get(k, 'unset')!r} then, {new.get(k, 'unset')!r} now"
                     for k in keys[:5]) + (f"; and {len(keys) - 5} more" if len(keys) > 5 else "")


def load_data(cfg: DistillConfig, progress: Progress | None = None, note: Callable[[str], None] | None = None,
              survey: Callable[[FolderSummary], None] | None = None) -> Dataset:
    """``cfg.data`` at ``--image-size``/``--channels``, decoded into the cache at ``cfg.cache_dir``;
    ``progress(done, total)`` hears how far decoding is, ``note(text)`` why a cache entry was rebuilt,
    ``survey(summary)`` what a ``folder:`` source holds, before any of it is decoded."""
    cache = DataCache(cfg.cache_dir, progress, note)
    name, _, arg = cfg.data.partition(":")
    if survey is not None and name == "folder":
        survey(summarize_folder(arg or None, cfg.image_options(), cache))
    return load_dataset(cfg.data, cfg.label_column, cfg.image_options(), cache)


def load_transfer_set(cfg: DistillConfig, data: Dataset, progress: Progress | None = None,
                      note: Callable[[str], None] | None = None) -> TransferSet | None:
    """``--unlabelled`` brought to the labelled data's shape, its labelled and held-out images dropped."""
    if cfg.unlabelled is None:
        return None
    return load_transfer(cfg.unlabelled, data, cfg.image_options(), DataCache(cfg.cache_dir, progress, note))


def check_rest(cfg: DistillConfig, train_y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """``--unlabelled rest`` leaves images in every training part: with few samples per class,
    ``--student-fraction`` may take each of them (at least one per class) and leave none."""
    if cfg.unlabelled != REST:
        return
    for name, y in [*((f"fold{k + 1}", train_y[tr]) for k, (tr, _) in enumerate(splits)), ("final", train_y)]:
        if not withheld(y, cfg.student_fraction):
            raise DataError(f"--unlabelled rest is empty in {name}: --student-fraction {cfg.student_fraction} takes "
                            f"every one of its {len(y)} training samples (at least one per class)",
                            hint="lower --student-fraction, or give a transfer set of your own images")


def check_data(cfg: DistillConfig, data: Dataset) -> None:
    if len(data.labels) < 2:        # one class trains to a meaningless 100 %
        raise DataError(f"data '{cfg.data}' has {len(data.labels)} class ({', '.join(map(str, data.labels))}): "
                        "a classifier needs at least 2")
    augment = parse_augment(cfg.augment)
    if augment and not data.is_image:   # every augmentation is geometric or mixes images: tables would go unaugmented
        raise ConfigError(f"--augment {','.join(augment)} augments images, but data '{cfg.data}' is tabular",
                          hint="drop --augment (augment = \"\" in a config file)")
    if cfg.normalize == "imagenet":
        imagenet_statistics(data.input_shape)       # RGB images only: refused here, before training


def check_models(cfg: DistillConfig, data: Dataset, brought: BroughtTeacher | None) -> None:
    """Build every model once on the data's shape so a bad spec fails before training; a user's own
    model is run and traced too, and --teacher-weights loaded."""
    classes = len(data.labels)
    if cfg.qat_epochs:
        _refuse_file_student(cfg.student)
    student = _check_spec(cfg.student, data.input_shape, classes)
    if cfg.qat_epochs:
        check_qat_student(student, cfg.student, data.input_shape)
    if brought is None:
        teacher = _check_spec(cfg.teacher, data.input_shape, classes)
        if cfg.teacher_weights:
            weights_teacher(cfg.teacher, cfg.teacher_weights, data.input_shape, classes)
        _check_loss(cfg, student, teacher, None, data.input_shape)
        return
    if brought.input_shape is not None and tuple(brought.input_shape) != data.input_shape:
        raise ModelError(f"the teacher takes input {tuple(brought.input_shape)}, the data is {data.input_shape}")
    with torch.no_grad():
        try:
            out = brought.module(torch.zeros(2, *data.input_shape))
        except Exception as exc:  # any failure of a foreign model on our input is the user's mismatch
            raise ModelError(f"the teacher from '{brought.path}' fails on input {data.input_shape}: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if tuple(out.shape) != (2, classes):
        raise ModelError(f"the teacher gives outputs of shape {tuple(out.shape)[1:]}, the data has {classes} classes")
    _check_loss(cfg, student, brought.module, brought, data.input_shape)


def _check_loss(cfg: DistillConfig, student: torch.nn.Module, teacher: torch.nn.Module,
                brought: BroughtTeacher | None, input_shape: tuple[int, ...]) -> None:
    """A feature loss needs ``forward_features`` of both models: built once on them here, before training."""
    loss = cfg.distillation_loss()
    if "features" not in loss.needs:
        return
    if brought is not None and brought.kind != "run":
        raise ConfigError(f"--loss {cfg.loss} needs the teacher's intermediate features, and a brought "
                          f"{brought.kind.upper()} teacher ('{brought.path}') gives its logits only",
                          hint=f"use {logit_losses()} with a model file as teacher, or bring a run folder's teacher")
    loss.fit_to(student, teacher, torch.zeros(2, *input_shape))


def _refuse_file_student(spec: str) -> None:
    """A model file cannot be a student (students train here, from a spec); with --qat-epochs say
    why in QAT's words, since a user who brings ONNX models may expect QAT to fine-tune one."""
    if spec.lower().endswith(MODEL_FILES):
        raise ConfigError(f"--qat-epochs fine-tunes the student in PyTorch, and '{spec}' is a model file: an "
                          "ONNX, .pt2 or TFLite student cannot be trained or fine-tuned here",
                          hint="give --student a model spec (a zoo NAME:key=value,… or your own factory); "
                               "a model file can be the teacher: --teacher-from FILE.onnx works with --qat-epochs")


def _check_spec(spec: str, input_shape: tuple[int, ...], classes: int) -> torch.nn.Module:
    """The zoo's models are export-friendly by construction; a user's model is checked here, since
    distill runs it eagerly and export (torch.export) would be the first to trace it, after training."""
    model = build(spec, input_shape, classes)
    user = parse_user_spec(spec)
    if user is not None:
        check_user_model(model, user, input_shape, classes)
    return model


def check_teacher_split(cfg: DistillConfig, brought: BroughtTeacher | None) -> None:
    """A teacher brought from another run of the same data must have held out the same samples.

    Its training part is everything but its own held-out split: trained on another split, it
    has seen some of this run's test samples, which would inflate its score and reach the
    student through the soft targets. (An .onnx or .pt2 teacher carries no such record.)"""
    if brought is None or brought.kind != "run":
        return
    source = brought.path.parent / CONFIG_FILE
    if not source.is_file():
        return
    theirs = load_config(source, trust_model_code=True)    # only its split is read: none of its models is built
    if (theirs.data, theirs.label_column) != (cfg.data, cfg.label_column):
        return
    differ = [key for key in ("seed", "test_fraction") if getattr(theirs, key) != getattr(cfg, key)]
    if differ:
        said = ", ".join(f"{key} {getattr(theirs, key)} (this run: {getattr(cfg, key)})" for key in differ)
        raise ConfigError(f"the teacher from '{brought.path}' was trained with another held-out split of "
                          f"'{cfg.data}' ({said}), so it has seen some of this run's test samples",
                          hint="use " + " ".join(f"--{key.replace('_', '-')} {getattr(theirs, key)}" for key in differ))
