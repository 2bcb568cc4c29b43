"""``edgekd export``: a run folder → a deployable bundle, every file checked against PyTorch.

    export_run("runs/demo")            # student.onnx, student.int8.tflite, teacher.onnx
    export_run("runs/demo", formats=["onnx", "tflite", "tflite-fp16", "tflite-int8", "onnx-int8"])

Formats come from one table (:mod:`edgekd.exporters.formats`). Each exported file is run
in its real runtime (onnxruntime, the LiteRT interpreter) on the run's held-out eval set
and compared with PyTorch; an fp32 file whose logits differ by more than 1e-4 fails the
export. The bundle folder appears only when everything succeeded (all-or-nothing).
"""
from __future__ import annotations

import numbers
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, cast

import numpy as np

from edgekd.core.version import __version__
from edgekd.core.errors import ConfigError, DataError, ExportError, unknown_name
from edgekd.core.fsutil import atomic_write_text, refuse_existing, staged_dir
from edgekd.core.schema import SCHEMA_VERSION, TRAINED_ROLES
from edgekd.core.schema.export import EXPORT_REPORT, Details, ExportedFile, ExportReport
from edgekd.core.schema.manifest import EVAL_FILE, MANIFEST, ModelEntry
if TYPE_CHECKING:       # imported where --keep-float auto runs
    from edgekd.exporters.keep_auto import Search
from edgekd.exporters.formats import BYTES_PER_WEIGHT, FORMATS, INT8_ACTIVATIONS, INPUT_VALUES, ONNX_OPSETS, Format, get_format
from edgekd.exporters.formats import list_of_names, parse_formats
from edgekd.exporters.keep_auto import auto_target, export_auto, load_search
from edgekd.exporters.manifest import build_manifest, model_entry, utc_now
from edgekd.exporters.parity import compare, run_file
from edgekd.exporters.pixels import check_pixel_input, pixel_route
from edgekd.exporters.source import check_bundle_path, check_run_dir, load_calibration, load_eval, load_source
from edgekd.exporters.source import reference_logits

DEFAULT_ROLES = ("student", "teacher")
MAX_CALIBRATION_SAMPLES = 100_000     # far above the run's calibration pool: more is a typo
Progress = Callable[[dict], None]


@dataclass(frozen=True)
class ExportOptions:
    """What to export. ``formats``: None for the default set (``int8``: student ``onnx`` +
    ``tflite-int8``, teacher ``onnx``; else ``onnx`` only), or names exported for every role.
    Lists of names: only the CLI splits its "a,b" text."""
    formats: list[str] | None = None
    roles: list[str] | tuple[str, ...] = DEFAULT_ROLES
    int8: bool = True
    opset: int | None = None
    calibration_samples: int = 256
    trust_model_code: bool = False        # rebuild a model whose spec names your code (FILE.py:FACTORY)
    int8_activations: str | None = None   # onnx-int8's activation type: auto (None) | u8 | s8
    keep_float: list[str] | None = None   # int8 files: layers left in float (names of the layer_error report),
    #                                       or ["auto"]: the report's worst until max_int8_drop holds (keep_auto)
    max_int8_drop: float | None = None    # --keep-float auto's target: accuracy points lost at most (None: keep_auto's DEFAULT_MAX_DROP)
    input: str = "float"                  # the int8 files' input (formats.INPUT_VALUES): uint8 takes the camera's pixels

    def check_numbers(self) -> None:
        whole = (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool))
        if self.opset is not None and not (whole(self.opset) and self.opset in ONNX_OPSETS):
            raise ConfigError(f"ONNX opset {self.opset} is not supported",
                              hint=f"use an opset from {ONNX_OPSETS[0]} to {ONNX_OPSETS[-1]}")
        if not (whole(self.calibration_samples) and 1 <= self.calibration_samples <= MAX_CALIBRATION_SAMPLES):
            raise ConfigError(f"calibration samples must be at least 1 and at most {MAX_CALIBRATION_SAMPLES}, "
                              f"got {self.calibration_samples!r}", hint="a few hundred calibrate int8 well")
        if self.int8_activations is not None and self.int8_activations not in INT8_ACTIVATIONS:
            raise unknown_name("int8 activation type", str(self.int8_activations), INT8_ACTIVATIONS, ConfigError)
        if self.input not in INPUT_VALUES:
            raise unknown_name("--input", str(self.input), INPUT_VALUES, ConfigError)
        if self.input == "uint8" and self.auto_target() is not None:
            raise ConfigError("--keep-float auto does not search files that take pixels (--input uint8)",
                              hint="name the layers to keep float (--keep-float A,B), or export with --input float")
        self.kept_layers()

    def auto_target(self) -> float | None:
        """--keep-float auto's accuracy-drop target in points (None: the layers are named, or none)."""
        return auto_target(self.keep_float, self.max_int8_drop)

    def kept_layers(self) -> list[str] | None:
        """--keep-float's layer names, stripped, duplicates dropped (None: none given, or auto)."""
        if self.keep_float is None or self.auto_target() is not None:
            return None
        names = [n.strip() for n in list_of_names(self.keep_float, "keep_float", "['stem', 'classifier']")
                 if n and n.strip()]
        if not names:
            raise ConfigError("--keep-float names no layer", hint="name layers from export.json's layer_error")
        return list(dict.fromkeys(names))

    def plan(self) -> tuple[list[str], list[tuple[str, Format]]]:
        """(roles, the (role, format) pairs to export in order); an option no format honours is refused."""
        roles = parse_roles(self.roles)
        chosen = parse_formats(self.formats)
        plan = default_plan(roles, self.int8) if chosen is None else [(r, f) for r in roles for f in chosen]
        _refuse_unhonoured(plan, "opset", self.opset, f"an ONNX opset ({self.opset})")
        _refuse_unhonoured(plan, "int8_activations", self.int8_activations,
                           f"an int8 activation type ({self.int8_activations})")
        _refuse_unhonoured(plan, "keep_float", self.keep_float, f"layers to keep float ({self.keep_float})")
        _refuse_unhonoured(plan, "input", None if self.input == "float" else self.input, f"--input {self.input}")
        return roles, plan


