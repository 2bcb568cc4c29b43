"""``edgekd sweep``: several students against one teacher, each distilled, exported and benched,
then the Pareto fronts and the pick (:mod:`.front`), written as ``sweep.json`` (:mod:`.outputs`).

The sweep folder::

    OUT/
      sweep.json  sweep.md  sweep.png
      plan.txt                what a resumed sweep must match (students, distill and bench settings)
      teacher/SPLIT/          while it runs: each split's teacher, trained once (by the first student's run)
      students/N-SPEC/        each student's run folder (as ``edgekd distill`` writes it)
        bundle/               its bundle (as ``edgekd export`` writes it) and bundle/bench.json
        steps.json            how long each of its steps took

Every student sees the same data, split, seeds and settings; the teacher's outputs on the student
samples (the same for every student of a split) are computed once per split (``TeacherShare``).
``sweep.json`` is written last (:mod:`.folder`); ``--resume`` continues an interrupted sweep,
skipping every finished step. Every student is distilled first, then each is exported and benched:
under torchrun every rank takes part in the training and stops there, and rank 0 alone exports,
benches and writes, so no rank waits in a collective while a board is busy.
"""
from __future__ import annotations

import posixpath
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from edgekd.device.bench.options import BenchOptions
from edgekd.core.bundle import BENCH_REPORT, MANIFEST
from edgekd.train.config import DistillConfig
from edgekd.core.errors import ConfigError
from edgekd.core.fsutil import OutputLock, atomic_write_json
from edgekd.core.gap import cv_gap_closed
from edgekd.core.schema.bench import BenchDoc
from edgekd.core.schema.sweep import SweepDoc
from edgekd.core.schema.cv import CV_FILE, read as read_cv
from edgekd.core.schema.jsonfile import read_json
from edgekd.app.sweep.folder import open_folder
from edgekd.app.sweep.plan import Plan, SweepOptions, bench_fields, check_pick, check_students, checked_budget, folder_name, parse_students
from edgekd.app.sweep.outputs import sweep_document, write_sweep
from edgekd.core.schema.bench import read as read_bench
from edgekd.device.bench.gate.checks import repeat_or_default
from edgekd.device.bench.remote import Session
from edgekd.device.bench.run import run_bench
from edgekd.exporters import export_run
from edgekd.train.modelfile import SPEC, read_spec

Reporter = Callable[..., None]


def run_sweep(cfg: DistillConfig, students, out, options: SweepOptions | None = None, *,
              reporter: Reporter | None = None, **fields) -> SweepDoc | dict[str, Any]:
    """Distill, export and bench every student of ``students`` (specs, or one text split at ';')
    with ``cfg``'s teacher, data and settings; returns (and writes to ``out``) the sweep.json
    document. ``options`` (or its ``fields`` as keywords, over it): :class:`SweepOptions`.
    ``reporter(event, **info)`` hears distill's events and the sweep's own (``student``, ``step``)."""
    options = replace(options, **fields) if options else SweepOptions(**fields)
    return Sweep.prepare(cfg, students, out, options).run(reporter)


