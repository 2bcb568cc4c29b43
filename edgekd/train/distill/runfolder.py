"""The run folder's documents: ``cv.json`` (:mod:`edgekd.core.schema.cv`), one model folder per role,
the held-out ``eval.npz`` and the int8 ``calibration.npz``."""
from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgekd.train.modelfile import save_model, write_spec
from edgekd.train.config import DistillConfig
from edgekd.core.preprocess import standardize
from edgekd.train.data.split import stratified_subset
from edgekd.core.fsutil import atomic_write_bytes, atomic_write_text
from edgekd.core.gap import cv_gap_closed, split_gap_closed, spread
from edgekd.train.models import count_macs, count_parameters
from edgekd.core.schema import SCHEMA_VERSION, TRAINED_ROLES
from edgekd.core.schema.cv import CV_FILE, Document, from_json, to_json
from edgekd.train.distill.checks import Inputs
from edgekd.train.distill.trio import TrioResult

CALIBRATION_POOL = 2048      # training samples kept for export's int8 calibration


def summarize(cfg: DistillConfig, inputs: Inputs, folds: list[dict], final: TrioResult, facts: dict) -> Document:
    """The cv.json document; ``facts``: the run's ``seconds``, ``world_size`` and ``device``."""
    data = inputs.data
    folds = [{**f, "gap_closed": split_gap_closed(f)} for f in folds]
    record = {**final.record, "gap_closed": split_gap_closed(final.record)}
    summary: dict = {role: spread([f[role]["accuracy"] for f in folds]) for role in TRAINED_ROLES}
    summary["distillation_gain"] = spread([f["student"]["accuracy"] - f["simple"]["accuracy"] for f in folds])
    summary["gap_closed"] = cv_gap_closed(folds)
    splits = [*folds, record]
    throughput = {role: float(np.mean([s[role]["samples_per_second"] for s in splits]))
                  for role in TRAINED_ROLES if splits[0][role].get("trained")}      # a brought teacher is not trained
    return from_json({
        "schema_version": SCHEMA_VERSION, "config": asdict(cfg),
        "data": {"source": data.name, "classes": len(data.labels), "labels": data.labels,
                 "input_shape": list(data.input_shape), "image": data.image,
                 "cv_samples": folds[0]["train_samples"] + folds[0]["eval_samples"],
                 "test_samples": len(inputs.arrays[3]), **_transfer_record(inputs)},
        "models": _model_info(cfg, inputs, final), "folds": folds, "cv": summary,
        "test": {role: record[role]["accuracy"] for role in TRAINED_ROLES},
        "final": record, "samples_per_second": throughput, "seconds": round(facts["seconds"], 2),
        "world_size": facts["world_size"], "device": facts["device"]}, f"the {CV_FILE} being written")


def _transfer_record(inputs: Inputs) -> dict:
    transfer = inputs.transfer
    if transfer is None:
        return {}
    return {"unlabelled": {"source": transfer.source, "samples": len(transfer), "dropped": transfer.dropped}}


def _model_info(cfg: DistillConfig, inputs: Inputs, final: TrioResult) -> dict:
    shape, brought, info = inputs.data.input_shape, inputs.brought, {}
    for role in TRAINED_ROLES:
        model = final.models[role]
        if role == "teacher" and brought is not None:
            countable = brought.kind == "run"      # ONNX and .pt2 teachers have no torch layers to count
            info[role] = {"arch": brought.arch, "parameters": count_parameters(model) if countable else None,
                          "macs": count_macs(model, shape) if countable else None}
            continue
        arch = cfg.teacher if role == "teacher" else cfg.student
        info[role] = {"arch": arch, "parameters": count_parameters(model), "macs": count_macs(model, shape)}
    return info


def write_run(work: Path, cfg: DistillConfig, inputs: Inputs, final: TrioResult, summary: Document) -> None:
    """The final models (one folder per role), eval.npz, calibration.npz and cv.json into ``work``."""
    data, pre = inputs.data, final.preprocessing
    train_x, train_y, test_x, test_y = inputs.arrays
    cv: Mapping[str, Any] = summary["cv"]      # role -> Stats, read by the role's name
    for role, model in final.models.items():
        spec = {"role": role, "arch": summary["models"][role]["arch"],
                "input": {"shape": list(data.input_shape), "layout": data.layout, "dtype": "float32"},
                "num_classes": len(data.labels), "labels": data.labels, "preprocessing": pre,
                "parameters": summary["models"][role]["parameters"], "macs": summary["models"][role]["macs"],
                "metrics": {"test_accuracy": summary["test"][role],
                            "cv_accuracy_mean": cv[role]["mean"], "cv_accuracy_std": cv[role]["std"]}}
        if role == "student" and final.quantization is not None:    # --qat-epochs: the trained int8 grids
            spec["quantization"] = final.quantization
        if role == "teacher" and inputs.brought is not None:
            spec["format"] = inputs.brought.save_into(work / role)
            write_spec(work / role, {"schema_version": SCHEMA_VERSION, **spec})
        else:
            save_model(work / role, model, spec)
    _save_npz(work / "eval.npz", x=standardize(pre, test_x), y=test_y, labels=np.asarray(data.labels))
    pool = stratified_subset(train_y, min(1.0, CALIBRATION_POOL / len(train_y)), cfg.seed)
    _save_npz(work / "calibration.npz", x=standardize(pre, train_x[pool]), y=train_y[pool])
    atomic_write_text(work / CV_FILE, to_json(summary))


def _save_npz(path: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
