"""The options the commands share, each declared once: a DistillConfig field per training option
(distill and sweep), ``--trust-model-code``, and options whose help lists a table's names or shows a
declared default, filled when the help is shown (the tables' modules load numpy or torch)."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import Field, fields

import click

from edgekd.train.config import DistillConfig

CLICK_TYPES = {"int": click.INT, "float": click.FLOAT, "str": click.STRING}
#: distill, sweep and export: code named in a file (a --config TOML, a run's model.json) runs only with it
TRUST_CODE_OPTION = click.option(
    "--trust-model-code", is_flag=True,
    help="Run your own model code (MODULE:FACTORY, FILE.py:FACTORY) that a FILE names: a --config TOML, or a run's "
         "model.json (--teacher-from, export). It imports and runs that code, so pass it only for files you wrote "
         "and runs you made; a factory given on the command line needs no flag.")


def _debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:       # the group's context object, which every command's context shares
        ctx.ensure_object(dict)["debug"] = True


def debug_option() -> click.Option:
    """``--debug``, declared here once and given to the group and to every command, so that it goes
    before the command's name or after it. Eager: set before an option of the command fails."""
    return click.Option(["--debug"], is_flag=True, expose_value=False, is_eager=True, callback=_debug,
                        help="Show the full traceback of an error.")


def field_help(f: Field) -> str:
    """The help of ``f``'s option: its text, the names of its registry, its default."""
    meta = f.metadata
    text = meta["help"]
    if "flag_value" in meta:
        text += f" --{f.name.replace('_', '-')} alone = {meta['flag_value']}."
    return filled_help(text, meta.get("names"), meta.get("default_text", f.default))


def filled_help(text: str, names: Callable[[], Iterable[str]] | None = None, default: object = None) -> str:
    """``text`` with its ``{names}`` filled from ``names()`` (a table's listing) and ``default`` shown
    (None: none shown)."""
    if names is not None:
        text = text.replace("{names}", ", ".join(names()))
    shown = _shown(default)
    return f"{text} [default: {shown}]" if shown is not None else text


def _shown(default) -> str | None:
    if default is None:
        return None
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, (list, tuple)):          # as the command line takes it: "a,b"
        return ",".join(str(item) for item in default)
    return f"{default:g}" if isinstance(default, float) else str(default)


class LateHelpOption(click.Option):
    """An option whose help ``late_help()`` makes when it is shown: the tables and defaults it names
    may import numpy or torch, which ``edgekd --help`` and a usage error must not load."""

    def __init__(self, param_decls: Sequence[str] | None = None, *, late_help: Callable[[], str], **attrs):
        super().__init__(param_decls, **attrs)
        self.late_help = late_help

    def get_help_record(self, ctx: click.Context):
        self.help = self.late_help()
        return super().get_help_record(ctx)


def late_option(*declarations: str, help: str, names: Callable[[], Iterable[str]] | None = None,
                default: Callable[[], object] | None = None, **attrs):
    """``click.option`` whose help is ``help`` with ``{names}`` filled from ``names()`` and the default
    ``default()`` shown, both when the help is shown (see :func:`filled_help`). The option itself
    defaults to None: what the API declares stands unless it is given."""
    def late_help() -> str:
        return filled_help(help, names, default() if default else None)
    return click.option(*declarations, cls=LateHelpOption, late_help=late_help, default=None, **attrs)


class FieldOption(LateHelpOption):
    """The option of one DistillConfig field. ``None`` when not given (a ``--config`` file's value
    stands); its help is made when shown, since the registries it lists import torch."""

    def __init__(self, param_decls: object = None, *, field: Field):     # click.option(cls=…) passes no names
        f = field
        name, kind, meta = "--" + f.name.replace("_", "-"), str(f.type).split("|")[0].strip(), f.metadata
        extra = {"is_flag": False, "flag_value": meta["flag_value"]} if "flag_value" in meta else {}
        if kind == "bool":
            declarations, extra["type"] = [f"{name}/--no-{name[2:]}", f.name], None
        else:
            declarations = [name]
            extra["type"] = click.Choice(meta["choices"]) if "choices" in meta else CLICK_TYPES[kind]
        super().__init__(declarations, default=None, metavar=meta.get("metavar"), late_help=lambda: field_help(f),
                         **extra)
        self.field = f


def config_options(*skip: str):
    """Decorator: ``--config``, then an option per DistillConfig field but those named in ``skip``
    (a sweep names its students and its folder otherwise), in the fields' order."""
    def apply(command):
        for f in reversed([f for f in fields(DistillConfig) if f.name not in skip]):
            command = click.option(cls=FieldOption, field=f)(command)
        return click.option("--config", "config_file", type=click.Path(dir_okay=False),
                            help="TOML file with the same keys (a run's config.toml re-runs it).")(command)
    return apply
