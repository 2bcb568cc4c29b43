"""``edgekd predict``."""
from __future__ import annotations

import click

from edgekd.app.cli.export import format_names
from edgekd.app.cli.options import late_option
from edgekd.core.schema import TRAINED_ROLES



@click.command("predict")
@click.argument("bundle", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Classes per image, most probable first.")
@click.option("--model", "role", default="student", show_default=True,
              help=f"Which of the bundle's models: {', '.join(TRAINED_ROLES)} (those it holds).")
@late_option("--format", "fmt", names=format_names,
             help="Which of the model's files ({names}) [default: int8 first, then fp32, then fp16; TFLite first].")
@click.option("--threads", type=click.IntRange(min=1), help="Runtime threads [default: the runtime's own].")
@click.option("--json", "output", flag_value="json", help="One JSON document (predictions, skipped inputs) on stdout.")
@click.option("--csv", "output", flag_value="csv", help="CSV on stdout: source, then label and probability per rank.")
@click.option("--skip-bad", is_flag=True, help="Go on past unreadable images; count them at the end.")
def predict_command(bundle, inputs, top_k, role, fmt, threads, output, skip_bad):
    """Classify images with a bundle's model: files, folders (recursively) or an .npz of samples.

    \b
      edgekd predict BUNDLE photo.jpg                      the student's int8 TFLite file, top-1
      edgekd predict BUNDLE photos/ --top-k 3 --csv > labels.csv
      edgekd predict runs/demo/bundle runs/demo/bundle/eval.npz   digits: samples, not pictures
      edgekd predict BUNDLE photos/ --model teacher --format onnx --json
    """
    from edgekd.core.quiet import quiet
    from edgekd.device.predict import Predictor
    from edgekd.device.predict.files import Skipped, expand, predict_paths
    from edgekd.app.render.predict import render

    paths = expand(inputs)
    with quiet():       # LiteRT announces its delegate on stderr
        predictor = Predictor(bundle, model=role, format=fmt, threads=threads)
    skipped = Skipped() if skip_bad else None
    top_k = min(top_k, len(predictor.labels))        # the CSV's columns: as many as there are classes, at most
    render(predictor, predict_paths(predictor, paths, top_k, skipped), output or "text", top_k, skipped)
