"""Strict JSON for every document edgekd reads. Torch-free.

Strict means: no NaN or Infinity (nor a number too large for a float), no repeated key (two JSON
readers would see two different documents), bounded size and depth (a hostile file must not make
the reader recurse or allocate without end), a JSON object at the top, and a schema version that
is a whole number this edgekd can read.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
import typing
from typing import Any, Mapping

from edgekd.core.schema import SCHEMA_VERSION

MAX_BYTES = 64 << 20     # a bench.json of many models and settings stays far below this
MAX_DEPTH = 32


def read_json(path: Path, what: str, error: type, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """The JSON object in ``path``; any problem is one ``error`` naming the file and ``what`` it should be."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"'{path}' is {size:,} bytes, more than a {what} may hold ({max_bytes:,})")
        return parse_json(path.read_bytes(), f"'{path}'", what, error)
    except FileNotFoundError:
        raise error(f"'{path}' not found") from None
    except OSError as exc:
        raise error(f"cannot read '{path}': {exc.strerror}") from None


class Refused(ValueError):
    """JSON that parses but that no edgekd document may hold (a NaN, a repeated key)."""


def json_text(doc: Mapping[str, Any]) -> str:
    """A document as its file's text, strict JSON: a number that is not finite (a ratio of nothing)
    becomes null, since bare NaN/Infinity are not JSON and other tools refuse them."""
    return json.dumps(_finite(doc), indent=2, allow_nan=False) + "\n"


class Serialized:
    """A document declared as a dataclass: its dict and its file's text."""

    def as_dict(self) -> dict[str, Any]:
        assert dataclasses.is_dataclass(self), "Serialized is a base of dataclasses only"
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The file's text."""
        return json_text(self.as_dict())


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def parse_json(data: bytes, where: str, what: str, error: type) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_non_finite, parse_float=_finite_float,
                         object_pairs_hook=_unique_keys)
    except RecursionError:
        raise error(f"{where} is not valid JSON: nested too deeply to be a {what}") from None
    except Refused as exc:          # from the hooks below
        raise error(f"{where}: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, or an integer of thousands of digits
        raise error(f"{where} is not valid JSON: {exc}") from None
    if _depth(doc) > MAX_DEPTH:
        raise error(f"{where} is nested more than {MAX_DEPTH} levels deep: not a {what}")
    if not isinstance(doc, dict):
        raise error(f"{where} must hold a JSON object, got {type(doc).__name__}")
    return doc


def check_version(doc: Mapping[str, Any], where: str, what: str, error: type, current: int = SCHEMA_VERSION) -> int:
    """The document's ``schema_version``: a whole number from 1 to ``current``."""
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise error(f"{where}: schema_version must be a whole number >= 1, got {version!r}",
                    hint=f"pass a {what} written by edgekd")
    if version > current:
        raise error(f"{where} has {what} schema version {version}; this edgekd reads up to {current}",
                    hint="upgrade edgekd")
    return version


def _non_finite(text: str) -> typing.NoReturn:
    raise Refused(f"{text} is not a number an edgekd document may hold (only finite numbers; null for none)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Refused(f"{text} is too large for a number (not finite)")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise Refused(f"the key '{key}' appears twice in one object")
        doc[key] = value
    return doc


def _depth(doc: Any) -> int:
    deepest, todo = 0, [(doc, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                todo += [(v, depth + 1) for v in (node.values() if isinstance(node, dict) else node)]
    return deepest
