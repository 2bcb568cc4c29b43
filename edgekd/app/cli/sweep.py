"""``edgekd sweep``."""
from __future__ import annotations

import json

import click

from edgekd.app.cli.bench import parse_bench_options, remote_from, remote_options
from edgekd.app.cli.options import TRUST_CODE_OPTION, config_options, late_option
from edgekd.device.bench.options import DEFAULTS as BENCH_DEFAULTS, default_threads
from edgekd.train.options import SEPARATOR


@click.command("sweep")
@click.option("--students", required=True, metavar=f"SPEC{SEPARATOR}SPEC…", help=f"The students, separated by "
              f"'{SEPARATOR}' (',' separates the options inside a spec): zoo specs or your own factories, as --student.")
@config_options("student", "out")
@late_option("--threads", default=default_threads,
             help="bench: thread counts, comma-separated; the first is the fronts'.")
@click.option("--repeat", type=int, help="bench: fresh measurements per setting; the median counts "
              "[default: 3 with --budget, as bench --budget; else 1]")
@late_option("--min-seconds", type=float, default=lambda: BENCH_DEFAULTS["min_seconds"],
             help="bench: timed time per measurement (at least).")
@click.option("--budget", type=click.Path(dir_okay=False), help="A budget TOML (the gate's keys): pick the "
              "fastest (--pick) student file that passes all its checks.")
@click.option("--pick", default="fastest", show_default=True, metavar="fastest|smallest",
              help="Which file meeting the budget to pick: the lowest p50, or the smallest file.")
@remote_options
@click.option("--out", default="runs/sweep", show_default=True, help="Sweep folder to write.")
@click.option("--force", is_flag=True, help="Replace an existing sweep folder (one edgekd wrote, or an empty folder).")
@click.option("--resume", is_flag=True, help="Continue an interrupted sweep, skipping every finished step.")
@click.option("--quiet", is_flag=True, help="No progress, only the final table.")
@click.option("--json", "as_json", is_flag=True, help="Print sweep.json instead of the table.")
@TRUST_CODE_OPTION
def sweep_command(students, config_file, threads, repeat, min_seconds, budget, pick, remote, remote_edgekd,
                  remote_copy, remote_keep, ssh_config, out, force, resume, quiet, as_json, trust_model_code,
                  **options):
    """Distill, export and bench several students against one teacher; Pareto fronts and a pick.

    \b
      edgekd sweep --students 'cnn:width=8,depth=2;cnn:width=16,depth=2;mlp:hidden=16;mlp:hidden=64' \\
          --budget examples/sweep-budget.toml
    """
    from edgekd.device.bench.options import BenchOptions
    from edgekd.train.config import load_config
    from edgekd.app.render.sweep import SweepProgress, print_sweep_summary
    from edgekd.app.sweep import Sweep, SweepOptions

    cfg = load_config(config_file, trust_model_code, **options)
    bench = BenchOptions(**parse_bench_options(threads, None, None, min_seconds=min_seconds))
    where = remote_from(remote, remote_edgekd, remote_copy, remote_keep, ssh_config)
    sweep = Sweep.prepare(cfg, students, out, SweepOptions(bench=bench, repeat=repeat, budget=budget, pick=pick, remote=where,
                                                          resume=resume, force=force, trust_model_code=trust_model_code))
    with SweepProgress(enabled=sweep.ranks.is_main and not (quiet or as_json), folds=cfg.folds) as progress:
        doc = sweep.run(progress.report)
    if not sweep.ranks.is_main:
        return
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        print_sweep_summary(doc, out)
