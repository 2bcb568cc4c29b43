"""``edgekd export``: a run folder → a deployable bundle, every file checked against PyTorch.

    export_run("runs/demo")            # student.onnx, student.int8.tflite, teacher.onnx
    export_run("runs/demo", formats="onnx,tflite,tflite-fp16,tflite-int8,onnx-int8")

Formats come from one table (:mod:`edgekd.exporters.formats`). Each exported file is run
in its real runtime (onnxruntime, the LiteRT interpreter) on the run's held-out eval set
and compared with PyTorch; an fp32 file whose logits differ by more than 1e-4 fails the
export. The bundle folder appears only when everything succeeded (all-or-nothing).
"""
from __future__ import annotations

import json
import numbers
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .. import __version__
from ..bundle import EVAL_FILE, MANIFEST
from ..errors import ConfigError, DataError, ExportError, unknown_name
from ..fsutil import atomic_write_json, refuse_existing, staged_dir
from .formats import BYTES_PER_WEIGHT, FORMATS, ONNX_OPSETS, Format, get_format, parse_formats

__all__ = ["export_run", "FORMATS", "Format", "get_format", "parse_formats", "default_plan", "EXPORT_REPORT"]

EXPORT_REPORT = "export.json"
DEFAULT_ROLES = ("student", "teacher")
MAX_CALIBRATION_SAMPLES = 100_000     # far above the run's calibration pool: more is a typo


@dataclass
class ExportContext:
    workdir: Path
    opset: int | None
    calibration: np.ndarray | None


def default_plan(roles: Iterable[str], int8: bool = True) -> list[tuple[str, Format]]:
    """The ``--int8`` set: student ONNX fp32 + full-integer int8 TFLite, teacher ONNX fp32."""
    plan = []
    for role in roles:
        plan.append((role, get_format("onnx")))
        if int8 and role == "student":
            plan.append((role, get_format("tflite-int8")))
    return plan


def _parse_roles(roles) -> list[str]:
    from .source import ROLES

    names = roles.split(",") if isinstance(roles, str) else list(roles or ())
    names = [r.strip() for r in names if r and r.strip()]
    if not names:
        raise ConfigError("no roles given", hint=f"known: {', '.join(ROLES)}")
    out = []
    for name in names:
        if name not in ROLES:
            raise unknown_name("role", name, ROLES, ConfigError)
        if name not in out:
            out.append(name)
    return out


def _emit(progress: Callable | None, **event) -> None:
    if progress is not None:
        progress(event)


