"""The ``key=value`` options of a model spec, typed by the builder's own annotations, and
the one way a builder is called: the data's facts by name, then the options.

A builder declares its options as keyword parameters with defaults, timm-style::

    def cnn(input_shape, num_classes, width: PositiveInt = 16, norm: Literal["bn", "none"] = "bn")

Option types are ``int``, ``float``, ``bool``, ``str`` or ``Literal[...]`` choices, optionally
wrapped in ``Annotated[type, Check(...)]`` for a rule on the value (``PositiveInt``, ``Fraction`` of
:mod:`edgekd.train.options`).
The data's facts are not options: a builder gets those of ``FACTS`` it declares, by name.
"""
from __future__ import annotations

import inspect
import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

from edgekd.core.errors import EdgeKDError, ModelError, closest, unknown_name
from edgekd.core.registry import Registry
from edgekd.core.rules import Check, require
from edgekd.train.options import split_spec

#: what a builder may ask for about the data, by parameter name (``in_chans``: image input only)
FACTS = ("input_shape", "num_classes", "in_chans", "in_channels")     # in_chans: timm's name; in_channels: torch's
REQUIRED = inspect.Parameter.empty
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")
EXPECTED = {int: "an integer", float: "a finite number", bool: "true or false (1/0, yes/no)", str: "a string"}
#: what a user's factory, module or annotation may raise and edgekd reports as its failure: any
#: error, and ``sys.exit()``, which would end edgekd as if it had finished (exit 0, no run). Not a
#: KeyboardInterrupt: Ctrl-C during the slow trace is the user's, and interrupts (exit 130), as SIGTERM does
USER_CODE_ESCAPES = (Exception, SystemExit)


@dataclass(frozen=True)
class Option:
    name: str
    kind: Any                      # int, float, bool, str, or the tuple of a Literal's choices
    default: Any = REQUIRED
    checks: tuple[Check, ...] = ()

    @property
    def expected(self) -> str:
        if isinstance(self.kind, tuple):
            return "one of " + ", ".join(str(choice) for choice in self.kind)
        return EXPECTED[self.kind]


