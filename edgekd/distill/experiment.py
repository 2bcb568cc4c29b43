"""The distillation experiment of DESIGN.md section 4.

A stratified held-out test split first (``eval.npz``; nothing trains on it); then k
folds on the rest, in each of which the teacher trains on the whole training part while
the student and the "simple" model — same architecture, same initial weights — train on
the same smaller subset, the student from the teacher's soft targets, the simple model
from labels alone; then the final trio on all non-test data, scored on the test split.

Every finished training ("stage") is kept under ``state/`` of the staging folder, and
every epoch of the one in progress too, so ``--resume`` picks up where a run stopped.

Under torchrun every rank runs this same experiment (see ``distributed.py``); rank 0
alone owns the run folder.
"""
from __future__ import annotations

import copy
import io
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..checkpoint import save_model
from ..config import DistillConfig, load_config
from ..data import Dataset, load_dataset
from ..data.preprocess import fit_standardize, standardize, zero_point
from ..data.split import folds as make_folds, holdout, stratified_subset
from ..errors import ConfigError, DataError, ModelError
from ..fsutil import (OutputLock, atomic_write_bytes, atomic_write_json, atomic_write_text, refuse_existing,
                      staged_dir)
from ..models import build, count_macs, count_parameters
from .distributed import SINGLE, Ranks, join
from .losses import build_loss
from .report import write_reports
from .teachers import BroughtTeacher, load_teacher
from .train import (EpochCheckpoint, FitSettings, KDTarget, NonFiniteLoss, accuracy, fit, load_weights,
                    read_checkpoint_json, read_checkpoint_weights, teacher_outputs, to_tensors)

ROLES = ("teacher", "student", "simple")
CALIBRATION_POOL = 2048      # training samples kept for export's int8 calibration
STAGE_INFO = ("trained", "epochs", "seconds", "samples_per_second", "precision", "history")   # a stage's done.json

Reporter = Callable[..., None]


def run_experiment(cfg: DistillConfig, reporter: Reporter | None = None, resume: bool = False,
                   force: bool = False) -> dict:
    """Run the whole experiment and write the run folder ``cfg.out``; returns ``cv.json``'s content."""
    return Experiment.prepare(cfg, resume, force).run(reporter)