def export_run(run_dir, out=None, formats=None, roles=DEFAULT_ROLES, int8: bool = True, opset: int | None = None,
               calibration_samples: int = 256, force: bool = False, progress: Callable[[dict], None] | None = None
               ) -> dict:
    """Export the models of a run folder into a bundle folder and return the export report.

    ``formats``: None for the default set (``int8=True``: student ``onnx`` + ``tflite-int8``,
    teacher ``onnx``; ``int8=False``: ``onnx`` only), else names (list or "a,b") exported for
    every role in ``roles``. ``out`` defaults to ``RUN/bundle``. ``progress`` receives one dict
    per step (``{"event": "start"|"done", "role", "format", "file", ...}``).

    Raises EdgeKDError (DataError, ModelError, ConfigError, ExportError) for user mistakes.
    """
    from .source import check_bundle_path, check_run_dir

    started = time.perf_counter()
    _check_numbers(opset, calibration_samples)
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    role_names = _parse_roles(roles)
    chosen = parse_formats(formats)
    plan = default_plan(role_names, int8) if chosen is None else [(r, f) for r in role_names for f in chosen]
    out = Path(out) if out is not None else run_dir / "bundle"
    check_bundle_path(run_dir, out)
    refuse_existing(out, force, "bundle folder")  # before any slow work

    from .source import load_calibration, load_eval, load_source, reference_logits

    sources = {}
    for role in role_names:
        _emit(progress, event="load", role=role)
        sources[role] = load_source(run_dir, role)
    for role, fmt in plan:
        if sources[role].kind == "onnx" and fmt.runtime != "onnxruntime":
            raise ExportError(f"the {role} is a brought ONNX model; it cannot be converted to {fmt.name}",
                              hint="litert-torch converts PyTorch models only; use --formats onnx,onnx-int8 "
                                   f"or --roles without {role}")
    shapes = {src.input_shape for src in sources.values()}
    if len(shapes) > 1:
        raise DataError(f"the models of the run expect different input shapes: {sorted(shapes)}")
    main = sources.get("student") or next(iter(sources.values()))
    x_eval, y_eval, labels = load_eval(run_dir, main.input_shape)
    calibration, calibration_info = None, None
    if any(fmt.calibrated for _, fmt in plan):
        calibration, calibration_info = load_calibration(run_dir, main.input_shape, int(calibration_samples))

    labels = main.spec.get("labels") or labels
    preprocessing = main.spec.get("preprocessing")
    created = _utc()
    rows: list[dict] = []
    entries: list[dict] = []
    # staged_dir locks the bundle folder (and removes the folders it made above it if this fails)
    with tempfile.TemporaryDirectory(prefix="edgekd-export-") as work, \
            staged_dir(out, force, "bundle folder") as stage:
        ctx = ExportContext(Path(work), opset, calibration)
        references = {}
        for role, fmt in plan:
            src = sources[role]
            name = fmt.filename(role)
            _emit(progress, event="start", role=role, format=fmt.name, file=name)
            t0 = time.perf_counter()
            details = fmt.exporter_function()(ctx, src, stage / name) or {}
            seconds = time.perf_counter() - t0
            if role not in references:
                references[role] = reference_logits(src, x_eval)
            from .parity import compare

            t1 = time.perf_counter()
            logits, ins, outs = _run_in_runtime(fmt, stage / name, x_eval)
            parity = compare(logits, references[role], y_eval, fmt.precision, fmt.tolerance)
            parity["seconds"] = round(time.perf_counter() - t1, 3)
            if not parity["passed"]:
                raise ExportError(f"{name} differs from PyTorch on the eval set: max |logits diff| "
                                  f"{parity['max_abs_diff']:.2e} > {fmt.tolerance:g}",
                                  hint="the converter changed the model's numbers; --debug and report it")
            size = (stage / name).stat().st_size
            row = {
                "file": name, "role": role, "format": fmt.name, "precision": fmt.precision, "runtime": fmt.runtime,
                "bytes": size, "parameters": int(src.parameters), "macs": src.macs,
                "weight_bytes": int(src.parameters) * BYTES_PER_WEIGHT[fmt.precision],
                "seconds": round(seconds, 3), "parity": parity, "details": details,
                "input": ins, "output": outs,
            }
            rows.append(row)
            entries.append(_entry(row, src))
            _emit(progress, event="done", **{k: row[k] for k in ("role", "format", "file", "bytes", "seconds")},
                  parity=parity)
        _compare_with_teacher(rows)
        shutil.copyfile(run_dir / EVAL_FILE, stage / EVAL_FILE)
        report = {
            "schema_version": 1,
            "edgekd_version": __version__,
            "created_utc": created,
            "run": str(run_dir),
            "bundle": str(out),
            "eval": {"file": EVAL_FILE, "samples": int(len(y_eval))},
            "calibration": calibration_info,
            "tolerance": {"fp32_max_abs_diff": get_format("onnx").tolerance},
            "models": rows,
        }
        report["seconds"] = round(time.perf_counter() - started, 3)
        atomic_write_json(stage / EXPORT_REPORT, report)
        from .manifest import build_manifest

        manifest = build_manifest(stage, entries, labels, preprocessing, len(y_eval), calibration_info, created)
        atomic_write_json(stage / MANIFEST, manifest)
    report["manifest"] = str(out / MANIFEST)
    return report


def _check_numbers(opset, calibration_samples) -> None:
    whole = (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool))
    if opset is not None and not (whole(opset) and opset in ONNX_OPSETS):
        raise ConfigError(f"ONNX opset {opset} is not supported",
                          hint=f"use an opset from {ONNX_OPSETS[0]} to {ONNX_OPSETS[-1]}")
    if not (whole(calibration_samples) and 1 <= calibration_samples <= MAX_CALIBRATION_SAMPLES):
        raise ConfigError(f"calibration samples must be at least 1 and at most {MAX_CALIBRATION_SAMPLES}, "
                          f"got {calibration_samples!r}", hint="a few hundred calibrate int8 well")


def _run_in_runtime(fmt: Format, path: Path, x: np.ndarray):
    """(logits, input spec, output spec) of the file in its runtime; a file it cannot run fails the export."""
    from .parity import RUNNERS

    try:
        return RUNNERS[fmt.runtime](path, x)
    except Exception as exc:  # the runtimes raise their own kinds for an op or file they do not support
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
        raise ExportError(f"{fmt.runtime} cannot run {path.name}: {reason}",
                          hint="it has an op or opset this runtime lacks; "
                               "an ONNX file made with --opset may work at the default") from None


def _entry(row: dict, src) -> dict:
    from .manifest import model_entry

    return model_entry(row, src, (row["input"], row["output"]))


def _compare_with_teacher(rows: list[dict]) -> None:
    """Each non-teacher file gets the teacher's file beside it: same format if exported, else the first."""
    teacher = [r for r in rows if r["role"] == "teacher"]
    for row in rows:
        if row["role"] == "teacher" or not teacher:
            row["vs_teacher"] = None
            continue
        ref = next((t for t in teacher if t["format"] == row["format"]), teacher[0])
        row["vs_teacher"] = {"file": ref["file"], "format": ref["format"], "bytes": ref["bytes"],
                             "weight_bytes": ref["weight_bytes"], "parameters": ref["parameters"],
                             "size_ratio": row["bytes"] / ref["bytes"] if ref["bytes"] else None}


def _utc() -> str:
    from .manifest import utc_now

    return utc_now()


def load_report(bundle_dir) -> dict:
    """The export report (export.json) of a bundle."""
    path = Path(bundle_dir) / EXPORT_REPORT
    return json.loads(path.read_text())
