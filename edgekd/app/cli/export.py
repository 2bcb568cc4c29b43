"""``edgekd export``."""
from __future__ import annotations

import json

import click
from rich.console import Console

from edgekd.app.cli.bench import names
from edgekd.app.cli.distill import TRUST_CODE_OPTION

# --- export ----------------------------------------------------------------------------


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("--int8/--no-int8", default=True, show_default=True,
              help="Without --formats: the default set is student ONNX fp32 + full-integer int8 TFLite, "
                   "teacher ONNX fp32; --no-int8 leaves the int8 TFLite out (ONNX only). --int8 is that "
                   "default, accepted so a script may say it; with --formats neither changes anything.")
@click.option("--formats", default=None, metavar="A,B",
              help="Formats for every role instead of the default set: onnx, onnx-int8, tflite, "
                   "tflite-fp16, tflite-int8.")
@click.option("--roles", default="student,teacher", show_default=True, metavar="A,B",
              help="Models of the run to export (student, teacher, simple).")
@click.option("--out", default=None, metavar="DIR", help="Bundle folder  [default: RUN_DIR/bundle]")
@click.option("--opset", type=int, default=None,
              help="ONNX opset, 18-27 (what torch 2.13 and onnxruntime honour)  [default: the exporter's]")
@click.option("--calibration-samples", type=int, default=256, show_default=True,
              help="Training samples (stratified by class) that calibrate int8 activations.")
@click.option("--int8-activations", default=None, metavar="u8|s8|auto",
              help="onnx-int8's activation type (weights are int8 either way): u8 for x86 (onnxruntime's "
                   "u8s8 kernels, with or without VNNI), s8 for Arm with dot-product instructions. auto picks "
                   "by the machine that exports, which may not be the device  [default: auto]")
@click.option("--keep-float", default=None, metavar="LAYER,…",
              help="Leave these layers of the int8 files in float (names from the per-layer report, "
                   "--explain; a module such as blocks.4 keeps every layer in it): a mixed, not full-integer file. "
                   "auto: the report's worst layers, one more at a time, until --max-int8-drop holds.")
@click.option("--max-int8-drop", type=float, default=None, metavar="POINTS",
              help="With --keep-float auto: the accuracy points the int8 file may lose against fp32, measured "
                   "on labelled training samples that did not calibrate (never the eval split)  [default: 0.5]")
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

    # options: out, int8, opset, calibration_samples, int8_activations, max_int8_drop, trust_model_code
    # (export_run's keywords)
    report = export_run(run_dir, formats=names(formats), roles=names(roles), keep_float=names(keep_float),
                        force=force,
                        progress=None if quiet else export_progress(Console(stderr=True)), **options)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif not quiet:
        print_export_summary(report, report_console(), explain=explain)
