"""User-facing errors. Torch-free: the device side imports this.

An ``EdgeKDError`` is a user mistake (bad input, missing file, tampered bundle).
The CLI prints it as one ``error:`` line plus an optional ``hint:`` line and exits 2;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class EdgeKDError(Exception):
    """A mistake the user can fix. ``kind`` groups errors for tests and tooling."""

    kind = "usage"

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.printed_elsewhere = False  # under torchrun: rank 0 prints the errors it shares with the others


class DataError(EdgeKDError):
    """The data: a file, folder or array that cannot be read or does not fit the model."""
    kind = "data"


class ModelError(EdgeKDError):
    """A model: an unknown architecture or option, a teacher or checkpoint that cannot be loaded."""
    kind = "model"


class ConfigError(EdgeKDError):
    """An option or a config, budget or baseline file: a value out of range, a name not known."""
    kind = "config"


class ExportError(EdgeKDError):
    """A conversion: a converter's refusal, or an exported file that fails its checks."""
    kind = "export"


class BundleError(EdgeKDError):
    """A bundle: a manifest that breaks its rules, or a file that differs from it."""
    kind = "bundle"


class RuntimeBackendError(EdgeKDError):
    """A runtime: not installed, or refusing a model file or a setting."""
    kind = "runtime"


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name``, for a "did you mean" hint."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name(what: str, name: str, known: Iterable[str], error=EdgeKDError) -> EdgeKDError:
    """The error for an unknown registry name: lists the known ones, suggests the closest."""
    known = sorted(known)
    guess = closest(name, known)
    hint = f"did you mean '{guess}'? " if guess else ""
    return error(f"unknown {what} '{name}'", hint=f"{hint}known: {', '.join(known)}")
