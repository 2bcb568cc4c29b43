"""``manifest.json`` of an exported bundle, built as :class:`edgekd.core.schema.manifest.Manifest`."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from edgekd.core.version import __version__
from edgekd.core.bundle import digest_files
from edgekd.core.schema import SCHEMA_VERSION
from edgekd.core.schema.manifest import EVAL_FILE, MANIFEST, Manifest, ModelEntry


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def model_entry(name: str, fmt, src, io: tuple[dict, dict]) -> ModelEntry:
    """One ``models[]`` entry of the file ``name`` (format ``fmt``, from ``src``): role, format, precision, runtime, input/output spec,
    parameters, MACs and the PyTorch held-out accuracy as the reference number."""
    ins, outs = io
    num_classes = int(src.spec["num_classes"])
    values = src.spec["input"].get("values")      # "pixels": --input uint8 (exporters.pixels)
    return ModelEntry(
        file=name, role=src.role, format=fmt.name, precision=fmt.precision, runtime=fmt.runtime,
        input={"shape": [1, *src.input_shape], "layout": src.layout, "dtype": ins["dtype"],
               "scale": ins["scale"], "zero_point": ins["zero_point"], **({"values": values} if values else {})},
        output={"shape": [1, num_classes], "dtype": outs["dtype"], "scale": outs["scale"],
                "zero_point": outs["zero_point"]},
        parameters=int(src.parameters),
        macs=int(src.macs) if src.macs is not None else None,
        reference_accuracy=src.reference_accuracy,
    )


def build_manifest(bundle_dir: Path, models: list[ModelEntry], labels: list[str] | None, preprocessing: dict | None,
                   eval_samples: int, calibration: dict | None, created_utc: str | None = None) -> Manifest:
    """The manifest of a finished bundle folder; ``files`` lists every file in it with sha256 and bytes."""
    names = sorted(p.name for p in Path(bundle_dir).iterdir() if p.is_file() and p.name != MANIFEST)
    return Manifest(
        schema_version=SCHEMA_VERSION, edgekd_version=__version__, created_utc=created_utc or utc_now(),
        labels=list(labels) if labels is not None else None, preprocessing=preprocessing,
        eval={"file": EVAL_FILE, "samples": int(eval_samples)}, calibration=calibration,
        models=models, files=digest_files(Path(bundle_dir), names))
