"""Field rules for the documents' readers: one way to say "this key must hold that". Torch-free.

A rule is ``(test, what)``: a predicate on the value and the words for what it must be. ``field``
checks one key and returns its value; ``check_fields`` checks a table of key → rule. A reader
checks the fields it relies on before it uses any of them, so a damaged document is one error
naming the field, never a KeyError or a wrong number later.
"""
from __future__ import annotations

import math
from typing import Any, Callable

Rule = tuple[Callable[[Any], bool], str]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def of_type(kinds: type | tuple, what: str) -> Rule:
    """A value of one of ``kinds``; True and False are not numbers unless bool is one of them."""
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return (lambda v: isinstance(v, kinds) and (bool in kinds or not isinstance(v, bool))), what


TEXT = of_type(str, "a string")
OBJECT = of_type(dict, "an object")
NULLABLE_OBJECT = of_type((dict, type(None)), "an object or null")
LIST = of_type(list, "a list")
WHOLE = of_type(int, "a whole number")
NUMBER = (_number, "a number")
OBJECTS: Rule = (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "a list of objects")
COUNT: Rule = (lambda v: WHOLE[0](v) and v > 0, "a whole number > 0")
POSITIVE: Rule = (lambda v: _number(v) and v > 0, "a number > 0")
POSITIVES: Rule = (lambda v: isinstance(v, list) and v != [] and all(POSITIVE[0](x) for x in v),
                   "a list of numbers > 0")
FRACTION: Rule = (lambda v: v is None or (_number(v) and 0 <= v <= 1), "null or a fraction from 0 to 1")


class Invalid(ValueError):
    """A field a reader relies on is missing or wrong; the reader turns it into its own error kind."""


def field(obj: dict, key: str, at: str, rule: Rule, sep: str = "."):
    """``obj[key]`` when it follows ``rule``; Invalid naming ``at`` and the key otherwise."""
    test, what = rule
    if key not in obj:
        raise Invalid(f"{at} has no '{key}'")
    if not test(obj[key]):
        raise Invalid(f"{at}{sep}{key} must be {what}, got {obj[key]!r}")
    return obj[key]


def check_fields(doc: dict, table: dict[str, Rule], where: str, error: type, sep: str = ": ") -> None:
    """Every key of ``table`` in ``doc`` following its rule, or one ``error``."""
    try:
        for key, rule in table.items():
            field(doc, key, where, rule, sep)
    except Invalid as exc:
        raise error(str(exc)) from None
