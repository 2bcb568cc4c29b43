"""Your own model: ``--student``/``--teacher`` name a factory in your code instead of the zoo.

One syntax, split at its first two colons::

    TARGET:FACTORY[:key=value,...]      my_models.nets:tiny_net:width=8
                                         models/shufflenet.py:shufflenet:groups=2

* TARGET is a FILE when it ends in ``.py`` or holds a ``/`` (so a file path may not contain a
  ``:``), else a dotted MODULE path that Python can import (installed, or on ``PYTHONPATH``).
* FACTORY is a Python identifier: a function or class of TARGET. A spec whose second part is not
  an identifier (``cnn:width=8``), or whose TARGET is a zoo name, is a zoo spec.
* The options are the zoo's: ``key=value`` typed by the factory's own annotations (``spec.py``).

The factory gets the data's facts it declares by name (``num_classes``, ``input_shape``,
``in_chans`` or ``in_channels``) and must return an ``nn.Module``. This runs the user's code: they
named it on the command line. A run folder records the spec, never the code, so ``export``
imports the same file or module again (the same import path on the machine that exports).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ModelError, unknown_name
from . import MAX_PARAMETERS, MODELS, count_parameters
from .spec import call_factory, parse_options

SYNTAX = "your own model: MODULE:FACTORY[:key=value,…] or FILE.py:FACTORY[:key=value,…]"
SAME_PATH = "a user model needs the same import path wherever it is built (distill, and export from model.json)"
TRACE_HINT = ("edgekd exports through torch.export: keep forward free of Python branches on tensor values, "
              ".item(), .tolist() and numpy calls")


@dataclass(frozen=True)
class UserSpec:
    target: str        # a module path, or a file path (absolute once resolved)
    factory: str
    options: str       # "key=value,..." as given
    text: str          # the whole spec, for messages

    @property
    def is_file(self) -> bool:
        return self.target.endswith(".py") or "/" in self.target

    @property
    def where(self) -> str:
        return f"model file '{self.target}'" if self.is_file else f"module '{self.target}'"


def parse_user_spec(spec: str) -> UserSpec | None:
    """The parts of a ``TARGET:FACTORY[:options]`` spec, or None for a zoo spec."""
    target, colon, rest = spec.partition(":")
    factory, _, options = rest.partition(":")
    if not colon or not factory.isidentifier() or target in MODELS:
        return None
    return UserSpec(target, factory, options, spec)


def absolute_spec(spec: str) -> str:
    """``spec`` with a relative FILE made absolute (against the current folder, as the shell sees it):
    export rebuilds the model from the run's model.json, wherever it is run from."""
    user = parse_user_spec(spec)
    if user is None or not user.is_file or os.path.isabs(user.target):
        return spec
    target = os.path.abspath(os.path.expanduser(user.target))
    return ":".join(filter(None, (target, user.factory, user.options)))


def build_user(user: UserSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The factory's module for the data's facts and the spec's options; each failure one ModelError.
    Built once, for real (not first on the meta device as the zoo is): the user's code may need data."""
    factory = load_factory(user)
    options = parse_options(factory, f"{user.target}:{user.factory}", user.options, user.text)
    try:
        model = call_factory(factory, tuple(input_shape), num_classes, options)
    except ModelError:
        raise                    # the data does not fit what the factory declares (in_chans of tabular data)
    except Exception as exc:     # the user's code: whatever it raises is their model failing
        raise ModelError(f"factory '{user.factory}' of {user.where} raised {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"factory '{user.factory}' of {user.where} returned a {type(model).__name__}, "
                         "not a torch.nn.Module", hint="return the model (an nn.Module instance)")
    if count_parameters(model) > MAX_PARAMETERS:
        raise ModelError(f"model '{user.text}' is too large: {count_parameters(model):,} parameters, more than "
                         f"edgekd builds ({MAX_PARAMETERS:,})")
    return model


def load_factory(user: UserSpec) -> Callable[..., Any]:
    module = _import_file(user) if user.is_file else _import_module(user)
    factory = getattr(module, user.factory, None)
    if factory is None:
        defined = [name for name, value in vars(module).items() if callable(value) and not name.startswith("_")
                   and getattr(value, "__module__", None) == module.__name__]
        raise unknown_name(f"factory in {user.where}:", user.factory, defined, ModelError)
    if not callable(factory):
        raise ModelError(f"'{user.factory}' of {user.where} is a {type(factory).__name__}, not a factory",
                         hint="name a function or class that returns an nn.Module")
    return factory


def _import_file(user: UserSpec) -> ModuleType:
    """The file as a module of its own, loaded once per process (its folder is not put on sys.path)."""
    path = user.target
    if not path.endswith(".py"):
        raise ModelError(f"{user.where} is not a .py file", hint=SYNTAX)
    if not os.path.isfile(path):
        raise ModelError(f"{user.where} not found ({SAME_PATH})", hint=SYNTAX)
    name = "_edgekd_user_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path))
    sys.modules[name] = module          # before it runs, as for any import: dataclasses and typing look it up
    try:
        _run_import(user, lambda: module.__spec__.loader.exec_module(module))
    except ModelError:
        del sys.modules[name]
        raise
    return module


def _import_module(user: UserSpec) -> ModuleType:
    name = user.target
    if not all(part.isidentifier() for part in name.split(".")):
        raise ModelError(f"'{name}' in '{user.text}' is neither a zoo model, a module path nor a .py file",
                         hint=SYNTAX)
    try:
        return _run_import(user, lambda: importlib.import_module(name))
    except ModuleNotFoundError as exc:          # the module itself, not one it imports
        raise ModelError(f"cannot import module '{name}': {exc} ({SAME_PATH})",
                         hint="install it, or put its folder on PYTHONPATH") from None


def _run_import(user: UserSpec, load: Callable[[], Any]):
    try:
        return load()
    except ModuleNotFoundError as exc:
        if not user.is_file and exc.name and (user.target + ".").startswith(exc.name + "."):
            raise
        raise ModelError(f"{user.where} fails to import: {exc} ({SAME_PATH})") from None
    except SyntaxError as exc:
        raise ModelError(f"{user.where} has a syntax error: {exc.msg} ('{exc.filename}', line {exc.lineno})") from None
    except Exception as exc:               # the user's module failing as it runs
        raise ModelError(f"{user.where} fails to import: {_first_line(exc)}") from None


def check_user_model(model: nn.Module, user: UserSpec, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Before any training: the model gives (batch, num_classes) logits, and torch.export traces it with
    a dynamic batch, as export will (distill runs it eagerly: export would be the first to fail)."""
    example = torch.zeros(2, *input_shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example)
    except Exception as exc:
        raise ModelError(f"the model of {user.where} fails on a batch of input {tuple(input_shape)}: "
                         f"{_first_line(exc)}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ModelError(f"the model of {user.where} returns {shape} for a batch of 2, expected logits "
                         f"(2, {num_classes})", hint="return one logit per class: a tensor (batch, num_classes)")
    from ..exporters._util import quiet      # torch.export logs its failures to the terminal itself

    try:
        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        with quiet():
            torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},), strict=False)
    except Exception as exc:
        raise ModelError(f"the model of {user.where} cannot be traced by torch.export (export needs it): "
                         f"{_first_line(exc)}", hint=TRACE_HINT) from None
    finally:
        model.train(was_training)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
