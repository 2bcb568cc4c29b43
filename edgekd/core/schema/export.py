"""``export.json``: the build report ``edgekd export`` writes into the bundle (and returns). Torch-free.

One :class:`ExportedFile` per file, in export order: its size, the conversion's time, its parity
with PyTorch on the eval split, the converter's notes and the teacher's file beside it. Nothing
reads it to decide anything (bench reads the manifest); :meth:`ExportReport.from_json` checks the
fields as the dataclasses and TypedDicts below declare them (every key of a file's ``details``
but the int8 ones is the converter's own and left as written).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, TypedDict

from edgekd.core.errors import BundleError
from edgekd.core.schema.fields import Count, check_document
from edgekd.core.schema.jsonfile import Serialized

EXPORT_REPORT = "export.json"


class Layer(TypedDict):
    layer: str
    op: str
    snr_db: float
    cosine: float | None


class LayerError(TypedDict):
    """An int8 file's quantized layers, each one's int8 output against fp32's (exporters.layer_error)."""
    tool: str
    samples: Count
    metric: str
    layers: list[Layer]


class KeepAuto(TypedDict):
    """--keep-float auto's record (exporters.keep_auto): the fields its terminal line reads."""
    target_drop_points: float
    met: bool
    kept_float: list[str]
    drop_points: float
    top1_agreement: float
    samples: Count
    steps: list[dict[str, Any]]


class Int8Forms(TypedDict, total=False):
    """tflite-int8's int8-friendly forms (exporters.int8_forms): how many hard-swish were rewritten,
    the form, and the rewritten module's float drift (|Δ logits| / max |logits|) where any was."""
    hardswish: int
    form: str
    fp32_drift: float


class Details(TypedDict, total=False):
    """The converter's own notes, per format; of those, an int8 file's: whether it is integer end to
    end, the layers --keep-float left in float and --keep-float auto's record (absent in float files
    and older reports). The other notes are left as written."""
    full_integer: bool
    kept_float: list[str]
    keep_float_auto: KeepAuto
    int8_forms: Int8Forms


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
    parity: dict[str, Any]                   # exporters.parity.compare: max |diff|, agreement, accuracy, passed
    details: Details
    input: dict[str, Any]                    # name, dtype, scale, zero_point
    output: dict[str, Any]
    vs_teacher: dict[str, Any] | None = None     # None: a teacher file, or no teacher exported
    layer_error: LayerError | None = None   # int8 files (None for float ones, absent in older reports)


@dataclass
class ExportReport(Serialized):
    schema_version: int
    edgekd_version: str
    created_utc: str
    run: str
    bundle: str
    eval: dict[str, Any]                     # {"file", "samples"}
    calibration: dict[str, Any] | None       # None: no calibrated format
    tolerance: dict[str, Any]                # {"fp32_max_abs_diff"}
    models: list[ExportedFile]
    seconds: float

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str) -> "ExportReport":
        """The report in ``doc``, checked against the dataclasses' fields; one BundleError naming the
        field otherwise."""
        check_document(doc, cls, where, "export report", BundleError)
        models = [ExportedFile(**{f.name: row.get(f.name) for f in fields(ExportedFile)}) for row in doc["models"]]
        return cls(**{**{f.name: doc[f.name] for f in fields(cls)}, "models": models})