class Sweep:
    """``prepare`` checks every input (students, budget, data, models, the board, the output folder)
    before anything trains; ``run`` does the work."""

    def __init__(self, plan: Plan, out: Path, budget: dict | None, pick: str, remote, ranks, lock, trust: bool):
        from edgekd.train.distill.trio import TeacherShare

        self.plan, self.out, self.budget, self.pick, self.remote = plan, out, budget, pick, remote
        self.ranks, self.lock, self.trust = ranks, lock, trust
        self.share = TeacherShare(out / "teacher" if ranks.is_main else None)

    @classmethod
    def prepare(cls, cfg: DistillConfig, students, out, options: SweepOptions | None = None) -> "Sweep":
        from edgekd.train.distill.checks import device as pick_device
        from edgekd.train.distill.distributed import join

        options = options or SweepOptions()
        specs = parse_students(students)
        check_pick(options.pick)
        cfg.validate()
        budget = checked_budget(options.budget)
        bench, repeat, remote = options.bench or BenchOptions(), options.repeat, options.remote
        bench = replace(bench, repeat=repeat_or_default(repeat) if budget else repeat or bench.repeat)
        check_students(cfg, specs, options.trust_model_code)
        plan = Plan(tuple(specs), cfg, bench_fields(bench), f"{remote.host}:{remote.folder}" if remote else None)
        ranks, _ = join(pick_device(cfg.device), cfg.backend)
        if remote is not None:      # the board answers, has edgekd and a folder to write: before any training
            ranks.on_main(lambda: Session.open(remote).close())
        out, locks = Path(out).absolute(), list[OutputLock]()
        ranks.on_main(lambda: open_folder(out, options.resume, options.force, plan.record(), locks))
        return cls(plan, out, budget, options.pick, remote, ranks, locks[0] if locks else None,
                   options.trust_model_code)

    def run(self, reporter: Reporter | None = None) -> SweepDoc | dict[str, Any]:     # {}: not the main rank
        report = reporter or (lambda *a, **k: None)
        started, total = time.perf_counter(), len(self.plan.students)
        try:
            for i, spec in enumerate(self.plan.students):      # every rank, in step
                if self.ranks.is_main:
                    report("student", index=i, total=total, spec=spec, phase="distill")
                self._distill(folder_name(i, spec), spec, report)
            if not self.ranks.is_main:          # under torchrun: the training was theirs, the rest rank 0's
                return {}
            rows: list[dict] = []
            benches: dict[str, BenchDoc] = {}
            for i, spec in enumerate(self.plan.students):
                report("student", index=i, total=total, spec=spec, phase="export and bench")
                row, benches[row["name"]] = self._measure(folder_name(i, spec), spec, report)
                rows.append(row)
            doc = sweep_document(self.plan, rows, benches, self.budget, self.pick, time.perf_counter() - started)
            shutil.rmtree(self.out / "teacher", ignore_errors=True)     # every student that needed it is done
            write_sweep(self.out, doc)
            return doc
        finally:
            if self.lock is not None:
                self.lock.release()

    def _distill(self, name: str, spec: str, report: Reporter) -> None:
        """The student's distill run, its teacher shared; a finished run is kept (rank 0 decides, for all)."""
        from edgekd.train.distill import Experiment
        from edgekd.train.distill.checks import staging_path

        run_dir = self.out / "students" / name
        if self.ranks.on_main(lambda: (run_dir / CV_FILE).is_file()):
            if self.ranks.is_main:
                self._step(name, "distill", None, report)
            return
        started = time.perf_counter()
        cfg = self.plan.student_config(spec, str(run_dir))
        Experiment.prepare(cfg, resume=staging_path(run_dir).exists(), share=self.share,
                           trust_model_code=self.trust).run(report)
        if self.ranks.is_main:
            self._step(name, "distill", time.perf_counter() - started, report)

    def _step(self, name: str, step: str, seconds: float | None, report: Reporter) -> None:
        """A finished step, timed in ``steps.json`` (None: finished by an earlier, resumed run)."""
        if seconds is not None:
            path = self.out / "students" / name / "steps.json"
            steps = read_json(path, "steps.json", ConfigError) if path.is_file() else {}
            atomic_write_json(path, {**steps, step: round(seconds, 3)})
        report("step", name=name, step=step, seconds=seconds)

    def _measure(self, name: str, spec: str, report: Reporter) -> tuple[dict, BenchDoc]:
        """Export and bench one student (each skipped when done); its row of sweep.json and bench.json."""
        run_dir = self.out / "students" / name
        bundle = run_dir / "bundle"
        trusted = self._trusted(run_dir)
        for step, file, action in (
                ("export", bundle / MANIFEST, lambda: export_run(run_dir, out=bundle, trust_model_code=trusted)),
                ("bench", bundle / BENCH_REPORT,
                 lambda: run_bench(bundle, BenchOptions(**self.plan.bench), remote=self._board(name)))):
            if file.is_file():
                self._step(name, step, None, report)
                continue
            started = time.perf_counter()
            action()
            self._step(name, step, time.perf_counter() - started, report)
        return _row(name, spec, run_dir), read_bench(bundle / BENCH_REPORT)

    def _trusted(self, run_dir: Path) -> bool:
        """Whether export may rebuild the run's models from code their model.json names: the specs
        this sweep was given are the user's own, but a resumed sweep folder (one someone sent) may
        name others since; those run only with --trust-model-code."""
        from edgekd.train.models.user import absolute_spec, parse_user_spec

        given = {absolute_spec(spec) for spec in (*self.plan.students, self.plan.config.teacher)}
        archs = [read_spec(run_dir / role)["arch"] for role in ("student", "teacher")
                 if (run_dir / role / SPEC).is_file()]
        return self.trust or all(arch in given for arch in archs if parse_user_spec(arch) is not None)

    def _board(self, name: str):
        """The board's folder for this student: DIR/N-SPEC (its bundle in DIR/N-SPEC/bundle)."""
        if self.remote is None:
            return None
        return replace(self.remote, folder=posixpath.join(self.remote.folder, name))


def _row(name: str, spec: str, run_dir: Path) -> dict:
    cv = read_cv(run_dir)
    steps_file = run_dir / "steps.json"      # absent only when a sweep stopped right after a distill
    steps = read_json(steps_file, "steps.json", ConfigError) if steps_file.is_file() else {}
    return {"name": name, "spec": spec, "run": f"students/{name}", "bundle": f"students/{name}/bundle",
            "parameters": cv["models"]["student"]["parameters"], "macs": cv["models"]["student"]["macs"],
            "cv": {**{role: cv["cv"][role] for role in ("teacher", "student", "simple", "distillation_gain")},
                   "gap_closed": cv_gap_closed(cv["folds"])},     # a resumed sweep's older cv.json may lack it
            "test": cv["test"], "seconds": steps}