class Experiment:
    """``prepare`` checks everything that can be wrong (options, data, models, the output
    folder) before anything is written or trained; ``run`` trains and writes."""

    def __init__(self, cfg, data, brought, splits, arrays, device, ranks, stage, resume, force):
        self.cfg, self.data, self.brought, self.splits = cfg, data, brought, splits
        self.arrays, self.device, self.ranks = arrays, device, ranks
        self.stage, self.resume, self.force = stage, resume, force
        self.lock = None        # rank 0's OutputLock on the run folder, from prepare

    @classmethod
    def prepare(cls, cfg: DistillConfig, resume: bool = False, force: bool = False) -> "Experiment":
        cfg.validate()
        brought = load_teacher(cfg.teacher_from) if cfg.teacher_from else None
        data = load_dataset(cfg.data, cfg.label_column)
        _check_data(cfg, data)
        arrays = holdout(data, cfg.test_fraction, cfg.seed)
        splits = make_folds(arrays[1], cfg.folds, cfg.test_fraction, cfg.seed, data.labels)
        _check_models(cfg, data, brought)
        _check_teacher_split(cfg, brought)
        device = _device(cfg.device)
        ranks, device = join(device, cfg.backend)
        # rank 0 alone looks at (and later writes) the run folder; the others get its verdict
        locks: list[OutputLock] = []       # rank 0's lock stays here: on_main sends the others the stage only
        stage = ranks.on_main(lambda: _staging_folder(Path(cfg.out), resume, force, cfg, locks))
        experiment = cls(cfg, data, brought, splits, arrays, device, ranks, stage, resume, force)
        experiment.lock = locks[0] if locks else None      # held until run() renames the run folder
        return experiment

    def run(self, reporter: Reporter | None = None) -> dict:
        if not self.ranks.is_main:
            # under torchrun the other ranks train alongside rank 0 and write nothing
            return self._train(RunLog(None, None), None)[0]
        cfg = self.cfg
        train_x, train_y, test_x, test_y = self.arrays
        nothing_to_resume = self.resume and not self.stage.exists()
        with staged_dir(cfg.out, self.force, "run folder", keep_on_error=True,
                        staging=self.stage, lock=self.lock) as work:
            atomic_write_text(work / "config.toml", cfg.to_toml())
            log = RunLog(work / "train.log", reporter)
            if nothing_to_resume:       # not an error: a script may always pass --resume
                log.note(f"--resume: no interrupted run at '{self.stage}', starting from the beginning")
            summary, models = self._train(log, work / "state")
            _write_run(work, cfg, self.data, self.brought, models, summary, train_x, train_y, test_x, test_y)
            write_reports(work, summary)
            shutil.rmtree(work / "state", ignore_errors=True)
            log.line(f"done in {summary['seconds']:.1f} s")
            log.close()
        return summary

    def _train(self, log: "RunLog", state: Path | None) -> tuple[dict, dict]:
        """Every split's trio, then the summary; ``state`` (rank 0 only) keeps finished stages."""
        cfg, data, ranks = self.cfg, self.data, self.ranks
        train_x, train_y, test_x, test_y = self.arrays
        started = time.perf_counter()
        log.line(f"data {data.name}: {len(train_y)} train/CV samples, {len(test_y)} held-out test, "
                 f"{len(data.labels)} classes, input {data.input_shape}")
        if ranks.distributed:
            log.line(f"torchrun: {ranks.world_size} ranks, {ranks.backend} backend, device {self.device}")
        trio = Trio(cfg, data, self.brought, self.device, state, log, ranks)
        fold_results = [trio.run(f"fold{k + 1}", k, train_x[tr], train_y[tr], train_x[va], train_y[va])[0]
                        for k, (tr, va) in enumerate(self.splits)]
        final, models = trio.run("final", len(self.splits), train_x, train_y, test_x, test_y)
        for model in models["models"].values():
            model.cpu()          # the run folder holds CPU models, whatever they trained on
        summary = _summarize(cfg, data, self.brought, fold_results, final, models, len(test_y),
                             time.perf_counter() - started, ranks.world_size, self.device)
        log.line("training throughput (samples/s, mean over splits): " +
                 ", ".join(f"{role} {speed:.0f}" for role, speed in summary["samples_per_second"].items()))
        return summary, models


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but no CUDA device is available", hint="use --device cpu or auto")
    return name


def _staging_folder(out: Path, resume: bool, force: bool, cfg: DistillConfig, locks: list) -> Path:
    """``.NAME.partial`` beside the run folder: kept after an interruption, for --resume.
    Locked first (the lock goes into ``locks``): a live run owns its staging folder."""
    refuse_existing(out, force, "run folder")         # first: it refuses an --out without a name
    locks.append(OutputLock(out, "run folder"))
    try:
        return _check_staging(out, resume, force, cfg)
    except BaseException:
        locks.pop().release()
        raise


def _check_staging(out: Path, resume: bool, force: bool, cfg: DistillConfig) -> Path:
    stage = out.with_name(f".{out.name}.partial")
    if not resume:
        if stage.exists() and not force:
            raise ConfigError(f"an interrupted run exists at '{stage}'",
                              hint="pass --resume to continue it, or --force to start over")
        shutil.rmtree(stage, ignore_errors=True)
    elif stage.exists():
        saved = (stage / "config.toml").read_text() if (stage / "config.toml").is_file() else None
        if saved is not None and saved != cfg.to_toml():
            raise ConfigError(f"the interrupted run at '{stage}' used a different configuration",
                              hint="resume with the same options, or pass --force to start over")
    return stage


