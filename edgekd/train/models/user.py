"""Your own model: ``--student``/``--teacher`` name a factory in your code instead of the zoo.

One syntax, split at its first two colons::

    TARGET:FACTORY[:key=value,...]      my_models.nets:tiny_net:width=8
                                         models/shufflenet.py:shufflenet:groups=2

* TARGET is a FILE when it ends in ``.py`` or holds a ``/`` (so a file path may not contain a
  ``:``), else a dotted MODULE path that Python can import (on ``PYTHONPATH``; not an installed
  package's, below).
* FACTORY is a Python identifier: a function or class of TARGET. A spec whose second part is not
  an identifier (``cnn:width=8``), or whose TARGET is a zoo name, is a zoo spec.
* The options are the zoo's: ``key=value`` typed by the factory's own annotations (``spec.py``).

The factory gets the data's facts it declares by name (``num_classes``, ``input_shape``,
``in_chans`` or ``in_channels``) and must return an ``nn.Module``. This runs the user's code: they
named it on the command line (a spec read from a file, a ``--config`` TOML or a run's model.json, is
refused before this unless they pass ``--trust-model-code``: ``config.py``, ``modelfile.py``). A run
folder records the spec, never the code, so ``export`` imports the same file or module again (the
same import path on the machine that exports).

Whoever names it, a spec cannot reach code that acts on options rather than builds a model. Before
anything is imported, a TARGET whose code lies in the standard library, the installed packages
(site-packages) or edgekd itself is refused, by one rule for a file and a module: where it lies (so an
installed model package is named through a file of the user's that imports it). And FACTORY must be
an ``nn.Module`` class or a function defined in TARGET itself (``shutil.rmtree`` re-exported by a file
is refused before it is called). Whatever the user's code raises on the way, ``sys.exit()`` included,
is one ModelError naming it: edgekd does not exit 0 with no run written. A KeyboardInterrupt is not
the code's failure but an interrupt (Ctrl-C while torch.export traces): ``error: interrupted``, exit 130.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

import torch
from torch import nn

from edgekd.core.errors import ModelError, unknown_name
from edgekd.core.quiet import quiet
from edgekd.train.models import MAX_PARAMETERS, MODELS, count_parameters
from edgekd.train.models.spec import USER_CODE_ESCAPES, call_factory, parse_options

SYNTAX = "your own model: MODULE:FACTORY[:key=value,…] or FILE.py:FACTORY[:key=value,…]"
SAME_PATH = "a user model needs the same import path wherever it is built (distill, and export from model.json)"
OWN_CODE = "name a factory in your own file or module (MODULE:FACTORY or FILE.py:FACTORY)"
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
    except USER_CODE_ESCAPES as exc:     # the user's code: whatever it raises is their model failing
        raise ModelError(f"factory '{user.factory}' of {user.where} raised {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"factory '{user.factory}' of {user.where} returned a {type(model).__name__}, "
                         "not a torch.nn.Module", hint="return the model (an nn.Module instance)")
    if count_parameters(model) > MAX_PARAMETERS:
        raise ModelError(f"model '{user.text}' is too large: {count_parameters(model):,} parameters, more than "
                         f"edgekd builds ({MAX_PARAMETERS:,})")
    return model


def load_factory(user: UserSpec) -> Callable[..., Any]:
    _refuse_library(user)
    module = _import_file(user) if user.is_file else _import_module(user)
    factory = getattr(module, user.factory, None)
    if factory is None:
        defined = [name for name, value in vars(module).items() if callable(value) and not name.startswith("_")
                   and getattr(value, "__module__", None) == module.__name__]
        raise unknown_name(f"factory in {user.where}:", user.factory, defined, ModelError)
    if not callable(factory):
        raise ModelError(f"'{user.factory}' of {user.where} is a {type(factory).__name__}, not a factory",
                         hint="name a function or class that returns an nn.Module")
    _check_defined_here(user, factory, module)
    return factory


def _refuse_library(user: UserSpec) -> None:
    """Before anything is imported: a TARGET whose code lies in the standard library, the installed
    packages or edgekd itself is not a model of the user's (its import alone may act, and its functions
    write, delete or download when called with options: ``numpy:save``, ``sklearn...:clear_data_home``).
    One rule for a file and a module: where the code lies, not what it is called."""
    if user.is_file:
        places = [os.path.expanduser(user.target)]
    else:
        top = user.target.split(".")[0]
        if top in sys.stdlib_module_names or top == "__main__":   # built-in, frozen or zipped; the running program
            raise ModelError(f"{user.where} is part of Python's standard library or the program running edgekd: "
                             "not model code, and edgekd does not call it", hint=OWN_CODE)
        places = _module_places(top)
    folders = _library_folders()
    inside = next((folder for place in places for folder in folders
                   if os.path.realpath(place).startswith(folder + os.sep)), None)
    if inside:
        raise ModelError(f"{user.where} is in '{inside}', a folder of Python's standard library, its installed "
                         "packages or edgekd: not model code, and edgekd does not call it", hint=OWN_CODE)


def _library_folders() -> list[str]:
    """Where code is Python's or an installed package's (the interpreter's and the user's
    site-packages, a Debian dist-packages) or edgekd's own, never a user's model."""
    paths = sysconfig.get_paths()
    folders = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    folders.update(site.getsitepackages(), [site.getusersitepackages()])
    folders.add(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))   # edgekd itself
    return sorted(os.path.realpath(folder) for folder in folders)


def _module_places(top: str) -> list[str]:
    """Where the top-level module ``top`` lies, found without running it (``find_spec`` of a top-level
    name executes no package); none when it is not found or is no identifier: its import reports that."""
    if not top.isidentifier():
        return []
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):         # already imported without a spec: none of a user's files
        raise ModelError(f"module '{top}' cannot be located ({SAME_PATH})", hint=OWN_CODE) from None
    if spec is None:
        return []
    return [*([spec.origin] if spec.has_location and spec.origin else []), *(spec.submodule_search_locations or [])]


def _check_defined_here(user: UserSpec, factory: Any, module: ModuleType) -> None:
    """Before it is called: an nn.Module class, or a function the named file or module defines. An
    imported one (``from shutil import rmtree as make``, a package's re-export) may act on its options."""
    if inspect.isclass(factory) and issubclass(factory, nn.Module):
        return
    if inspect.isfunction(factory) and factory.__module__ == module.__name__:
        return
    origin = getattr(factory, "__module__", None)
    source = f" (it comes from '{origin}')" if isinstance(origin, str) and origin != module.__name__ else ""
    raise ModelError(f"'{user.factory}' of {user.where} is not a function defined there nor an nn.Module "
                     f"class{source}: edgekd calls only those as a model factory",
                     hint="define the factory in the file or module you name; an imported function is not called")


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
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None    # a .py file always has its source loader
    module, loader = importlib.util.module_from_spec(spec), spec.loader
    sys.modules[name] = module          # before it runs, as for any import: dataclasses and typing look it up
    try:
        _run_import(user, lambda: loader.exec_module(module))
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
    except USER_CODE_ESCAPES as exc:       # the user's module failing (or exiting) as it runs
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
    except USER_CODE_ESCAPES as exc:
        raise ModelError(f"the model of {user.where} fails on a batch of input {tuple(input_shape)}: "
                         f"{_first_line(exc)}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise ModelError(f"the model of {user.where} returns {shape} for a batch of 2, expected logits "
                         f"(2, {num_classes})", hint="return one logit per class: a tensor (batch, num_classes)")
    try:
        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        with quiet():                 # torch.export logs its failures to the terminal itself
            torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},), strict=False)
    except USER_CODE_ESCAPES as exc:
        raise ModelError(f"the model of {user.where} cannot be traced by torch.export (export needs it): "
                         f"{_first_line(exc)}", hint=TRACE_HINT) from None
    finally:
        model.train(was_training)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
