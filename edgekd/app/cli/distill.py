"""``edgekd distill`` and the training options it shares with ``edgekd sweep``."""
from __future__ import annotations

import click


#: every option of the experiment (DistillConfig's fields, ``--config`` first) but ``--out`` and ``--student``
TRAINING_OPTIONS = [
    click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file with the same keys (a run's config.toml re-runs it)."),
    click.option("--data", help="digits | npz:PATH | idx:DIR | folder:DIR | csv:PATH  [default: digits]"),
    click.option("--label-column", help="csv: the column holding the class [default: the last]."),
    click.option("--teacher", help="Teacher model spec: a zoo NAME:key=value,… or your own factory, "
                 "MODULE:FACTORY[:key=value,…] or FILE.py:FACTORY[:key=value,…] (a file path holds no ':'). "
                 "Your own factory is YOUR CODE, imported and run here and again by export; it gets "
                 "num_classes, in_chans/in_channels, input_shape by name and returns an nn.Module "
                 "[default: cnn:width=64,depth=3]."),
    click.option("--teacher-from", help="Bring a teacher: a run folder, a .onnx or a .pt2 file (not retrained)."),
    click.option("--teacher-weights", metavar="FILE.safetensors",
                 help="Trained weights for the --teacher architecture: a safetensors state dict, never a pickle "
                       "(not retrained, still scored per fold)."),
    click.option("--temperature", type=float, help="Softmax temperature T of the soft targets [default: 4]."),
    click.option("--alpha", type=float, help="Weight of the hard-label loss, in [0, 1] [default: 0.1]."),
    click.option("--loss", metavar="NAME[,key=value]", help="Distillation loss: kd (Hinton et al.), dkd (Decoupled KD: "
                 "alpha, beta, temperature, warmup, ce_weight), fitnet (feature hints through a learned adapter: "
                 "feat_weight, ce_weight) [default: kd with --temperature and --alpha]."),
    click.option("--student-fraction", type=float, help="Part of each training split the student and simple model see [default: 0.1]."),
    click.option("--folds", type=int, help="Cross-validation folds; 1 = a single split [default: 5]."),
    click.option("--test-fraction", type=float, help="Held-out test split [default: 0.2]."),
    click.option("--teacher-epochs", type=int, help="[default: 15]"),
    click.option("--student-epochs", type=int, help="Epochs of the student and the simple model [default: 150]."),
    click.option("--qat-epochs", type=int, metavar="N", help="Then fine-tune the final student N epochs with int8 "
                 "fake quantization, from the same soft targets (quantization-aware distillation; export still "
                 "calibrates) [default: 0 = none]."),
    click.option("--batch-size", type=int, help="[default: 32]"),
    click.option("--lr", type=float, help="Peak learning rate, cosine-decayed after the warm-up [default: 0.01]."),
    click.option("--optimizer", help="adam | adamw | sgd (Nesterov momentum 0.9) [default: adam]."),
    click.option("--weight-decay", type=float, help="On conv and linear weights only, never biases or norms [default: 0]."),
    click.option("--warmup-epochs", type=int, metavar="N", help="Linear learning-rate warm-up over N epochs [default: 0]."),
    click.option("--label-smoothing", type=float, metavar="EPS", help="Smoothing of the hard labels [default: 0]."),
    click.option("--augment", metavar="LIST", is_flag=False, flag_value="shift",
                 help="Image augmentations per batch, comma-separated: crop (pad-and-crop by 1/8; random-resized-crop "
                       "from 64 px), shift (1 pixel), flip (horizontal), mixup, cutmix; the teacher sees the same "
                       "augmented batch, run every step. --augment alone = shift; none = off [default: none]."),
    click.option("--teacher-views", type=int, metavar="K", help="With --augment (no mixup/cutmix): cache the teacher's "
                 "logits for K augmented views of each student sample once, epoch e training on view e mod K, "
                 "instead of running the teacher every step [default: 0 = live teacher]."),
    click.option("--image-size", metavar="N|H,W", help="Images: resize (shorter side, bilinear) and center-crop to N×N "
                 "or H×W; recorded in model.json and the bundle's manifest [default: as stored]."),
    click.option("--channels", type=int, metavar="1|3", help="Images: convert to grayscale (1) or RGB (3) "
                 "[default: as the data is; folder: the first image's]."),
    click.option("--normalize", metavar="data|imagenet", help="Standardisation: data = statistics of the training "
                 "split; imagenet = ImageNet's mean and std (RGB only), for teachers trained with them [default: data]."),
    click.option("--cache-dir", metavar="DIR", help="Where images are decoded once (uint8, memory-mapped; safe to "
                 "delete) [default: $XDG_CACHE_HOME/edgekd or ~/.cache/edgekd]."),
    click.option("--seed", type=int, help="[default: 0]"),
    click.option("--compile/--no-compile", "compile", default=None, help="torch.compile the training step: a one-time "
                 "compilation per model, then faster steps where the compiler helps (benchmarks/distill_overhead.py "
                 "measures it) [default: off]."),
    click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), help="cuda: mixed precision on the GPU; auto: cuda when present [default: cpu]"),
    click.option("--backend", type=click.Choice(["auto", "gloo", "nccl"]), help="Process group under torchrun: auto = nccl on CUDA, gloo on CPU [default: auto]"),
]
STUDENT_OPTION = click.option("--student", help="Student model spec, as --teacher [default: cnn:width=8,depth=2].")
#: distill, sweep and export: code named in a file (a --config TOML, a run's model.json) runs only with it
TRUST_CODE_OPTION = click.option(
    "--trust-model-code", is_flag=True,
    help="Run your own model code (MODULE:FACTORY, FILE.py:FACTORY) that a FILE names: a --config TOML, or a run's "
         "model.json (--teacher-from, export). It imports and runs that code, so pass it only for files you wrote "
         "and runs you made; a factory given on the command line needs no flag.")


def training_options(command, student: bool = True):
    """Every option of the experiment (DistillConfig's fields, ``--config`` first) but ``--out``;
    ``student=False``: not ``--student`` either (a sweep names its students otherwise)."""
    options = TRAINING_OPTIONS[:4] + [STUDENT_OPTION] * student + TRAINING_OPTIONS[4:]
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@training_options
@click.option("--out", help="Run folder to write [default: runs/demo].")
@click.option("--force", is_flag=True, help="Replace an existing run folder (one edgekd wrote, or an empty folder).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last epoch checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress, only the final table.")
@click.option("--json", "as_json", is_flag=True, help="Print cv.json's content instead of the table.")
@TRUST_CODE_OPTION
def distill(config_file, force, resume, quiet, as_json, trust_model_code, **options):
    """Train teacher, student (distilled) and simple model with k-fold CV; write a run folder."""
    from edgekd.train.config import load_config
    from edgekd.app.render.distill import CachingProgress, DistillProgress, print_distill_summary

    from edgekd.train.distill import Experiment

    cfg = load_config(config_file, trust_model_code, **options)
    with CachingProgress(enabled=not (quiet or as_json)) as caching:
        experiment = Experiment.prepare(cfg, resume=resume, force=force, progress=caching.report, note=caching.note,
                                        trust_model_code=trust_model_code)
    main = experiment.ranks.is_main          # under torchrun only rank 0 speaks
    with DistillProgress(enabled=main and not (quiet or as_json), folds=cfg.folds) as progress:
        summary = experiment.run(progress.report)
    if not main:
        return
    if as_json:
        import json
        click.echo(json.dumps(summary, indent=2))
    else:
        print_distill_summary(summary, cfg.out)

