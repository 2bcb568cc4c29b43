"""The trio: teacher, student and simple model trained and scored on one split.

The teacher trains on the whole training part; the student and the "simple" model (same
architecture, same initial weights) train on the same smaller subset, the student from the
teacher's outputs through the distillation loss, the simple model from labels alone.

Every finished training ("stage") is kept under ``state/SPLIT/ROLE/`` of the staging folder
(its weights and ``done.json``), and every epoch of the one in progress too, so ``--resume``
picks up where a run stopped.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from edgekd.train.modelfile import save_weights
from edgekd.train.config import DistillConfig
from edgekd.train.data import Dataset
from edgekd.core.preprocess import preprocessing, zero_point
from edgekd.train.data.split import stratified_indices, stratified_subset
from edgekd.train.data.unlabelled import TransferSet
from edgekd.core.fsutil import atomic_write_json
from edgekd.train.models import build
from edgekd.core.schema import TRAINED_ROLES
from edgekd.train.distill.augment import Augmenter, parse_augment
from edgekd.train.distill.checkpoints import EpochCheckpoint, load_weights, read_checkpoint_json, read_checkpoint_weights
from edgekd.train.distill.distributed import SINGLE, Ranks, Rows
from edgekd.train.distill.qat import qat_log_line, quantization_aware_distill
from edgekd.train.distill.samples import Samples
from edgekd.train.distill.teachers import BroughtTeacher, weights_teacher
from edgekd.train.distill.epoch import epoch_steps
from edgekd.train.distill.inference import accuracy, cached_views, teacher_outputs
from edgekd.train.distill.train import FitSettings, KDTarget, NonFiniteLoss, Transfer, fit

# the per-epoch curves score a fixed stratified subsample of the evaluation rows at most this large (the
# final scores use them all): on Fashion-MNIST, scoring all 12,000 each epoch took 2.0 s, 14 % of the teacher's epoch
CURVE_ROWS = 2000
STAGE_INFO = ("trained", "epochs", "seconds", "samples_per_second", "precision", "history")   # a stage's done.json
# a finished stage's weights: a state dict only, with no model.json beside it, because the stage
# folder is no model folder (the module it fits is rebuilt from the run's configuration)
STAGE_WEIGHTS = "model.safetensors"

Reporter = Callable[..., None]


@dataclass
class TeacherShare:
    """One teacher for several students (``edgekd sweep``): each split's teacher is trained by the
    first experiment into ``folder/SPLIT/`` and loaded from there by the others (and by a resumed
    sweep); its outputs on the student samples, the same for every student of a split (same data,
    seed and subset), are computed once per split and kept here. ``folder`` is None on the ranks
    other than 0 under torchrun: rank 0 reads the folder and hands them the weights."""
    folder: Path | None
    outputs: dict = field(default_factory=dict)      # (split, needs, views) → (views, outputs)


class RunLog:
    """``train.log`` plus the reporter: every line goes to both. Without a path (the
    ranks other than 0 under torchrun) it keeps silent."""

    def __init__(self, path: Path | None, reporter: Reporter | None):
        self.file = open(path, "a", encoding="utf-8") if path else None
        self.reporter = reporter or (lambda *a, **k: None)

    def line(self, text: str) -> None:
        if self.file:
            self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
            self.file.flush()
        self.reporter("log", text=text)

    def note(self, text: str) -> None:
        """A line the user should see on the terminal too, not only in train.log."""
        self.line(text)
        self.reporter("note", text=text)

    def close(self) -> None:
        if self.file:
            self.file.close()


@dataclass
class Split:
    """One split of the experiment: a fold, or "final" (all non-test data, scored on the test split)."""
    name: str
    index: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    final: bool = False      # the run's own models: --qat-epochs fine-tunes this split's student only


@dataclass
class TrioResult:
    """A split's outcome: its cv.json record (sample counts, each role's accuracy and stage
    info), the three trained models (by role) and the preprocessing fitted on its training part."""
    record: dict
    models: dict[str, torch.nn.Module]
    preprocessing: dict
    quantization: dict | None = None    # the student's QAT-trained activation ranges (--qat-epochs)


class Trio:
    """Trains and scores teacher, student and simple model on one split."""

    def __init__(self, cfg: DistillConfig, data: Dataset, brought: BroughtTeacher | None,
                 device: str, state: Path | None, log: RunLog, ranks: Ranks = SINGLE, share: TeacherShare | None = None,
                 transfer: TransferSet | None = None):
        self.cfg, self.data, self.brought, self.device, self.state, self.log = cfg, data, brought, device, state, log
        self.ranks, self.share, self.transfer = ranks, share, transfer

    def seed(self, split_index: int, role: str) -> int:
        return self.cfg.seed * 1000 + split_index * 10 + TRAINED_ROLES.index(role)

    def run(self, split: Split) -> TrioResult:
        cfg = self.cfg
        pre = self._preprocessing(split.x_train)
        xt, yt = Samples(split.x_train, pre, self.device), torch.from_numpy(split.y_train).to(self.device)
        xe, ye = Samples(split.x_eval, pre, self.device), torch.from_numpy(split.y_eval).to(self.device)
        fill = torch.from_numpy(zero_point(pre)).to(self.device) if self.data.is_image else None
        seed = self.seed(split.index, "student")
        chosen = stratified_subset(split.y_train, cfg.student_fraction, seed)
        subset, x_student = torch.from_numpy(chosen).to(self.device), xt.subset(chosen)
        transfer = self._transfer_rows(xt, chosen, pre)
        curve = stratified_indices(split.y_eval, CURVE_ROWS, seed)
        curve_rows = (xe.subset(curve), ye[torch.from_numpy(curve).to(self.device)])
        base = FitSettings(cfg.student_epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, seed,
                           parse_augment(cfg.augment), self.device, fill, curve_rows, cfg.optimizer,
                           cfg.warmup_epochs, cfg.label_smoothing, cfg.compile, clip_grad=cfg.clip_grad,
                           precision=cfg.precision, memory_format=cfg.memory_format)
        teacher, teacher_fit = self._teacher(split, xt, yt, base)
        torch.manual_seed(seed)
        student = build(cfg.student, self.data.input_shape, len(self.data.labels)).to(self.device)
        simple = copy.deepcopy(student)      # the same initial weights: the only difference is the teacher
        kd = self._kd_target(split, teacher, x_student, fill, transfer)
        kd.loss.fit_to(student, teacher, x_student[:2])     # a feature adapter, seeded with the student
        fits = {"teacher": teacher_fit,
                "student": self._stage(split.name, "student", student, (x_student, yt[subset]), base, kd),
                "simple": self._stage(split.name, "simple", simple, (x_student, yt[subset]),
                                      replace(base, min_steps=epoch_steps(len(subset), base.batch_size, kd.transfer)), None)}
        quantization = None
        if split.final and cfg.qat_epochs:     # not checkpointed: a resumed run fine-tunes again, seeded alike
            # on the labelled samples alone: a fine-tune of the grids, not a second pass over the transfer set
            # (which would make each QAT epoch its size: 12x the steps at 10 % labels on Fashion-MNIST)
            # scored on the whole held-out split (cv.json's Qat), not the curves' subsample
            qat, ranges = quantization_aware_distill(student, (x_student, yt[subset]), replace(base, validation=(xe, ye)),
                                                     replace(kd, transfer=None),
                                                     cfg.qat_epochs)
            fits["student"] = {**fits["student"], "qat": qat}
            quantization = {"source": "qat", "activations": ranges}
            self.log.line(qat_log_line(split.name, qat))
        models = {"teacher": teacher, "student": student, "simple": simple}
        record: dict[str, Any] = {"split": split.name, "train_samples": len(split.y_train),
                                  "student_samples": len(subset), "eval_samples": len(split.y_eval)}
        if transfer is not None:
            record["unlabelled_samples"] = len(transfer)
        for role, model in models.items():
            record[role] = {"accuracy": accuracy(model, xe, ye, self.ranks), **fits[role]}
        self.log.line(f"{split.name}: " + ", ".join(f"{r} {record[r]['accuracy']:.4f}" for r in TRAINED_ROLES))
        self.log.reporter("split_done", split=split.name, result=record)
        return TrioResult(record, models, pre, quantization)

    def _preprocessing(self, x_train: np.ndarray) -> dict:
        """Fitted on this split's training part (or ImageNet's, --normalize imagenet); a brought
        teacher's own statistics win. The data's image transform is recorded with them."""
        brought = self.brought.preprocessing if self.brought is not None else None
        return preprocessing(self.cfg.normalize, x_train, self.data.image, brought)

    def _kd_target(self, split: Split, teacher, x_student: Samples, fill: torch.Tensor | None,
                   transfer: Samples | None) -> KDTarget:
        """The student's loss and the teacher's outputs on its samples and its transfer set: cached once
        per split; when augmenting, the live teacher every step, or (``--teacher-views K``) cached for K
        augmented views of every sample, drawn once, the student seeing view ``epoch mod K``."""
        kd = KDTarget(self.cfg.distillation_loss())
        if parse_augment(self.cfg.augment) and not self.cfg.teacher_views:
            kd.teacher = teacher
            kd.transfer = Transfer(transfer, self.cfg.unlabelled_ratio) if transfer is not None else None
            return kd
        kd.views, kd.outputs = self._cached(split, ("student samples", 1), teacher, x_student, kd.loss.needs, fill)
        if transfer is not None:       # its augmented views drawn from a stream of their own
            views, outputs = self._cached(split, ("transfer set images", 2), teacher, transfer, kd.loss.needs, fill)
            kd.transfer = Transfer(transfer, self.cfg.unlabelled_ratio, outputs, views)
        return kd

    def _cached(self, split: Split, rows: tuple[str, int], teacher, x: Samples, needs: tuple[str, ...],
                fill: torch.Tensor | None) -> tuple[list | None, dict]:
        """(views, outputs) of the teacher on ``x``, the ``rows`` (what they are, the stream of their views'
        draws): computed here, or the sweep's, computed once per split."""
        what, stream = rows
        cfg = self.cfg
        augment = parse_augment(cfg.augment)
        # everything that decides the rows and their views (a sweep varies the student alone, but one key
        # that names them all cannot hand one configuration another's outputs)
        key = (split.name, what, needs, cfg.teacher_views if augment else 0, augment, cfg.student_fraction,
               cfg.unlabelled, cfg.seed)
        if self.share is not None and key in self.share.outputs:
            self.log.line(f"{split.name}: teacher outputs of the {what} from the sweep's cache")
            return _moved(self.share.outputs[key], self.device)
        cached = time.perf_counter()
        views: list | None = None
        if augment:
            augmenter = Augmenter(augment, fill if fill is not None else torch.zeros(1))
            generator = torch.Generator().manual_seed(self.seed(split.index, "student") * 7_919 + stream)
            views, outputs = cached_views(teacher, x, augmenter, self.cfg.teacher_views, generator, needs, self.ranks)
        else:
            outputs = teacher_outputs(teacher, x, needs, self.ranks)
        if self.share is not None:       # kept on the CPU: a GPU's memory is the students' to train with
            self.share.outputs[key] = _moved((views, outputs), "cpu")
        shown = f" in {self.cfg.teacher_views} augmented views" if augment else ""
        self.log.line(f"{split.name}: teacher {' and '.join(needs)} of {len(x)} {what}{shown} cached in "
                      f"{time.perf_counter() - cached:.2f} s")
        return views, outputs

    def _transfer_rows(self, xt: Samples, chosen: np.ndarray, pre: dict) -> Samples | None:
        """The student's transfer set in this split: ``rest`` (the training part's rows whose labels the
        student does not get), or the external set, as views of the samples (no copy)."""
        if self.cfg.unlabelled is None:
            return None
        if self.transfer is None:
            return xt.subset(np.setdiff1d(np.arange(len(xt)), chosen))
        return Samples(self.transfer.x, pre, self.device).subset(self.transfer.keep)

    def _teacher(self, split: Split, xt, yt, base: FitSettings):
        if self.brought is not None:
            return self.brought.module.to(self.device), {"trained": False, "source": str(self.brought.path)}
        if self.cfg.teacher_weights:     # trained elsewhere: the same weights in every split, scored in each
            teacher = weights_teacher(self.cfg.teacher, self.cfg.teacher_weights, self.data.input_shape,
                                      len(self.data.labels))
            return teacher.to(self.device), {"trained": False, "source": self.cfg.teacher_weights}
        seed = self.seed(split.index, "teacher")
        torch.manual_seed(seed)
        teacher = build(self.cfg.teacher, self.data.input_shape, len(self.data.labels)).to(self.device)
        settings = replace(base, epochs=self.cfg.teacher_epochs, seed=seed)
        shared = self.share.folder / split.name if self.share and self.share.folder else None
        return teacher, self._stage(split.name, "teacher", teacher, (xt, yt), settings, None, shared)

    def _stage(self, split: str, role: str, model, xy: tuple[Rows, torch.Tensor], settings: FitSettings,
               kd: KDTarget | None, folder: Path | None = None) -> dict:
        """Train one model, or load it when a previous (interrupted) run finished this stage; its
        folder is ``state/SPLIT/ROLE`` unless given (a sweep's shared teacher)."""
        default = self.state / split / role if self.state else None
        folder = folder or default
        finished = self.ranks.on_main(lambda: _finished_stage(folder, model))
        if finished:
            info, weights = finished
            model.load_state_dict(weights)
            model.eval()
            self.log.line(f"{split}/{role}: " + ("the sweep's shared teacher, trained once" if folder != default
                                                 else "resumed from a finished stage"))
            return info
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
        self.log.reporter("stage_start", split=split, role=role, epochs=settings.epochs, samples=len(xy[0]))
        try:
            result = fit(model, *xy, settings, kd=kd, checkpoint=EpochCheckpoint(folder) if folder else None,
                         ranks=self.ranks,
                         on_epoch=lambda record: self.log.reporter("epoch", split=split, role=role, record=record,
                                                                   epochs=settings.epochs))
        except NonFiniteLoss as exc:     # fit knows the epoch; which model and split is known here
            exc.message = f"{role} of {split}: {exc.message}"
            raise
        mode = result.mode
        info = {"trained": True, "epochs": settings.epochs, "seconds": round(result.seconds, 3),
                "samples_per_second": round(result.samples_per_second, 1), "precision": mode.precision,
                "memory_format": mode.memory_format, "mode_why": mode.why, "compiled": settings.compile,
                "history": result.history}
        if folder:
            save_weights(folder / STAGE_WEIGHTS, model)
            atomic_write_json(folder / "done.json", info)
        self.log.line(f"{split}/{role}: {settings.epochs} epochs in {result.seconds:.1f} s "
                      f"({result.samples_per_second:.0f} samples/s, {mode.precision} ({mode.why}), "
                      f"{info['memory_format']}{_compiled(settings.compile, result.compile_seconds())}, "
                      f"{result.data_wait:.0%} of it making batches)")
        return info


def _compiled(compiled: bool, extra: float | None) -> str:
    """train.log's words for --compile: its one-time cost, the first epoch's extra time."""
    if not compiled:
        return ""
    return ", compiled" + (f" (the first epoch took {extra:.1f} s longer: the compilation)" if extra is not None else "")


def _finished_stage(folder: Path | None, model: torch.nn.Module) -> tuple[dict, dict] | None:
    """(stage info, weights) of a stage an interrupted run finished, else None; the weights are
    checked by loading them into ``model`` (a damaged file is a ConfigError saying how to start over)."""
    if folder is None or not (folder / "done.json").is_file():
        return None
    info = read_checkpoint_json(folder / "done.json", STAGE_INFO)
    weights = read_checkpoint_weights(folder / STAGE_WEIGHTS)
    load_weights(model, weights, folder / STAGE_WEIGHTS)
    return info, weights


def _moved(outputs, device: str):
    """Teacher outputs (tensors in dicts, lists and tuples; None stays None) on ``device``."""
    if isinstance(outputs, torch.Tensor):
        return outputs.to(device)
    if isinstance(outputs, dict):
        return {key: _moved(value, device) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_moved(value, device) for value in outputs)
    return outputs
