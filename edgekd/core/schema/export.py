"""``export.json``: the build report ``edgekd export`` writes into the bundle (and returns). Torch-free.

One :class:`ExportedFile` per file, in export order: its size, the conversion's time, its parity
with PyTorch on the eval split, the converter's notes and the teacher's file beside it. Nothing
reads it to decide anything (bench reads the manifest); :meth:`ExportReport.from_json` checks the
fields a reader of the report relies on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from edgekd.core.errors import BundleError
from edgekd.core.schema.fields import COUNT, LIST, NULLABLE_OBJECT, NUMBER, OBJECT, OBJECTS, TEXT, WHOLE, check_fields, of_type
from edgekd.core.schema.jsonfile import check_version

EXPORT_REPORT = "export.json"


@dataclass
class ExportedFile:
    file: str
    role: str
    format: str
    precision: str
    runtime: str
    bytes: int
    parameters: int
    macs: int | None
    weight_bytes: int              # parameters × bytes per weight of the precision
    seconds: float                 # the conversion
    parity: dict                   # exporters.parity.compare: max |diff|, agreement, accuracy, passed
    details: dict                  # the converter's own notes, per format
    input: dict                    # name, dtype, scale, zero_point
    output: dict
    vs_teacher: dict | None = None     # None: a teacher file, or no teacher exported
    # int8 files: each quantized layer's int8 output against fp32's (exporters.layer_error):
    # {"tool", "samples", "metric", "layers": [{"layer", "op", "snr_db", "cosine" (or null)}, ...]}
    layer_error: dict | None = None


@dataclass
class ExportReport:
    schema_version: int
    edgekd_version: str
    created_utc: str
    run: str
    bundle: str
    eval: dict                     # {"file", "samples"}
    calibration: dict | None       # None: no calibrated format
    tolerance: dict                # {"fp32_max_abs_diff"}
    models: list[ExportedFile]
    seconds: float

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict, where: str) -> "ExportReport":
        check_version(doc, where, "export report", BundleError)
        check_fields(doc, REPORT_TYPES, where, BundleError)
        if not isinstance(doc["models"], list):
            raise BundleError(f"{where}: models must be a list, got {type(doc['models']).__name__}")
        models = []
        for i, row in enumerate(doc["models"]):
            if not isinstance(row, dict):
                raise BundleError(f"{where}: models[{i}] must be an object, got {row!r}")
            check_fields(row, FILE_TYPES, f"{where}: models[{i}]", BundleError, sep=".")
            check_layer_error(row.get("layer_error"), f"{where}: models[{i}].layer_error")
            check_kept_float(row["details"], f"{where}: models[{i}].details")
            models.append(ExportedFile(**{f.name: row.get(f.name) for f in fields(ExportedFile)}))
        return cls(**{**{f.name: doc[f.name] for f in fields(cls)}, "models": models})


REPORT_TYPES = {"edgekd_version": TEXT, "created_utc": TEXT, "run": TEXT, "bundle": TEXT, "eval": OBJECT,
                "calibration": NULLABLE_OBJECT, "tolerance": OBJECT, "models": LIST,
                "seconds": NUMBER}
FILE_TYPES = {"file": TEXT, "role": TEXT, "format": TEXT, "precision": TEXT, "runtime": TEXT,
              "bytes": WHOLE, "parameters": WHOLE,
              "macs": of_type((int, type(None)), "a whole number or null"), "weight_bytes": WHOLE,
              "seconds": NUMBER, "parity": OBJECT, "details": OBJECT, "input": OBJECT, "output": OBJECT,
              "vs_teacher": NULLABLE_OBJECT}
LAYER_ERROR_TYPES = {"tool": TEXT, "samples": COUNT, "metric": TEXT, "layers": OBJECTS}
LAYER_TYPES = {"layer": TEXT, "op": TEXT, "snr_db": NUMBER,
               "cosine": (lambda v: v is None or NUMBER[0](v), "a number or null")}


# an int8 file's details: whether it is integer end to end, and the layers --keep-float left in float
# (absent in float files and older reports)
MIXED_TYPES = {"full_integer": of_type(bool, "true or false"),
               "kept_float": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                              "a list of layer names")}


# --keep-float auto's record (exporters.keep_auto): the fields its terminal line reads
AUTO_TYPES = {"target_drop_points": NUMBER, "met": of_type(bool, "true or false"), "kept_float": MIXED_TYPES["kept_float"],
              "drop_points": NUMBER, "top1_agreement": NUMBER, "samples": COUNT, "steps": OBJECTS}


def check_kept_float(details: dict, where: str) -> None:
    if "full_integer" in details or "kept_float" in details:
        check_fields(details, MIXED_TYPES, where, BundleError, sep=".")
    if "keep_float_auto" in details:
        check_fields(details, {"keep_float_auto": OBJECT}, where, BundleError, sep=".")
        check_fields(details["keep_float_auto"], AUTO_TYPES, f"{where}.keep_float_auto", BundleError, sep=".")


def check_layer_error(value, where: str) -> None:
    """The per-layer report of an int8 file (absent or null for other files, and in older reports)."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise BundleError(f"{where} must be an object or null, got {value!r}")
    check_fields(value, LAYER_ERROR_TYPES, where, BundleError, sep=".")
    for i, layer in enumerate(value["layers"]):
        check_fields(layer, LAYER_TYPES, f"{where}.layers[{i}]", BundleError, sep=".")
