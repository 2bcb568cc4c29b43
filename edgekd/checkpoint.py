"""Model checkpoints: ``model.safetensors`` (weights, never pickle) + ``model.json``.

``model.json`` holds everything needed to rebuild and use the model without the run::

    {"schema_version": 1, "role": "student", "arch": "cnn:width=8,depth=2",
     "format": "safetensors",            # or "onnx" / "pt2" for a brought teacher
     "input": {"shape": [1, 8, 8], "layout": "NCHW", "dtype": "float32"},
     "num_classes": 10, "labels": ["0", …],
     "preprocessing": {"type": "standardize", "axis": "channel", "mean": [...], "std": [...]},
     "parameters": 842, "macs": 12345, "metrics": {"test_accuracy": 0.93}}
"""
from __future__ import annotations

import json
from pathlib import Path

from .errors import ModelError
from .fsutil import atomic_write_bytes, atomic_write_json

SCHEMA_VERSION = 1
WEIGHTS = "model.safetensors"
SPEC = "model.json"


def save_model(folder: Path, model, spec: dict) -> None:
    from safetensors.torch import save

    folder = Path(folder)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS, save(state))
    atomic_write_json(folder / SPEC, {"schema_version": SCHEMA_VERSION, "format": "safetensors", **spec})


def read_spec(folder: Path) -> dict:
    path = Path(folder) / SPEC
    if not path.is_file():
        raise ModelError(f"no {SPEC} in '{folder}'", hint="is this a model folder of an edgekd run?")
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"'{path}' is not valid JSON: {exc}") from None
    for key in ("arch", "input", "num_classes"):
        if key not in spec:
            raise ModelError(f"'{path}' lacks '{key}'")
    return spec


def load_model(folder: Path):
    """Rebuild the module from ``model.json`` and load its safetensors weights (eval mode)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .models import build

    folder = Path(folder)
    spec = read_spec(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ModelError(f"no {WEIGHTS} in '{folder}'")
    model = build(spec["arch"], tuple(spec["input"]["shape"]), spec["num_classes"])
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"'{weights}' is not a readable safetensors file: {exc}",
                         hint="the file is corrupt or truncated; train or copy it again") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ModelError(f"'{weights}' does not match the architecture '{spec['arch']}' in {SPEC}: {detail}") from None
    model.eval()
    return model, spec
