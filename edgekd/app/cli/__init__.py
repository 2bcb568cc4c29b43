"""The ``edgekd`` command: parse options → call the Python API → render. No logic here.

One module per command (:mod:`.distill`, :mod:`.export`, :mod:`.bench`, :mod:`.sweep`, :mod:`.predict`,
:mod:`.models`); this one holds the group, its error handling and the ``--debug`` of every command.

Heavy imports (torch, onnx, litert_torch) happen inside the commands that need them,
so ``edgekd --help`` and ``edgekd bench`` start fast and run without torch.
"""
from __future__ import annotations

import contextlib
import signal
import sys
from typing import Any, Sequence

import click

from edgekd.core.version import __version__
from edgekd.core.errors import EdgeKDError
from edgekd.app.cli.options import debug_option


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so that the same cleanup
    runs: child processes ended, temporary and staging folders removed, output locks released."""


def _raise_terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)       # a second SIGTERM must not cut the cleanup short
    raise Terminated()


@contextlib.contextmanager
def _sigterm_raises():
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class EdgeKDGroup(click.Group):
    """Turns an EdgeKDError into one ``error:`` line (+ ``hint:``) and exit 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Click's own usage errors (``--folds abc``, an unknown command) in edgekd's one-line form;
        click would print a usage block and ``Error:`` on three lines."""
        try:
            with _sigterm_raises():
                return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Terminated:
            click.echo("error: terminated", err=True)
            sys.exit(143)
        except click.exceptions.Exit as exc:     # --help, --version
            sys.exit(exc.exit_code)
        except click.exceptions.NoArgsIsHelpError as exc:    # plain `edgekd`: the help, as click shows it
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "edgekd"
            click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            click.echo(f"hint: see '{command} --help'", err=True)
            sys.exit(2)
        except click.ClickException as exc:      # click.FileError and the like
            click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(130)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgeKDError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if not exc.printed_elsewhere:
                click.echo(f"error: {exc.message}", err=True)
                if exc.hint:
                    click.echo(f"hint: {exc.hint}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            click.echo("error: interrupted", err=True)
            hint = getattr(exc, "hint", None)    # a command that can go on says how (distill: --resume)
            if hint:
                click.echo(f"hint: {hint}", err=True)
            sys.exit(130)


@click.group(cls=EdgeKDGroup, context_settings={"help_option_names": ["-h", "--help"]}, params=[debug_option()])
@click.version_option(__version__, prog_name="edgekd")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Distill a classifier, export it to ONNX and int8 TFLite, and bench it on the device.

    \b
      edgekd distill --out runs/demo          teacher → student (+ simple baseline), k-fold CV
      edgekd export runs/demo                 student.onnx, student.int8.tflite, teacher.onnx
      edgekd bench runs/demo/bundle           accuracy, latency, memory on this device
      edgekd sweep --students 'A;B;C'         several students: fronts, and the one that meets a budget
      edgekd predict BUNDLE IMAGES...         the model's classes of images; in your program: edgekd.Predictor
      edgekd models 'mobilenet*'              the model zoo: parameters and MACs at an input size
    """
    ctx.ensure_object(dict)     # one object for every context: a command's --debug sets it for the group


def _add_commands() -> None:
    from edgekd.app.cli.bench import bench_command, init_budget_command
    from edgekd.app.cli.distill import distill
    from edgekd.app.cli.export import export_command
    from edgekd.app.cli.models import models_command
    from edgekd.app.cli.predict import predict_command
    from edgekd.app.cli.sweep import sweep_command

    for command in (distill, export_command, bench_command, init_budget_command, sweep_command, predict_command,
                    models_command):
        command.params.append(debug_option())       # --debug after the command's name too
        cli.add_command(command)


_add_commands()


def main() -> None:
    cli(prog_name="edgekd")
