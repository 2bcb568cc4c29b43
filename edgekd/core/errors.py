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


# one class per kind of mistake; ``kind`` is what bench's worker reports back to the parent
class DataError(EdgeKDError): kind = "data"               # data that cannot be read or does not fit
class ModelError(EdgeKDError): kind = "model"             # an unknown model or option, an unloadable teacher
class ConfigError(EdgeKDError): kind = "config"           # an option, config, budget or baseline file
class ExportError(EdgeKDError): kind = "export"           # a converter's refusal or a failed file check
class BundleError(EdgeKDError): kind = "bundle"           # a manifest breaking its rules, a changed file
class RuntimeBackendError(EdgeKDError): kind = "runtime"  # a runtime missing, or refusing a file or setting


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
