"""``edgekd export``."""
from __future__ import annotations

import json
from dataclasses import fields

import click
from rich.console import Console

from edgekd.app.cli.bench import names
from edgekd.app.cli.options import TRUST_CODE_OPTION, late_option
from edgekd.core.schema import TRAINED_ROLES


# the names and defaults the help shows, each from its declaration (imported when the help is shown: numpy)
def format_names() -> list[str]:
    from edgekd.exporters.formats import FORMATS

    return FORMATS.names()


def _default(name: str) -> object:
    from edgekd.exporters.run import ExportOptions

    return next(f.default for f in fields(ExportOptions) if f.name == name)


def _max_int8_drop() -> float:
    from edgekd.exporters.keep_auto import DEFAULT_MAX_DROP

    return DEFAULT_MAX_DROP


def _inputs() -> tuple[str, ...]:
    from edgekd.exporters.formats import INPUT_VALUES

    return INPUT_VALUES


def _opsets() -> list[str]:
    from edgekd.exporters.formats import ONNX_OPSETS

    return [f"{ONNX_OPSETS[0]}-{ONNX_OPSETS[-1]}"]


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=str))
@late_option("--int8/--no-int8", default=lambda: _default("int8"),
             help="Without --formats: the default set is student ONNX fp32 + full-integer int8 TFLite, "
                  "teacher ONNX fp32; --no-int8 leaves the int8 TFLite out (ONNX only). --int8 is that "
                  "default, accepted so a script may say it; with --formats neither changes anything.")
@late_option("--formats", metavar="A,B", names=format_names,
             help="Formats for every role instead of the default set: {names}.")
@late_option("--roles", metavar="A,B", names=lambda: TRAINED_ROLES, default=lambda: _default("roles"),
             help="Models of the run to export ({names}).")
@click.option("--out", default=None, metavar="DIR", help="Bundle folder  [default: RUN_DIR/bundle]")
@late_option("--opset", type=int, names=_opsets,
             help="ONNX opset, {names} (what torch 2.13 and onnxruntime honour)  [default: the exporter's]")
@late_option("--calibration-samples", type=int, default=lambda: _default("calibration_samples"),
             help="Training samples (stratified by class) that calibrate int8 activations.")
@click.option("--int8-activations", default=None, metavar="u8|s8|auto",
              help="onnx-int8's activation type (weights are int8 either way): u8 for x86 (onnxruntime's "
                   "u8s8 kernels, with or without VNNI), s8 for Arm with dot-product instructions. auto picks "
                   "by the machine that exports, which may not be the device  [default: auto]")
@click.option("--keep-float", default=None, metavar="LAYER,…",
              help="Leave these layers of the int8 files in float (names from the per-layer report, "
                   "--explain; a module such as blocks.4 keeps every layer in it): a mixed, not full-integer file. "
                   "auto: the report's worst layers, one more at a time, until --max-int8-drop holds.")
@late_option("--max-int8-drop", type=float, metavar="POINTS", default=_max_int8_drop,
             help="With --keep-float auto: the accuracy points the int8 file may lose against fp32, measured "
                  "on labelled training samples that did not calibrate (never the eval split).")
@late_option("--input", metavar="KIND", names=_inputs, default=lambda: _default("input"),
             help="What the int8 files take ({names}): float, standardised floats in the model's layout "
                  "(NCHW), quantized by the caller; uint8, the camera's frame: raw 0..255 pixels in NHWC after "
                  "the run's image transform, the standardisation inside the model (runs trained on 8-bit "
                  "images only).")
@TRUST_CODE_OPTION
@click.option("--force", is_flag=True, help="Replace an existing bundle folder (one edgekd wrote, or an empty folder).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--json", "as_json", is_flag=True, help="Print the export report as JSON on stdout.")
@click.option("--explain", is_flag=True,
              help="List every quantized layer of each int8 file with its int8-vs-fp32 error (SNR dB), "
                   "not only the worst few.")
def export_command(run_dir, formats, roles, keep_float, force, quiet, as_json, explain, **options):
    """Export a run's models to ONNX and TFLite, check each against PyTorch, write a bundle.

    \b
      edgekd export runs/demo                  (the default set; --no-int8: ONNX only)
      edgekd export runs/demo --formats onnx,tflite,tflite-fp16,tflite-int8 --roles student --force
    """
    from edgekd.core.console import report_console
    from edgekd.exporters import export_run
    from edgekd.app.render.export import export_progress, print_export_summary

    # options: out, int8, opset, calibration_samples, int8_activations, max_int8_drop, input, trust_model_code
    # (export_run's keywords); one not given is left out, so ExportOptions' default stands
    given = {"formats": names(formats), "roles": names(roles), "keep_float": names(keep_float), **options}
    report = export_run(run_dir, force=force, progress=None if quiet else export_progress(Console(stderr=True)),
                        **{key: value for key, value in given.items() if value is not None})
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif not quiet:
        print_export_summary(report, report_console(), explain=explain)
