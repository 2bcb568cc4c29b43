"""``edgekd distill``: its options are DistillConfig's fields (:mod:`edgekd.app.cli.options`)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgekd.app.cli.options import TRUST_CODE_OPTION, config_options


@click.command()
@config_options()
@click.option("--force", is_flag=True, help="Replace an existing run folder (one edgekd wrote, or an empty folder).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last epoch checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress, only the final table.")
@click.option("--json", "as_json", is_flag=True, help="Print cv.json's content instead of the table.")
@TRUST_CODE_OPTION
def distill(config_file, force, resume, quiet, as_json, trust_model_code, **options):
    """Train teacher, student (distilled) and simple model with k-fold CV; write a run folder."""
    from edgekd.app.render.distill import CachingProgress, DistillProgress, print_distill_summary
    from edgekd.train.distill import Experiment
    from edgekd.train.distill.checks import run_config, staging_path

    cfg = run_config(config_file, trust_model_code, resume, **options)    # a resume: the run's own config
    try:
        with CachingProgress(enabled=not (quiet or as_json)) as caching:
            experiment = Experiment.prepare(cfg, resume=resume, force=force, progress=caching.report,
                                            note=caching.note, trust_model_code=trust_model_code,
                                            survey=caching.survey if caching.enabled else None)
        main = experiment.ranks.is_main          # under torchrun only rank 0 speaks
        with DistillProgress(enabled=main and not (quiet or as_json), folds=cfg.folds) as progress:
            summary = experiment.run(progress.report)
    except KeyboardInterrupt as exc:         # Ctrl-C: where the run's stage stays, say how to go on
        if staging_path(Path(cfg.out)).is_dir():
            exc.hint = f"continue it with: edgekd distill --resume --out {cfg.out}" + (
                " --trust-model-code" if trust_model_code else "")
        raise
    if not main:
        return
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        print_distill_summary(summary, cfg.out)

