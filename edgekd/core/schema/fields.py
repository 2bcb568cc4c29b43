"""Field rules for the documents' readers: one way to say "this key must hold that". Torch-free.

A document is declared once, as a TypedDict or a dataclass; ``check_document`` checks a document
against that declaration (``check_shape`` an object inside one). A rule on a value is a
:class:`~edgekd.core.rules.Check` (the words for what the value must be, and the test), attached as
``Annotated[type, Check(...)]``, as the command line's options attach theirs. A reader
checks the fields it relies on before it uses any of them, so a damaged document is one error
naming the field, never a KeyError or a wrong number later.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Annotated, Any, Literal, Mapping

from edgekd.core.rules import Check
from edgekd.core.schema.jsonfile import check_version



def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def of_type(kinds: type | tuple[type, ...], what: str) -> Check:
    """A value of one of ``kinds``; True and False are not numbers unless bool is one of them."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return Check(what, lambda v: isinstance(v, kinds) and (bool in kinds or not isinstance(v, bool)))


WHOLE = of_type(int, "a whole number")
COUNT = Check("a whole number > 0", lambda v: WHOLE.test(v) and v > 0)
POSITIVE = Check("a number > 0", lambda v: _number(v) and v > 0)
POSITIVES = Check("a list of numbers > 0", lambda v: isinstance(v, list) and v != [] and all(POSITIVE.test(x) for x in v))
FRACTION = Check("null or a fraction from 0 to 1", lambda v: v is None or (_number(v) and 0 <= v <= 1))


class Invalid(ValueError):
    """A field a reader relies on is missing or wrong; the reader turns it into its own error kind."""


# -- the checks derived from a document's declared shape -----------------------------------------
# A document is declared once, as a TypedDict or a dataclass; its reader's check is read off the
# annotations (as models/spec.py reads a builder's options): a required key must be there, and every
# declared key that is there must hold its type. ``Annotated[type, Check(...)]`` adds a rule on the value
# (``Annotated[int, COUNT]``); keys a shape does not declare are left as written.
WORDS: dict[Any, str] = {str: "a string", int: "a whole number", float: "a number", bool: "true or false",
                         dict: "an object", list: "a list"}


@functools.lru_cache(maxsize=None)
def shape_keys(shape: type) -> tuple[dict[str, Any], frozenset[str]]:
    """(key → annotation, the required keys) of a TypedDict or a dataclass (read once per shape:
    a bench.json holds one object of a shape per measurement)."""
    hints = typing.get_type_hints(shape, include_extras=True)
    if dataclasses.is_dataclass(shape):
        required = {f.name for f in dataclasses.fields(shape)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        return hints, frozenset(required)
    return hints, frozenset(getattr(shape, "__required_keys__", hints))


def check_shape(obj: Mapping[str, Any], shape: type, name: str, prefix: str) -> None:
    """``obj`` as ``shape`` declares it; Invalid naming the first field that is missing or wrong.
    ``name`` is the object's own name (in "has no") and ``prefix`` what its keys' names start with."""
    hints, required = shape_keys(shape)
    for key, hint in hints.items():
        if key in obj:
            check_value(obj[key], hint, prefix + key)
        elif key in required:
            raise Invalid(f"{name} has no '{key}'")


def check_document(doc: Mapping[str, Any], shape: type, where: str, what: str, error: type) -> None:
    """A document's schema version and its declared ``shape``; one ``error`` naming the field otherwise
    (``what`` names the kind of document, ``where`` the file)."""
    check_version(doc, where, what, error)
    try:
        check_shape(doc, shape, where, f"{where}: ")
    except Invalid as exc:
        raise error(str(exc)) from None


def check_value(value: Any, hint: Any, at: str) -> None:
    """``value`` of the type ``hint``, the values inside it included; Invalid naming ``at`` otherwise."""
    if not _holds(value, hint):
        raise Invalid(f"{at} must be {describe(hint)}, got {_shown(value)}")
    base = _unannotated(hint)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if _is_shape(base):
        check_shape(value, base, at, at + ".")
    elif origin in (typing.Union, types.UnionType):
        _check_alternatives(value, [a for a in args if (a is type(None)) == (value is None)], at)
    elif origin is list and args:
        for i, item in enumerate(value):
            check_value(item, args[0], f"{at}[{i}]")
    elif origin is dict and len(args) == 2:
        for key in _keys_of(hint):
            if key not in value:
                raise Invalid(f"{at} has no '{key}'")
        for key, item in value.items():
            # a free key that is not a plain word (a file name: "m.int8.tflite") is quoted, so the
            # field's name says where the key ends
            check_value(item, args[1], f"{at}.{key}" if key.isidentifier() else f"{at}[{key!r}]")


#: how much of a wrong value an error line shows: a hostile document's list of a million items stays one short line
SHOWN = 120


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}… ({len(text):,} characters)"


@dataclasses.dataclass(frozen=True)
class Keys:
    """``Annotated[dict[str, X], Keys(names)]``: an object keyed by free names that must hold these."""
    names: tuple[str, ...]


def _keys_of(hint: Any) -> tuple[str, ...]:
    extras = typing.get_args(hint)[1:] if typing.get_origin(hint) is Annotated else ()
    return next((extra.names for extra in extras if isinstance(extra, Keys)), ())


def describe(hint: Any) -> str:
    """The words for what a value of ``hint`` must be ("a whole number", "an object or null")."""
    if typing.get_origin(hint) is Annotated:
        rule = typing.get_args(hint)[1]
        return describe(typing.get_args(hint)[0]) if isinstance(rule, Keys) else rule.rule
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        words = [describe(a) for a in args if a is not type(None)]
        return " or ".join(words) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list and args and args[0] in WORDS:
        return f"a list of {WORDS[args[0]].split(' ', 1)[1]}s"
    return "an object" if _is_shape(hint) else WORDS.get(origin or hint, "any value")


def _check_alternatives(value: Any, alternatives: list[Any], at: str) -> None:
    """One of a union's types holds ``value`` with its contents; else the last one's complaint."""
    problem: Invalid | None = None
    for hint in alternatives:
        try:
            check_value(value, hint, at)
        except Invalid as exc:
            problem = exc
        else:
            return
    if problem is not None:
        raise problem


def _holds(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of ``hint``'s outer type (a list, not yet its items)."""
    if typing.get_origin(hint) is Annotated:
        base, rule = typing.get_args(hint)[:2]
        return _holds(value, base) and (isinstance(rule, Keys) or rule.test(value))
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_holds(value, a) for a in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is float:
        return _number(value)
    if hint is int:
        return WHOLE.test(value)
    kind = dict if _is_shape(hint) else (origin or hint)
    return isinstance(value, kind)


def _is_shape(hint: Any) -> bool:
    return typing.is_typeddict(hint) or (isinstance(hint, type) and dataclasses.is_dataclass(hint))


def _unannotated(hint: Any) -> Any:
    return typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint


#: the counts and measures that must be more than zero
Count = Annotated[int, COUNT]
Positive = Annotated[float, POSITIVE]