def _check_data(cfg: DistillConfig, data: Dataset) -> None:
    if len(data.labels) < 2:        # one class trains to a meaningless 100 %
        raise DataError(f"data '{cfg.data}' has {len(data.labels)} class ({', '.join(map(str, data.labels))}): "
                        "a classifier needs at least 2")
    if cfg.augment and not data.is_image:   # shifts are for images: tabular data would be run unaugmented
        raise ConfigError(f"--augment shifts images, but data '{cfg.data}' is tabular",
                          hint="drop --augment (augment = false in a config file)")


def _check_models(cfg: DistillConfig, data: Dataset, brought: BroughtTeacher | None) -> None:
    """Build every model once on the data's shape so a bad spec fails before training."""
    classes = len(data.labels)
    build(cfg.student, data.input_shape, classes)
    if brought is None:
        build(cfg.teacher, data.input_shape, classes)
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


def _check_teacher_split(cfg: DistillConfig, brought: BroughtTeacher | None) -> None:
    """A teacher brought from another run of the same data must have held out the same samples.

    Its training part is everything but its own held-out split: trained on another split, it
    has seen some of this run's test samples, which would inflate its score and reach the
    student through the soft targets. (An .onnx or .pt2 teacher carries no such record.)"""
    source = brought.path.parent / "config.toml" if brought and brought.kind == "run" else None
    if source is None or not source.is_file():
        return
    theirs = load_config(source)
    if (theirs.data, theirs.label_column) != (cfg.data, cfg.label_column):
        return
    differ = [key for key in ("seed", "test_fraction") if getattr(theirs, key) != getattr(cfg, key)]
    if differ:
        said = ", ".join(f"{key} {getattr(theirs, key)} (this run: {getattr(cfg, key)})" for key in differ)
        raise ConfigError(f"the teacher from '{brought.path}' was trained with another held-out split of "
                          f"'{cfg.data}' ({said}), so it has seen some of this run's test samples",
                          hint="use " + " ".join(f"--{key.replace('_', '-')} {getattr(theirs, key)}" for key in differ))


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
        self.file.close()


