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
    problem = _spec_problem(spec)
    if problem:
        raise ModelError(f"'{path}' {problem}", hint="the file is damaged or was edited; train or copy the model again")
    return spec


def _spec_problem(spec) -> str | None:
    """What is wrong with a parsed model.json, or None: the fields every reader relies on."""
    if not isinstance(spec, dict):
        return f"must hold a JSON object, not {type(spec).__name__}"
    for key in ("arch", "input", "num_classes"):
        if key not in spec:
            return f"lacks '{key}'"
    if not isinstance(spec["arch"], str) or not spec["arch"]:
        return f"has 'arch' {spec['arch']!r}; it must be a model spec string such as \"cnn:width=8,depth=2\""
    shape = spec["input"].get("shape") if isinstance(spec["input"], dict) else None
    if not isinstance(shape, list) or not shape or not all(_positive_int(d) for d in shape):
        return f"has 'input' {spec['input']!r}; it must be an object whose 'shape' lists positive integers"
    if not _positive_int(spec["num_classes"]):
        return f"has 'num_classes' {spec['num_classes']!r}; it must be a positive integer"
    labels = spec.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != spec["num_classes"]):
        return f"has 'labels' that are not a list of {spec['num_classes']} names (one per class)"
    return None


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


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


def load_program(path: Path, what: str):
    """A ``torch.export`` .pt2 program. A bad archive is a ModelError; torch also logs the
    failure as a warning with a traceback, which is kept off the terminal so the user
    reads edgekd's one line."""
    import logging

    import torch

    log = logging.getLogger("torch.export")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # torch raises several types for a bad archive
        raise ModelError(f"cannot load {what} '{path}': {str(exc).splitlines()[0][:200]}",
                         hint="the file is corrupt or not a torch.export program (torch.export.save)") from None
    finally:
        log.setLevel(level)
