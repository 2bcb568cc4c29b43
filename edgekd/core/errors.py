"""User-facing errors. Torch-free: the device side imports this.

An ``EdgeKDError`` is a user mistake (bad input, missing file, tampered bundle).
The CLI prints it as one ``error:`` line plus an optional ``hint:`` line and exits 2;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
import re
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


#: a hint lists every known name up to this many; of a longer list, only the close ones
LIST_ALL_UP_TO = 12


def edit_distance(a: str, b: str) -> int:
    """Edits from ``a`` to ``b`` (optimal string alignment): an inserted, deleted or replaced character,
    or two neighbours swapped, is one edit each, a digit as much as a letter."""
    before, previous = [0] * (len(b) + 1), list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, before[j - 2] + 1)
            current.append(cost)
        before, previous = previous, current
    return previous[-1]


def _runs(name: str) -> list[bool]:
    """The runs of digits and of other characters in ``name``: resnet9 and resnet8 are letters then a
    number, resnet letters only."""
    return [part.isdigit() for part in re.findall(r"\d+|\D+", name)]


def close_names(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` known names close to ``name``, the nearest first. difflib picks which are close; they
    are ranked by edits of the whole name, then by whether their runs of letters and digits are the
    name's: difflib alone ranks 'resnet' above 'resnet8' for 'resnet9' (the longer common run), though
    both are one edit away and only resnet8 has the number. Ties keep difflib's order."""
    known = list(known)
    matches = difflib.get_close_matches(name, known, n=max(1, len(known)), cutoff=0.5)
    return sorted(matches, key=lambda k: (edit_distance(name, k), _runs(k) != _runs(name)))[:n]


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name``, for a "did you mean" hint."""
    matches = close_names(name, known, n=1)
    return matches[0] if matches else None


def unknown_name(what: str, name: str, known: Iterable[str], error=EdgeKDError,
                 listing: str | None = None) -> EdgeKDError:
    """The error for an unknown registry name: the closest known name, then every known name; of a
    long list, the other close ones and ``listing``, what lists them all (a command such as
    'edgekd models'), or every name where neither is there."""
    known = sorted(known)
    close = close_names(name, known)
    message, guess = f"unknown {what} '{name}'", f"did you mean '{close[0]}'? " if close else ""
    if len(known) <= LIST_ALL_UP_TO or not (close or listing):
        return error(message, hint=f"{guess}known: {', '.join(known)}")
    rest = [f"also close: {', '.join(close[1:])}"] if len(close) > 1 else []
    rest += [f"'{listing}' lists all {len(known)}"] if listing else []
    return error(message, hint=(guess + "; ".join(rest)).strip())
