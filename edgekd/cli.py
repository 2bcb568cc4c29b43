"""The ``edgekd`` command: parse options → call the Python API → render. No logic here.

Heavy imports (torch, onnx, litert_torch) happen inside the commands that need them,
so ``edgekd --help`` and ``edgekd bench`` start fast and run without torch.
"""
from __future__ import annotations

import sys

import click

from . import __version__
from .errors import EdgeKDError


class EdgeKDGroup(click.Group):
    """Turns an EdgeKDError into one ``error:`` line (+ ``hint:``) and exit 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgeKDError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=EdgeKDGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekd")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Distill a classifier, export it to ONNX and int8 TFLite, and bench it on the device.

    \b
      edgekd distill --out runs/demo          teacher → student (+ simple baseline), k-fold CV
      edgekd export runs/demo --int8          student.onnx, student.int8.tflite, teacher.onnx
      edgekd bench runs/demo/bundle           accuracy, latency, memory on this device
    """
    ctx.obj = {"debug": debug}


# --- distill ---------------------------------------------------------------------------

# --- export ----------------------------------------------------------------------------

# --- bench -----------------------------------------------------------------------------


def main() -> None:
    cli(prog_name="edgekd")


if __name__ == "__main__":
    main()
