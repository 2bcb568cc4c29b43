"""The ``edgekd`` command: parse options → call the Python API → render. No logic here.

Heavy imports (torch, onnx, litert_torch) happen inside the commands that need them,
so ``edgekd --help`` and ``edgekd bench`` start fast and run without torch.
"""
from __future__ import annotations

import contextlib
import signal
import sys

import click

from . import __version__
from .bench.options import DEFAULTS as BENCH_DEFAULTS   # stdlib-only: no start-up cost
from .errors import ConfigError, EdgeKDError


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

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        """Click's own usage errors (``--folds abc``, an unknown command) in edgekd's one-line form;
        click would print a usage block and ``Error:`` on three lines."""
        try:
            with _sigterm_raises():
                return super().main(*args, standalone_mode=False, **kwargs)
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
      edgekd export runs/demo                 student.onnx, student.int8.tflite, teacher.onnx
      edgekd bench runs/demo/bundle           accuracy, latency, memory on this device
    """
    ctx.obj = {"debug": debug}


# --- distill ---------------------------------------------------------------------------

@cli.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file with the same keys (a run's config.toml re-runs it).")
@click.option("--data", help="digits | npz:PATH | idx:DIR | folder:DIR | csv:PATH  [default: digits]")
@click.option("--label-column", help="csv: the column holding the class [default: the last].")
@click.option("--teacher", help="Teacher model spec: a zoo NAME:key=value,… or your own factory, "
              "MODULE:FACTORY[:key=value,…] or FILE.py:FACTORY[:key=value,…] (a file path holds no ':'). "
              "Your own factory is YOUR CODE, imported and run here and again by export; it gets "
              "num_classes, in_chans/in_channels, input_shape by name and returns an nn.Module "
              "[default: cnn:width=64,depth=3].")
@click.option("--student", help="Student model spec, as --teacher [default: cnn:width=8,depth=2].")
@click.option("--teacher-from", help="Bring a teacher: a run folder, a .onnx or a .pt2 file (not retrained).")
@click.option("--teacher-weights", metavar="FILE.safetensors",
              help="Trained weights for the --teacher architecture: a safetensors state dict, never a pickle "
                   "(not retrained, still scored per fold).")
@click.option("--temperature", type=float, help="Softmax temperature T of the soft targets [default: 4].")
@click.option("--alpha", type=float, help="Weight of the hard-label loss, in [0, 1] [default: 0.1].")
@click.option("--loss", metavar="NAME[,key=value]", help="Distillation loss: kd (Hinton et al.), dkd (Decoupled KD: "
              "alpha, beta, temperature, warmup, ce_weight), fitnet (feature hints through a learned adapter: "
              "feat_weight, ce_weight) [default: kd with --temperature and --alpha].")
@click.option("--student-fraction", type=float, help="Part of each training split the student and simple model see [default: 0.1].")
@click.option("--folds", type=int, help="Cross-validation folds; 1 = a single split [default: 5].")
@click.option("--test-fraction", type=float, help="Held-out test split [default: 0.2].")
@click.option("--teacher-epochs", type=int, help="[default: 15]")
@click.option("--student-epochs", type=int, help="Epochs of the student and the simple model [default: 150].")
@click.option("--qat-epochs", type=int, metavar="N", help="Then fine-tune the final student N epochs with int8 "
              "fake quantization, from the same soft targets (quantization-aware distillation; export still "
              "calibrates) [default: 0 = none].")
@click.option("--batch-size", type=int, help="[default: 32]")
@click.option("--lr", type=float, help="Peak learning rate, cosine-decayed after the warm-up [default: 0.01].")
@click.option("--optimizer", help="adam | adamw | sgd (Nesterov momentum 0.9) [default: adam].")
@click.option("--weight-decay", type=float, help="On conv and linear weights only, never biases or norms [default: 0].")
@click.option("--warmup-epochs", type=int, metavar="N", help="Linear learning-rate warm-up over N epochs [default: 0].")
@click.option("--label-smoothing", type=float, metavar="EPS", help="Smoothing of the hard labels [default: 0].")
@click.option("--augment", metavar="LIST", is_flag=False, flag_value="shift",
              help="Image augmentations per batch, comma-separated: crop (pad-and-crop by 1/8; random-resized-crop "
                   "from 64 px), shift (1 pixel), flip (horizontal), mixup, cutmix; the teacher sees the same "
                   "augmented batch, run every step. --augment alone = shift; none = off [default: none].")
@click.option("--teacher-views", type=int, metavar="K", help="With --augment (no mixup/cutmix): cache the teacher's "
              "logits for K augmented views of each student sample once, epoch e training on view e mod K, "
              "instead of running the teacher every step [default: 0 = live teacher].")
@click.option("--image-size", metavar="N|H,W", help="Images: resize (shorter side, bilinear) and center-crop to N×N "
              "or H×W; recorded in model.json and the bundle's manifest [default: as stored].")
@click.option("--channels", type=int, metavar="1|3", help="Images: convert to grayscale (1) or RGB (3) "
              "[default: as the data is; folder: the first image's].")
@click.option("--normalize", metavar="data|imagenet", help="Standardisation: data = statistics of the training "
              "split; imagenet = ImageNet's mean and std (RGB only), for teachers trained with them [default: data].")
@click.option("--cache-dir", metavar="DIR", help="Where images are decoded once (uint8, memory-mapped; safe to "
              "delete) [default: $XDG_CACHE_HOME/edgekd or ~/.cache/edgekd].")
@click.option("--seed", type=int, help="[default: 0]")
@click.option("--compile/--no-compile", "compile", default=None, help="torch.compile the training step: a one-time "
              "compilation per model, then faster steps where the compiler helps (benchmarks/distill_overhead.py "
              "measures it) [default: off].")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), help="cuda: mixed precision on the GPU; auto: cuda when present [default: cpu]")
@click.option("--backend", type=click.Choice(["auto", "gloo", "nccl"]), help="Process group under torchrun: auto = nccl on CUDA, gloo on CPU [default: auto]")
@click.option("--out", help="Run folder to write [default: runs/demo].")
@click.option("--force", is_flag=True, help="Overwrite an existing run folder.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last epoch checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress, only the final table.")
@click.option("--json", "as_json", is_flag=True, help="Print cv.json's content instead of the table.")
def distill(config_file, force, resume, quiet, as_json, **options):
    """Train teacher, student (distilled) and simple model with k-fold CV; write a run folder."""
    from .config import load_config
    from .render.distill import CachingProgress, DistillProgress, print_distill_summary

    from .distill import Experiment

    cfg = load_config(config_file, **options)
    with CachingProgress(enabled=not (quiet or as_json)) as caching:
        experiment = Experiment.prepare(cfg, resume=resume, force=force, progress=caching.report, note=caching.note)
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


# --- export ----------------------------------------------------------------------------


@cli.command("export")
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
@click.option("--trust-model-code", is_flag=True,
              help="Rebuild models whose spec names your own code (FILE.py:FACTORY): this imports and runs "
                   "that code, so pass it only for runs you made.")
@click.option("--force", is_flag=True, help="Overwrite an existing bundle folder.")
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
    import json

    from rich.console import Console

    from .console import report_console
    from .exporters import export_run
    from .render.export import export_progress, render_export_report

    # options: out, int8, opset, calibration_samples, int8_activations, max_int8_drop, trust_model_code
    # (export_run's keywords)
    report = export_run(run_dir, formats=_names(formats), roles=_names(roles), keep_float=_names(keep_float),
                        force=force,
                        progress=None if quiet else export_progress(Console(stderr=True)), **options)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif not quiet:
        render_export_report(report, report_console(), explain=explain)


# --- bench -----------------------------------------------------------------------------

def measure_options(command):
    """The measurement options of ``bench`` and ``init-budget``."""
    options = [
        click.option("--threads", help="Thread counts, comma-separated; 'all' = every core  [default: 1,<cores>]"),
        click.option("--batch", help="Batch sizes, comma-separated  [default: 1]"),
        *[click.option(flag, type=type(BENCH_DEFAULTS[key]), default=BENCH_DEFAULTS[key], show_default=True,
                       help=text) for flag, key, text in [
            ("--warmup", "warmup", "Warm-up calls (at least)."),
            ("--warmup-seconds", "warmup_seconds", "Warm-up time (at least)."),
            ("--runs", "runs", "Timed calls (at least)."),
            ("--min-seconds", "min_seconds", "Timed time (at least)."),
            ("--max-runs", "max_runs", "Timed calls (at most): a fast model stops here before --min-seconds."),
        ]],
        click.option("--repeat", type=int, help="Fresh measurements per setting; the median counts  "
                     "[default: 3 with --budget/--baseline/--save-baseline or for init-budget, else 1]"),
        click.option("--data", type=click.Path(), help="eval.npz (x, y) for accuracy; a bundle's own by default. "
                     "Without it a single model gets random inputs (latency and memory only)."),
        click.option("--runtime", help="Bundle: only models of this runtime. File: open it with this runtime "
                     "(onnxruntime, tflite)."),
        click.option("--providers", help="onnxruntime execution providers, comma-separated: cpu, cuda, tensorrt "
                     "[default: every one present]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _names(text: str | None) -> list[str] | None:
    """'a, b' → ['a', 'b'] (blanks dropped); None stays None (the default)."""
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def _whole_numbers(text: str | None, what: str, allow_all: bool = False) -> list[int] | None:
    """'1,4' → [1, 4]; 'all' (threads) → the core count. The range is BenchOptions' to check."""
    if text is None:
        return None
    out = []
    for item in text.split(","):
        word = item.strip().lower()
        if allow_all and word in ("all", "max"):
            from .bench.device import cores
            out.append(cores())
            continue
        try:
            out.append(int(word))
        except ValueError:
            raise ConfigError(f"{what} must be whole numbers separated by commas, got '{text}'",
                              hint=f"e.g. --{what} 1,4" + (" (or 'all')" if allow_all else "")) from None
    return out