def _refuse_unhonoured(plan, option: str, value, what: str) -> None:
    """An option given explicitly that no exported format honours would be silently ignored."""
    if value is None or any(option in fmt.options for _, fmt in plan):
        return
    names = ", ".join(dict.fromkeys(fmt.name for _, fmt in plan))
    honour = ", ".join(n for n in FORMATS.names() if option in FORMATS.get(n).options)
    flag = "--" + option.replace("_", "-")
    raise ConfigError(f"{what} was given, but none of the formats exported ({names}) has one: it would be ignored",
                      hint=f"drop {flag}, or add a format that honours it ({honour}) to --formats")


def default_plan(roles, int8: bool = True) -> list[tuple[str, Format]]:
    """The ``--int8`` set: student ONNX fp32 + full-integer int8 TFLite, teacher ONNX fp32."""
    plan = []
    for role in roles:
        plan.append((role, get_format("onnx")))
        if int8 and role == "student":
            plan.append((role, get_format("tflite-int8")))
    return plan


def parse_roles(roles) -> list[str]:
    """Role names (a list) → known roles, order kept, duplicates dropped."""
    names = list_of_names(roles, "roles", "['student', 'teacher']")
    names = [r.strip() for r in names if r and r.strip()]
    if not names:
        raise ConfigError("no roles given", hint=f"known: {', '.join(TRAINED_ROLES)}")
    for name in names:
        if name not in TRAINED_ROLES:
            raise unknown_name("role", name, TRAINED_ROLES, ConfigError)
    return list(dict.fromkeys(names))


@dataclass
class ExportContext:
    """What an exporter function gets besides the model: a scratch folder and the options."""
    workdir: Path
    opset: int | None
    calibration: np.ndarray | None
    int8_activations: str | None = None   # None: auto
    keep_float: list[str] | None = None   # layer names left float in int8 files


@dataclass
class Job:
    """Everything read and checked before the bundle folder is touched."""
    run_dir: Path
    out: Path
    options: ExportOptions
    plan: list[tuple[str, Format]]
    sources: dict                   # role -> exporters.source.Source
    eval: tuple[np.ndarray, np.ndarray]
    labels: list[str] | None
    calibration: tuple[np.ndarray | None, dict | None] = (None, None)
    references: dict = field(default_factory=dict)     # role -> PyTorch's logits on the eval set
    search: Search | None = None    # --keep-float auto


