"""``edgekd bench`` and ``edgekd init-budget``, and the measurement options they share with ``edgekd sweep``."""
from __future__ import annotations

import os
import sys

import click
from rich.console import Console

from edgekd.app.cli.options import late_option
from edgekd.device.bench.options import DEFAULTS as BENCH_DEFAULTS, PROFILE_HELP, cores, default_threads   # stdlib only: no start-up cost
from edgekd.core.errors import ConfigError, EdgeKDError


# the names the help lists, each from its table (imported when the help is shown: numpy)
def _runtimes() -> list[str]:
    from edgekd.device.runtimes import ROWS

    return [row.name for row in ROWS]


def _providers() -> list[str]:
    from edgekd.device.runtimes.onnx import PROVIDERS

    return list(PROVIDERS)


def measure_options(command):
    """The measurement options of ``bench`` and ``init-budget``."""
    options = [
        late_option("--threads", default=default_threads, help="Thread counts, comma-separated; 'all' = every core."),
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
        late_option("--runtime", names=_runtimes, help="Bundle: only models of this runtime. File: open it with "
                    "this runtime ({names})."),
        late_option("--providers", names=_providers, help="onnxruntime execution providers, comma-separated: "
                    "{names} [default: every one present]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def names(text: str | None) -> list[str] | None:
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
            out.append(cores())
            continue
        try:
            out.append(int(word))
        except ValueError:
            raise ConfigError(f"{what} must be whole numbers separated by commas, got '{text}'",
                              hint=f"e.g. --{what} 1,4" + (" (or 'all')" if allow_all else "")) from None
    return out


def parse_bench_options(threads, batch, providers, **given) -> dict:
    """measure_options' strings parsed into BenchOptions' typed fields; options not given are left out."""
    parsed = {"threads": _whole_numbers(threads, "threads", allow_all=True), "batch": _whole_numbers(batch, "batch"),
              "providers": names(providers) or None, **given}
    return {key: value for key, value in parsed.items() if value is not None}


def remote_options(command):
    """``--remote`` and its companions, of ``bench`` and ``sweep``; :func:`remote_from` reads them."""
    options = [
        click.option("--remote", metavar="[USER@]HOST[:DIR]", help="Bench on a board over SSH, with its own edgekd: the "
                     "target goes to DIR/NAME there, a folder edgekd marks as its own (.edgekd-bundle) and replaces "
                     "only then [default DIR: ~/edgekd-bench]; keys, ports and host checking from your OpenSSH config."),
        click.option("--remote-edgekd", default="edgekd", show_default=True, metavar="PATH", help="The board's edgekd."),
        click.option("--remote-copy", type=click.Choice(["auto", "rsync", "scp"]), default="auto", show_default=True,
                     help="How the target gets to the board (auto: rsync when both ends have it)."),
        click.option("--remote-keep", is_flag=True, help="Keep the run's folder (its bench.json) on the board too."),
        click.option("--ssh-config", type=click.Path(dir_okay=False), help="An ssh_config file instead of ~/.ssh/config."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def remote_from(remote, remote_edgekd, remote_copy, remote_keep, ssh_config):
    """The board of ``--remote`` (None without it)."""
    if remote is None:
        return None
    from edgekd.device.bench.remote import Remote
    return Remote.parse(remote, edgekd=remote_edgekd, copy=remote_copy, keep=remote_keep, ssh_config=ssh_config)


@click.command("bench")
@click.argument("target", type=click.Path())
@measure_options
@click.option("--out", type=click.Path(dir_okay=False), help="bench.json to write  "
              "[default: TARGET/bench.json, or MODEL.bench.json beside a single file]")
@click.option("--profile", is_flag=True, help=PROFILE_HELP)
@click.option("--markdown", type=click.Path(dir_okay=False), help="Also write the report as markdown.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also write a PNG: latency distribution, "
              "accuracy against latency; with eval data also STEM.classes.png beside it, each file's "
              "confusion matrix (needs matplotlib).")
@click.option("--budget", type=click.Path(dir_okay=False), help="CI gate: check against this budget TOML "
              "(edgekd init-budget proposes one); exit 1 when a check fails.")
@click.option("--baseline", type=click.Path(dir_okay=False), help="CI gate: check against a previous "
              "bench.json (size, accuracy, latency, memory; tolerances in the budget's [baseline]).")
@click.option("--against", type=click.Path(), metavar="OLD_BUNDLE", help="CI gate: measure this older bundle in the "
              "same run, pair by pair, and check against it (docs/guides/ci.md, 'The A/B latency rule').")
@click.option("--junit", type=click.Path(dir_okay=False), help="Write the gate's checks as JUnit XML.")
@click.option("--save-baseline", type=click.Path(dir_okay=False), help="Store this run as the next --baseline.")
@remote_options
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
    from edgekd.device.bench import gate
    from edgekd.device.bench.run import run_bench
    from edgekd.app.render.bench import BenchProgress, print_summary
    from edgekd.core.schema.bench import to_json

    options = parse_bench_options(**options)
    options["remote"] = remote_from(remote, remote_edgekd, remote_copy, remote_keep, ssh_config)
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
    gate.write_gate_outputs(report, result, junit=junit if gated else None, save_baseline=save_baseline,
                            step_summary=os.environ.get("GITHUB_STEP_SUMMARY") if gated else None)
    if gated and not report.passed:
        sys.exit(1)


@click.command("init-budget")
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
    from edgekd.device.bench.gate import init_budget
    from edgekd.app.render.bench import BenchProgress

    with BenchProgress(enabled=True) as progress:
        proposal = init_budget(source, out, force=force, progress=progress.update, **parse_bench_options(**options))
    Console(stderr=True).print(f"wrote {out}; check with: {proposal.check}", highlight=False, markup=False,
                               soft_wrap=True)       # one line, to copy: a long path is not folded