def _keyword_parameters(fn: Callable) -> list[inspect.Parameter]:
    parameters = inspect.signature(fn).parameters.values()
    return [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _label(fn: Callable) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def read_options(fn: Callable) -> dict[str, Option]:
    """The options ``fn`` takes: its keyword parameters other than ``FACTS``, typed by its annotations."""
    try:  # a class is typed by its __init__; "from __future__ import annotations" leaves strings to resolve
        hints = typing.get_type_hints(getattr(fn, "__init__") if isinstance(fn, type) else fn, include_extras=True)
    except USER_CODE_ESCAPES as exc:  # NameError, TypeError: an annotation that does not resolve
        raise ModelError(f"cannot read the option types of '{_label(fn)}': {exc}") from None
    return {p.name: _option(fn, p, hints.get(p.name))
            for p in _keyword_parameters(fn) if p.name not in FACTS}


def _option(fn: Callable, parameter: inspect.Parameter, hint: Any) -> Option:
    checks: tuple[Check, ...] = ()
    if typing.get_origin(hint) is Annotated:
        hint, *extras = typing.get_args(hint)
        checks = tuple(extra for extra in extras if isinstance(extra, Check))
    if hint is None:  # not annotated: the default's type, else the text as given
        hint = type(parameter.default) if type(parameter.default) in EXPECTED else str
    if typing.get_origin(hint) is Literal:
        return Option(parameter.name, typing.get_args(hint), parameter.default, checks)
    if hint not in EXPECTED:
        raise ModelError(f"option '{parameter.name}' of '{_label(fn)}' is annotated {hint!r}",
                         hint="a model option is int, float, bool, str or a Literal[...] of choices")
    return Option(parameter.name, hint, parameter.default, checks)


def _as_kind(option: Option, text: str) -> Any:
    """``text`` as ``option``'s type, or REQUIRED where it is not one."""
    if isinstance(option.kind, tuple):
        return next((choice for choice in option.kind if str(choice) == text), REQUIRED)
    if option.kind is bool:
        return True if text.lower() in TRUE else False if text.lower() in FALSE else REQUIRED
    try:
        result = option.kind(text)
    except ValueError:
        return REQUIRED
    return REQUIRED if option.kind is float and not math.isfinite(result) else result


def convert(option: Option, value: str, spec: str, what: str = "model",
            error: type[EdgeKDError] = ModelError) -> Any:
    """``value`` as ``option``'s type, or one ``error`` naming the option, the type and the value."""
    result = _as_kind(option, value.strip())
    label = f"{what} option '{option.name}' in '{spec}'"
    if result is REQUIRED:
        choices = [str(choice) for choice in option.kind] if isinstance(option.kind, tuple) else []
        guess = closest(value.strip(), choices)
        raise error(f"{label} must be {option.expected}, got '{value}'",
                    hint=f"did you mean '{guess}'?" if guess else None)
    require(option.checks, result, label, f"'{value}'", error)
    return result


#: a spec of each kind, for the hint of an option that is not key=value
EXAMPLES = {"model": "cnn:width=64,depth=3", "loss": "dkd:beta=8"}


def parse_options(fn: Callable, name: str, text: str, spec: str, what: str = "model",
                  error: type[EdgeKDError] = ModelError) -> dict[str, Any]:
    """The options after ``name:`` in ``spec`` (``text``), converted by ``fn``'s annotations; ``what``
    the spec names (a model, or a distillation loss), ``error`` the class of its mistakes."""
    known = read_options(fn)
    options: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise error(f"{what} option '{item}' in '{spec}' is not key=value", hint=f"example: {EXAMPLES[what]}")
        if key not in known:
            raise unknown_name(f"option of {what} '{name}':", key, known, error)
        if key in options:       # the last one would win silently
            raise error(f"{what} option '{key}' is given twice in '{spec}'", hint="give each option once")
        options[key] = convert(known[key], value, spec, what, error)
    missing = [key for key, option in known.items() if option.default is REQUIRED and key not in options]
    if missing:
        raise error(f"{what} '{name}' needs option '{missing[0]}' in '{spec}'", hint=f"example: {name}:{missing[0]}=…")
    return options


def parse_named(spec: str, registry: Registry) -> tuple[str, Any, dict[str, Any]]:
    """The one parser of a ``NAME[:key=value,…]`` spec of a registry's entry (a zoo model, a loss):
    (NAME, the entry, its options typed by the entry's annotations). Its mistakes are the
    registry's error (a ModelError for a model, a ConfigError for a loss)."""
    name, text = split_spec(spec)
    entry = registry.get(name)
    return name, entry, parse_options(entry, name, text, spec, registry.what, registry.error)


def image_shape(input_shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
    """``input_shape`` as (channels, height, width), or the error that the model needs images."""
    if len(input_shape) != 3:
        raise ModelError(f"model '{name}' needs image input (channels, height, width), got shape "
                         f"{tuple(input_shape)}", hint="use 'mlp' for tabular data")
    return tuple(input_shape)  # type: ignore[return-value]


def call_factory(fn: Callable, input_shape: tuple[int, ...], num_classes: int, options: dict[str, Any]):
    """``fn(**options)`` plus those of the data's facts that ``fn`` declares by name: ``input_shape``
    (without the batch dimension), ``num_classes``, and ``in_chans`` or ``in_channels`` (input_shape[0]
    of an image)."""
    declared = {p.name for p in _keyword_parameters(fn)}
    facts: dict[str, Any] = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    for name in {"in_chans", "in_channels"} & declared:
        facts[name] = image_shape(tuple(input_shape), getattr(fn, "__name__", _label(fn)))[0]
    return fn(**{key: value for key, value in facts.items() if key in declared}, **options)