def export_run(run_dir, out=None, options: ExportOptions | None = None, *, force: bool = False,
               progress: Progress | None = None, **choices) -> dict:
    """Export the models of a run folder into a bundle folder and return the export report.

    What to export is ``options`` (an :class:`ExportOptions`), or its fields given by keyword
    (``formats=…, roles=…, int8=…, opset=…, calibration_samples=…, int8_activations=…,
    keep_float=…, max_int8_drop=…, input=…``). ``out`` defaults to
    ``RUN/bundle``. ``progress`` receives one dict per step (``{"event": "load"|"start"|"done",
    "role", "format", "file", ...}``).

    Raises EdgeKDError (DataError, ModelError, ConfigError, ExportError) for user mistakes.
    """
    if options is not None and choices:
        raise TypeError("pass either options or its fields, not both")
    started = time.perf_counter()
    job = prepare(Path(run_dir), out, options or ExportOptions(**choices), force, progress)
    # staged_dir locks the bundle folder (and removes the folders it made above it if this fails)
    with tempfile.TemporaryDirectory(prefix="edgekd-export-") as work, \
            staged_dir(job.out, force, "bundle folder") as stage:
        ctx = ExportContext(Path(work), job.options.opset, job.calibration[0], job.options.int8_activations,
                            job.options.kept_layers())
        created = utc_now()
        rows, entries = [], []
        for role, fmt in job.plan:
            row, entry = _export_one(job, ctx, role, fmt, stage, progress)
            rows.append(row)
            entries.append(entry)
        _compare_with_teacher(rows)
        shutil.copyfile(job.run_dir / EVAL_FILE, stage / EVAL_FILE)
        report = _write_documents(job, stage, rows, entries, created, time.perf_counter() - started)
    report["manifest"] = str(job.out / MANIFEST)
    return report


def prepare(run_dir: Path, out, options: ExportOptions, force: bool, progress: Progress | None) -> Job:
    """Check the options, read the run's models, eval split and calibration samples; write nothing."""
    options.check_numbers()
    roles, plan = options.plan()            # the options alone: a typo fails before the run is read
    check_run_dir(run_dir)
    out = Path(out) if out is not None else run_dir / "bundle"
    check_bundle_path(run_dir, out)
    refuse_existing(out, force, "bundle folder")  # before any slow work
    sources = {}
    for role in roles:
        _emit(progress, event="load", role=role)
        sources[role] = load_source(run_dir, role, options.trust_model_code)
    for role, fmt in plan:
        if sources[role].kind == "onnx" and fmt.runtime != "onnxruntime":
            raise ExportError(f"the {role} is a brought ONNX model; it cannot be converted to {fmt.name}",
                              hint="litert-torch converts PyTorch models only; use --formats onnx,onnx-int8 "
                                   f"or --roles without {role}")
    if options.input == "uint8":
        check_pixel_input(sources, plan)
    shapes = {src.input_shape for src in sources.values()}
    if len(shapes) > 1:
        raise DataError(f"the models of the run expect different input shapes: {sorted(shapes)}")
    main = sources.get("student") or next(iter(sources.values()))
    x_eval, y_eval, labels = load_eval(run_dir, main.input_shape)
    job = Job(run_dir, out, options, plan, sources, (x_eval, y_eval), main.spec.get("labels") or labels)
    if any(fmt.calibrated for _, fmt in plan):
        job.calibration = load_calibration(run_dir, main.input_shape, int(options.calibration_samples))
    target = options.auto_target()
    if target is not None:
        job.search = load_search(run_dir, main.input_shape, int(options.calibration_samples), target)
    return job