def _bench_options(threads, batch, providers, **given) -> dict:
    """measure_options' strings parsed into BenchOptions' typed fields; options not given are left out."""
    parsed = {"threads": _whole_numbers(threads, "threads", allow_all=True), "batch": _whole_numbers(batch, "batch"),
              "providers": _names(providers) or None, **given}
    return {key: value for key, value in parsed.items() if value is not None}


@cli.command("bench")
@click.argument("target", type=click.Path())
@measure_options
@click.option("--out", type=click.Path(dir_okay=False), help="bench.json to write  "
              "[default: TARGET/bench.json, or MODEL.bench.json beside a single file]")
@click.option("--markdown", type=click.Path(dir_okay=False), help="Also write the report as markdown.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also write a PNG: latency distribution, "
              "accuracy against latency (needs matplotlib).")
@click.option("--budget", type=click.Path(dir_okay=False), help="CI gate: check against this budget TOML "
              "(edgekd init-budget proposes one); exit 1 when a check fails.")
@click.option("--baseline", type=click.Path(dir_okay=False), help="CI gate: check against a previous "
              "bench.json (size, accuracy, latency, memory; tolerances in the budget's [baseline]).")
@click.option("--against", type=click.Path(), metavar="OLD_BUNDLE", help="CI gate: measure this older bundle in the "
              "same run, pair by pair, and check against it (README 'The A/B latency rule').")