class Trio:
    """Trains and scores teacher, student and simple model on one split."""

    def __init__(self, cfg: DistillConfig, data: Dataset, brought: BroughtTeacher | None,
                 device: str, state: Path | None, log: RunLog, ranks: Ranks = SINGLE):
        self.cfg, self.data, self.brought, self.device, self.state, self.log = cfg, data, brought, device, state, log
        self.ranks = ranks

    def seed(self, split_index: int, role: str) -> int:
        return self.cfg.seed * 1000 + split_index * 10 + ROLES.index(role)

    def run(self, name: str, split_index: int, x_train, y_train, x_eval, y_eval) -> tuple[dict, dict]:
        cfg = self.cfg
        pre = self._preprocessing(x_train)
        xt, yt = to_tensors(standardize(pre, x_train), y_train, self.device)
        xe, ye = to_tensors(standardize(pre, x_eval), y_eval, self.device)
        pad = torch.from_numpy(zero_point(pre)).to(self.device) if self.data.is_image else None
        subset = torch.from_numpy(stratified_subset(y_train, cfg.student_fraction, self.seed(split_index, "student")))
        teacher, teacher_fit = self._teacher(name, split_index, xt, yt, pad, (xe, ye))
        torch.manual_seed(self.seed(split_index, "student"))
        student = build(cfg.student, self.data.input_shape, len(self.data.labels)).to(self.device)
        simple = copy.deepcopy(student)      # the same initial weights: the only difference is the teacher
        kd = KDTarget(build_loss("kd", temperature=cfg.temperature, alpha=cfg.alpha))
        if cfg.augment:
            kd.teacher, kd.teacher_x, kd.teacher_pad = teacher, xt[subset], pad
        else:
            cached = time.perf_counter()
            kd.outputs = teacher_outputs(teacher, xt[subset], kd.loss.needs, self.ranks)   # cached once per split
            self.log.line(f"{name}: teacher logits of {len(subset)} student samples cached in "
                          f"{time.perf_counter() - cached:.2f} s")
        settings = FitSettings(cfg.student_epochs, cfg.batch_size, cfg.lr, cfg.weight_decay,
                               self.seed(split_index, "student"), cfg.augment, self.device)
        fits = {"teacher": teacher_fit,
                "student": self._stage(name, "student", student, xt[subset], yt[subset], settings, kd, pad, (xe, ye)),
                "simple": self._stage(name, "simple", simple, xt[subset], yt[subset], settings, None, pad, (xe, ye))}
        models = {"teacher": teacher, "student": student, "simple": simple}
        result = {"split": name, "train_samples": len(y_train), "student_samples": len(subset),
                  "eval_samples": len(y_eval)}
        for role, model in models.items():
            result[role] = {"accuracy": accuracy(model, xe, ye, self.ranks), **fits[role]}
        self.log.line(f"{name}: " + ", ".join(f"{r} {result[r]['accuracy']:.4f}" for r in ROLES))
        self.log.reporter("split_done", split=name, result=result)
        return result, {"models": models, "preprocessing": pre}

    def _preprocessing(self, x_train: np.ndarray) -> dict:
        """Fitted on this split's training part; a brought teacher's own statistics win."""
        if self.brought is not None and self.brought.preprocessing is not None:
            return self.brought.preprocessing
        return fit_standardize(x_train)

    def _teacher(self, name, split_index, xt, yt, pad, validation):
        if self.brought is not None:
            return self.brought.module.to(self.device), {"trained": False, "source": str(self.brought.path)}
        torch.manual_seed(self.seed(split_index, "teacher"))
        teacher = build(self.cfg.teacher, self.data.input_shape, len(self.data.labels)).to(self.device)
        settings = FitSettings(self.cfg.teacher_epochs, self.cfg.batch_size, self.cfg.lr, self.cfg.weight_decay,
                               self.seed(split_index, "teacher"), self.cfg.augment, self.device)
        return teacher, self._stage(name, "teacher", teacher, xt, yt, settings, None, pad, validation)

    def _stage(self, split, role, model, x, y, settings, kd, pad, validation) -> dict:
        """Train one model, or load it when a previous (interrupted) run finished this stage."""
        folder = self.state / split / role if self.state else None
        finished = self.ranks.on_main(lambda: _finished_stage(folder, model))
        if finished:
            info, weights = finished
            model.load_state_dict(weights)
            model.eval()
            self.log.line(f"{split}/{role}: resumed from a finished stage")
            return info
        if folder:
            folder.mkdir(parents=True, exist_ok=True)
        self.log.reporter("stage_start", split=split, role=role, epochs=settings.epochs)
        try:
            result = fit(model, x, y, settings, kd=kd, pad=pad, validation=validation,
                         checkpoint=EpochCheckpoint(folder) if folder else None, ranks=self.ranks,
                         on_epoch=lambda record: self.log.reporter("epoch", split=split, role=role, record=record))
        except NonFiniteLoss as exc:     # fit knows the epoch; which model and split is known here
            exc.message = f"{role} of {split}: {exc.message}"
            raise
        info = {"trained": True, "epochs": settings.epochs, "seconds": round(result.seconds, 3),
                "samples_per_second": round(result.samples_per_second, 1), "precision": result.precision,
                "history": result.history}
        if folder:
            save_model(folder, model, {"role": role, "arch": "", "input": {}, "num_classes": 0})
            atomic_write_json(folder / "done.json", info)
        self.log.line(f"{split}/{role}: {settings.epochs} epochs in {result.seconds:.1f} s "
                      f"({result.samples_per_second:.0f} samples/s, {result.precision})")
        return info