def _export_one(job: Job, ctx: ExportContext, role: str, fmt: Format, stage: Path,
                progress: Progress | None) -> tuple[ExportedFile, ModelEntry]:
    """Convert one model to one format, run the file in its runtime and compare it with PyTorch."""
    src, name = job.sources[role], fmt.filename(role)
    x_eval, y_eval = job.eval
    # --input uint8: the copy of the model that takes pixels, with the calibration and eval sets as pixels
    made, made_ctx, x_file = pixel_route(job.options.input, src, fmt, ctx, x_eval)
    _emit(progress, event="start", role=role, format=fmt.name, file=name)
    t0 = time.perf_counter()
    if job.search is not None and "keep_float" in fmt.options:
        details = export_auto(fmt.exporter_function(), ctx, src, stage / name, job.search)
    else:
        details = fmt.exporter_function()(made_ctx, made, stage / name) or {}
    seconds = time.perf_counter() - t0
    layer_error = details.pop("layer_error", None)     # an int8 file's per-layer report: a field of its own
    if role not in job.references:
        job.references[role] = reference_logits(src, x_eval)
    t1 = time.perf_counter()
    logits, ins, outs = _run_in_runtime(fmt, stage / name, x_file)
    parity = compare(logits, job.references[role], y_eval, fmt.precision, fmt.tolerance)
    parity["seconds"] = round(time.perf_counter() - t1, 3)
    if not parity["passed"]:
        raise ExportError(f"{name} differs from PyTorch on the eval set: max |logits diff| "
                          f"{parity['max_abs_diff']:.2e} > {fmt.tolerance:g}",
                          hint="the converter changed the model's numbers; --debug and report it")
    row = ExportedFile(
        file=name, role=role, format=fmt.name, precision=fmt.precision, runtime=fmt.runtime,
        bytes=(stage / name).stat().st_size, parameters=int(src.parameters), macs=src.macs,
        weight_bytes=int(src.parameters) * BYTES_PER_WEIGHT[fmt.precision],
        seconds=round(seconds, 3), parity=parity, input=ins, output=outs, layer_error=layer_error,
        details=cast(Details, details))     # the converter's own notes; the reader checks the keys Details declares
    _emit(progress, event="done", role=role, format=fmt.name, file=name, bytes=row.bytes, seconds=row.seconds,
          parity=parity)
    entry = model_entry(name, fmt, made, (ins, outs))
    if "full_integer" in details:     # int8 files: the manifest says whether --keep-float left layers float
        entry = replace(entry, full_integer=details["full_integer"], kept_float=details["kept_float"])
    return row, entry


def _write_documents(job: Job, stage: Path, rows: list[ExportedFile], entries: list[ModelEntry],
                     created: str, seconds: float) -> dict:
    """export.json, then manifest.json (which lists export.json with every other file)."""
    calibration_info = job.calibration[1]
    report = ExportReport(
        schema_version=SCHEMA_VERSION, edgekd_version=__version__, created_utc=created,
        run=str(job.run_dir), bundle=str(job.out), eval={"file": EVAL_FILE, "samples": int(len(job.eval[1]))},
        calibration=calibration_info, tolerance={"fp32_max_abs_diff": get_format("onnx").tolerance},
        models=rows, seconds=round(seconds, 3))
    atomic_write_text(stage / EXPORT_REPORT, report.to_json())
    main = job.sources.get("student") or next(iter(job.sources.values()))
    manifest = build_manifest(stage, entries, job.labels, main.spec.get("preprocessing"), len(job.eval[1]),
                              calibration_info, created)
    atomic_write_text(stage / MANIFEST, manifest.to_json())
    return report.as_dict()


def _run_in_runtime(fmt: Format, path: Path, x: np.ndarray):
    """(logits, input spec, output spec) of the file in its runtime; a file it cannot run fails the export."""
    try:
        return run_file(path, x)
    except Exception as exc:  # the runtimes raise their own kinds for an op or file they do not support
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
        raise ExportError(f"{fmt.runtime} cannot run {path.name}: {reason}",
                          hint="it has an op or opset this runtime lacks; "
                               "an ONNX file made with --opset may work at the default") from None


def _compare_with_teacher(rows: list[ExportedFile]) -> None:
    """Each non-teacher file gets the teacher's file beside it: same format if exported, else the first."""
    teacher = [r for r in rows if r.role == "teacher"]
    for row in rows:
        if row.role == "teacher" or not teacher:
            row.vs_teacher = None
            continue
        ref = next((t for t in teacher if t.format == row.format), teacher[0])
        row.vs_teacher = {"file": ref.file, "format": ref.format, "bytes": ref.bytes,
                          "weight_bytes": ref.weight_bytes, "parameters": ref.parameters,
                          "size_ratio": row.bytes / ref.bytes if ref.bytes else None}


def _emit(progress: Progress | None, **event) -> None:
    if progress is not None:
        progress(event)