@click.option("--junit", type=click.Path(dir_okay=False), help="Write the gate's checks as JUnit XML.")
@click.option("--save-baseline", type=click.Path(dir_okay=False), help="Store this run as the next --baseline.")
@click.option("--remote", metavar="[USER@]HOST[:DIR]", help="Bench on a board over SSH, with its own edgekd, in DIR "
              "there [default: ~/edgekd-bench]; keys, ports and host checking from your OpenSSH config.")
@click.option("--remote-edgekd", default="edgekd", show_default=True, metavar="PATH", help="The board's edgekd.")
@click.option("--remote-copy", type=click.Choice(["auto", "rsync", "scp"]), default="auto", show_default=True,
              help="How the target gets to the board (auto: rsync when both ends have it).")
@click.option("--remote-keep", is_flag=True, help="Keep the run's folder (its bench.json) on the board too.")
@click.option("--ssh-config", type=click.Path(dir_okay=False), help="An ssh_config file instead of ~/.ssh/config.")
@click.option("--quiet", is_flag=True, help="No progress and no table; only the files (and the gate's lines).")
@click.option("--json", "as_json", is_flag=True, help="Print bench.json to stdout instead of the table "
              "(the gate's lines go to stderr).")
def bench_command(target, quiet, as_json, budget, baseline, against, junit, save_baseline, remote, remote_edgekd,
                  remote_copy, remote_keep, ssh_config, **options):
    """Accuracy, latency and memory of a bundle's models (or one .onnx/.tflite file) on this device.

    \b
    CI gate (exit 1 when a check fails, 2 on a bad budget file):
      edgekd bench runs/demo/bundle --budget edgekd-budget.toml --baseline previous-bench.json \\
          --junit gate.xml --save-baseline next-bench.json
      edgekd bench runs/demo/bundle --budget edgekd-budget.toml --against previous-bundle
      edgekd bench runs/demo/bundle --remote pi@raspberrypi.local --budget edgekd-budget.toml
    """
    import os

    from .bench import gate, run_bench
    from .render.bench import BenchProgress, print_summary
    from .schema.bench import to_json

    options = _bench_options(**options)
    if remote is not None:
        from .bench.remote import Remote
        options["remote"] = Remote.parse(remote, edgekd=remote_edgekd, copy=remote_copy, keep=remote_keep, ssh_config=ssh_config)
    gated = bool(budget or baseline or against)
    if junit and not gated:
        raise EdgeKDError("--junit writes the gate's checks, so it needs --budget, --baseline or --against")
    with BenchProgress(enabled=not (quiet or as_json)) as progress:
        if gated or save_baseline:
            result, report = gate.bench_and_check(
                target, budget, baseline, against=against, progress=progress.update, junit=junit if gated else None,
                save_baseline=save_baseline, step_summary=os.environ.get("GITHUB_STEP_SUMMARY") if gated else None,
                **options)
        else:
            result, report = run_bench(target, progress=progress.update, **options), None
    if as_json:
        click.echo(to_json(result), nl=False)
    elif not quiet:
        print_summary(result)
    if gated:
        for line in gate.lines(report, result):
            click.echo(line, err=as_json)
    gate.write_outputs(report, result, junit=junit if gated else None, save_baseline=save_baseline,
                       step_summary=os.environ.get("GITHUB_STEP_SUMMARY") if gated else None)
    if gated and not report.passed:
        sys.exit(1)


@cli.command("init-budget")
@click.argument("source", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), default="edgekd-budget.toml", show_default=True,
              help="Budget file to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing budget file.")
@measure_options
def init_budget_command(source, out, force, **options):
    """Propose a CI budget (commented TOML) from a bench: SOURCE is a bench.json, or a bundle to bench now.

    \b
      edgekd init-budget runs/demo/bundle                 bench it (3 repetitions), write edgekd-budget.toml
      edgekd init-budget runs/demo/bundle/bench.json      from an existing bench run
    """
    from rich.console import Console

    from .bench.gate import init_budget
    from .render.bench import BenchProgress

    with BenchProgress(enabled=True) as progress:
        init_budget(source, out, force=force, progress=progress.update, **_bench_options(**options))
    Console(stderr=True).print(f"wrote {out}; check with: edgekd bench BUNDLE --budget {out}", highlight=False)


def main() -> None:
    cli(prog_name="edgekd")


if __name__ == "__main__":
    main()
