"""The distillation experiment behind ``edgekd distill`` (docs/guides/distill.md).

A stratified held-out test split first (``eval.npz``; nothing trains on it); then k folds on
the rest, in each of which the trio (:mod:`.trio`) trains: the teacher on the whole training
part, the student and the "simple" model on the same smaller subset, the student from the
teacher's soft targets, the simple model from labels alone; then the final trio on all non-test
data, scored on the test split. :mod:`.checks` checks every input first, :mod:`.runfolder`
writes the run folder.

Under torchrun every rank runs this same experiment (see ``distributed.py``); rank 0
alone owns the run folder.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgekd.train.config import DistillConfig
from edgekd.train.data.cache import Progress
from edgekd.train.data.summary import FolderSummary
from edgekd.train.data.split import folds as make_folds, holdout
from edgekd.core.fsutil import OutputLock, atomic_write_text, staged_dir
from edgekd.core.schema.cv import CONFIG_FILE, Document
from edgekd.train.distill.fastpath import require_native
from edgekd.train.distill.checks import Inputs, check_data, check_output, check_models, check_rest, load_transfer_set, check_teacher_split, device as pick_device, load_data, staging_folder
from edgekd.train.distill.distributed import Ranks, join
from edgekd.train.distill.summary import write_summary
from edgekd.train.distill.runfolder import summarize, write_run
from edgekd.train.distill.teachers import load_teacher
from edgekd.train.distill.trio import Reporter, RunLog, Split, TeacherShare, Trio, TrioResult


def run_experiment(cfg: DistillConfig, reporter: Reporter | None = None, resume: bool = False,
                   force: bool = False, trust_model_code: bool = False) -> Document:
    """Run the whole experiment and write the run folder ``cfg.out``; returns ``cv.json``'s content."""
    return Experiment.prepare(cfg, resume, force, trust_model_code=trust_model_code).run(reporter)


@dataclass
class Output:
    """Where the run goes: its staging folder (``.NAME.partial``), the options about an existing
    one, and rank 0's lock on the run folder (held until ``run`` renames the staging folder)."""
    stage: Path
    resume: bool
    force: bool
    lock: OutputLock | None = None


class Experiment:
    """``prepare`` checks everything that can be wrong (options, data, models, the output
    folder) before anything is written or trained; ``run`` trains and writes."""

    def __init__(self, cfg: DistillConfig, inputs: Inputs, device: str, ranks: Ranks, output: Output,
                 share: TeacherShare | None = None):
        self.cfg, self.inputs, self.device, self.ranks, self.output = cfg, inputs, device, ranks, output
        self.share = share

    @classmethod
    def prepare(cls, cfg: DistillConfig, resume: bool = False, force: bool = False,
                progress: Progress | None = None, note: Callable[[str], None] | None = None,
                share: TeacherShare | None = None, trust_model_code: bool = False,
                survey: Callable[[FolderSummary], None] | None = None) -> "Experiment":
        """``progress``/``note``: what decoding images into the cache reports, ``survey``: a ``folder:``
        source's summary, before that (``checks.load_data``); ``share``: the teacher of a sweep, trained
        once for all its students; ``trust_model_code``: a ``--teacher-from`` run whose model.json names
        code may run it (``modelfile.load_model``)."""
        cfg.validate()
        brought = load_teacher(cfg.teacher_from, trust_model_code) if cfg.teacher_from else None
        if os.environ.get("WORLD_SIZE", "1") == "1":    # under torchrun rank 0 tells the others its verdicts (join)
            check_output(Path(cfg.out), force)
        data = load_data(cfg, progress, note, survey)
        check_data(cfg, data)
        arrays = holdout(data, cfg.test_fraction, cfg.seed)
        splits = make_folds(arrays[1], cfg.folds, cfg.test_fraction, cfg.seed, data.labels)
        check_models(cfg, data, brought)
        check_teacher_split(cfg, brought)
        check_rest(cfg, arrays[1], splits)
        transfer = load_transfer_set(cfg, data, progress, note)     # after the quick checks: it may decode a folder
        ranks, device = join(pick_device(cfg.device), cfg.backend)
        ranks.on_main(lambda: require_native(cfg.precision, device))     # bf16 asked of hardware without it
        # rank 0 alone looks at (and later writes) the run folder; the others get its verdict
        locks: list[OutputLock] = []       # rank 0's lock stays here: on_main sends the others the stage only
        stage = ranks.on_main(lambda: staging_folder(Path(cfg.out), resume, force, cfg, locks))
        output = Output(stage, resume, force, locks[0] if locks else None)
        return cls(cfg, Inputs(data, brought, arrays, splits, transfer), device, ranks, output, share)

    def run(self, reporter: Reporter | None = None) -> Document:
        if not self.ranks.is_main:
            # under torchrun the other ranks train alongside rank 0 and write nothing
            return self._train(RunLog(None, None), None)[0]
        cfg, output = self.cfg, self.output
        nothing_to_resume = output.resume and not output.stage.exists()
        with staged_dir(cfg.out, output.force, "run folder", keep_on_error=True,
                        staging=output.stage, lock=output.lock) as work:
            atomic_write_text(work / CONFIG_FILE, cfg.to_toml())
            log = RunLog(work / "train.log", reporter)
            if nothing_to_resume:       # not an error: a script may always pass --resume
                log.note(f"--resume: no interrupted run at '{output.stage}', starting from the beginning")
            summary, final = self._train(log, work / "state")
            write_run(work, cfg, self.inputs, final, summary)
            write_summary(work, summary)
            shutil.rmtree(work / "state", ignore_errors=True)
            log.line(f"done in {summary['seconds']:.1f} s")
            log.close()
        return summary

    def _train(self, log: RunLog, state: Path | None) -> tuple[Document, TrioResult]:
        """Every split's trio, then the summary; ``state`` (rank 0 only) keeps finished stages."""
        data, ranks = self.inputs.data, self.ranks
        train_x, train_y, test_x, test_y = self.inputs.arrays
        started = time.perf_counter()
        log.line(f"data {data.name}: {len(train_y)} train/CV samples, {len(test_y)} held-out test, "
                 f"{len(data.labels)} classes, input {data.input_shape}")
        transfer = self.inputs.transfer
        if transfer is not None:
            log.line(f"transfer set {transfer.source}: {len(transfer)} unlabelled images, {transfer.dropped} dropped "
                     "as labelled or held-out samples")
        if ranks.distributed:
            log.line(f"torchrun: {ranks.world_size} ranks, {ranks.backend} backend, device {self.device}")
        trio = Trio(self.cfg, data, self.inputs.brought, self.device, state, log, ranks, self.share, transfer)
        folds = [trio.run(Split(f"fold{k + 1}", k, train_x[tr], train_y[tr], train_x[va], train_y[va])).record
                 for k, (tr, va) in enumerate(self.inputs.splits)]
        final = trio.run(Split("final", len(self.inputs.splits), train_x, train_y, test_x, test_y, final=True))
        for model in final.models.values():
            model.cpu()          # the run folder holds CPU models, whatever they trained on
        summary = summarize(self.cfg, self.inputs, folds, final, {
            "seconds": time.perf_counter() - started, "world_size": ranks.world_size, "device": self.device})
        log.line("training throughput (samples/s, mean over splits): " +
                 ", ".join(f"{role} {speed:.0f}" for role, speed in summary["samples_per_second"].items()))
        return summary, final