def _finished_stage(folder: Path | None, model: torch.nn.Module) -> tuple[dict, dict] | None:
    """(stage info, weights) of a stage an interrupted run finished, else None; the weights are
    checked by loading them into ``model`` (a damaged file is a ConfigError saying how to start over)."""
    if folder is None or not (folder / "done.json").is_file():
        return None
    info = read_checkpoint_json(folder / "done.json", STAGE_INFO)
    weights = read_checkpoint_weights(folder / "model.safetensors")
    load_weights(model, weights, folder / "model.safetensors")
    return info, weights


def _mean_std(values: list[float]) -> dict:
    array = np.asarray(values, np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "min": float(array.min()), "max": float(array.max())}


def _summarize(cfg, data, brought, fold_results, final, models, test_samples, seconds, world_size, device) -> dict:
    shape = data.input_shape
    info = {}
    for role in ROLES:
        model = models["models"][role]
        if role == "teacher" and brought is not None:
            countable = brought.kind == "run"      # ONNX and .pt2 teachers have no torch layers to count
            info[role] = {"arch": brought.arch, "parameters": count_parameters(model) if countable else None,
                          "macs": count_macs(model, shape) if brought.kind == "run" else None}
            continue
        arch = cfg.teacher if role == "teacher" else cfg.student
        info[role] = {"arch": arch, "parameters": count_parameters(model), "macs": count_macs(model, shape)}
    summary = {role: _mean_std([f[role]["accuracy"] for f in fold_results]) for role in ROLES}
    summary["distillation_gain"] = _mean_std([f["student"]["accuracy"] - f["simple"]["accuracy"] for f in fold_results])
    splits = [*fold_results, final]
    throughput = {role: float(np.mean([s[role]["samples_per_second"] for s in splits]))
                  for role in ROLES if splits[0][role].get("trained")}      # a brought teacher is not trained
    return {"schema_version": 1, "config": asdict(cfg),
            "data": {"source": data.name, "classes": len(data.labels), "labels": data.labels,
                     "input_shape": list(shape), "cv_samples": fold_results[0]["train_samples"] + fold_results[0]["eval_samples"],
                     "test_samples": test_samples},
            "models": info, "folds": fold_results, "cv": summary,
            "test": {role: final[role]["accuracy"] for role in ROLES},
            "final": final, "samples_per_second": throughput, "seconds": round(seconds, 2),
            "world_size": world_size, "device": device}


def _write_run(work: Path, cfg, data, brought, models, summary, train_x, train_y, test_x, test_y) -> None:
    pre = models["preprocessing"]
    for role, model in models["models"].items():
        spec = {"role": role, "arch": summary["models"][role]["arch"],
                "input": {"shape": list(data.input_shape), "layout": data.layout,
                          "dtype": "float32"},
                "num_classes": len(data.labels), "labels": data.labels, "preprocessing": pre,
                "parameters": summary["models"][role]["parameters"], "macs": summary["models"][role]["macs"],
                "metrics": {"test_accuracy": summary["test"][role],
                            "cv_accuracy_mean": summary["cv"][role]["mean"],
                            "cv_accuracy_std": summary["cv"][role]["std"]}}
        if role == "teacher" and brought is not None:
            spec["format"] = brought.save_into(work / role)
            atomic_write_json(work / role / "model.json", {"schema_version": 1, **spec})
        else:
            save_model(work / role, model, spec)
    _save_npz(work / "eval.npz", x=standardize(pre, test_x), y=test_y, labels=np.asarray(data.labels))
    pool = stratified_subset(train_y, min(1.0, CALIBRATION_POOL / len(train_y)), cfg.seed)
    _save_npz(work / "calibration.npz", x=standardize(pre, train_x[pool]), y=train_y[pool])
    atomic_write_json(work / "cv.json", summary)


def _save_npz(path: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
