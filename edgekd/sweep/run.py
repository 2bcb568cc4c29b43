"""``edgekd sweep``: several students against one teacher, each distilled, exported and benched,
then the Pareto fronts and the pick (:mod:`.front`), written as ``sweep.json`` (:mod:`.report`).

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
Like distill, the sweep is written into ``.OUT.partial`` and renamed when it is complete;
``--resume`` continues it, skipping every finished step. Under torchrun every rank trains; rank 0
alone exports, benches and writes.
"""
from __future__ import annotations

import posixpath
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..bench.options import BenchOptions
from ..config import DistillConfig
from ..errors import ConfigError, unknown_name
from ..fsutil import atomic_write_json, atomic_write_text, staged_dir
from ..schema.jsonfile import read_json
from .plan import PICKS, Plan, bench_fields, folder_name, parse_students

Reporter = Callable[..., None]
PLAN_FILE = "plan.txt"


def run_sweep(cfg: DistillConfig, students, out, *, bench: BenchOptions | None = None, budget=None,
              pick: str = "fastest", remote=None, resume: bool = False, force: bool = False,
              reporter: Reporter | None = None) -> dict:
    """Distill, export and bench every student of ``students`` (specs, or one text split at ';')
    with ``cfg``'s teacher, data and settings; returns (and writes to ``out``) the sweep.json
    document. ``budget``: a budget TOML (path or loaded) whose checks each candidate file must pass
    to be picked; ``pick``: fastest or smallest; ``remote``: a :class:`~edgekd.bench.remote.Remote`
    to bench on. ``reporter(event, **info)`` hears distill's events and the sweep's own
    (``student``, ``step``)."""
    return Sweep.prepare(cfg, students, out, bench, budget, pick, remote, resume, force).run(reporter)


class Sweep:
    """``prepare`` checks every input (students, budget, data, models, the output folder) before
    anything trains; ``run`` does the work."""

    def __init__(self, plan: Plan, out: Path, budget: dict | None, pick: str, remote, ranks, stage: Path, lock,
                 force: bool = False):
        from ..distill.trio import TeacherShare

        self.plan, self.out, self.budget, self.pick, self.remote = plan, out, budget, pick, remote
        self.ranks, self.stage, self.lock, self.force = ranks, stage, lock, force
        self.share = TeacherShare(stage / "teacher" if ranks.is_main else None)

    @classmethod
    def prepare(cls, cfg: DistillConfig, students, out, bench: BenchOptions | None = None, budget=None,
                pick: str = "fastest", remote=None, resume: bool = False, force: bool = False) -> "Sweep":
        from ..distill.checks import device as pick_device, staging_folder
        from ..distill.distributed import join

        if pick not in PICKS:
            raise unknown_name("pick", pick, PICKS, ConfigError)
        specs = parse_students(students)
        cfg.validate()
        budget = _checked_budget(budget)
        _check_students(cfg, specs)
        plan = Plan(tuple(specs), cfg, bench_fields(bench or BenchOptions()), f"{remote.host}:{remote.folder}" if remote else None)
        ranks, _ = join(pick_device(cfg.device), cfg.backend)
        if remote is not None:      # the board answers, has edgekd and a folder to write: before any training
            from ..bench.remote import Session
            ranks.on_main(lambda: Session.open(remote).close())
        locks: list = []
        out = Path(out)
        stage = ranks.on_main(lambda: staging_folder(out, resume, force, cfg, locks, (PLAN_FILE, plan.record()),
                                                      "sweep"))
        return cls(plan, out, budget, pick, remote, ranks, stage, locks[0] if locks else None, force)

    def run(self, reporter: Reporter | None = None) -> dict:
        from .report import sweep_document, write_sweep

        report = reporter or (lambda *a, **k: None)
        if not self.ranks.is_main:          # under torchrun: train alongside rank 0, write nothing
            for i, spec in enumerate(self.plan.students):
                self._distill(self.stage / "students" / folder_name(i, spec), spec, report)
            return {}
        started = time.perf_counter()
        with staged_dir(self.out, self.force, "sweep folder", keep_on_error=True, staging=self.stage,
                        lock=self.lock) as work:
            atomic_write_text(work / PLAN_FILE, self.plan.record())
            rows, benches = [], {}
            for i, spec in enumerate(self.plan.students):
                report("student", index=i, total=len(self.plan.students), spec=spec)
                row, benches[row["name"]] = self._student(work, i, spec, report)
                rows.append(row)
            doc = sweep_document(self.plan, rows, benches, self.budget, self.pick, time.perf_counter() - started)
            write_sweep(work, doc)
            shutil.rmtree(work / "teacher", ignore_errors=True)     # every student that needed it is done
        return doc

    def _student(self, work: Path, index: int, spec: str, report: Reporter) -> tuple[dict, dict]:
        """One student's three steps, each skipped when a resumed sweep finished it."""
        from ..bench import run_bench
        from ..exporters import export_run
        from ..schema.bench import read as read_bench

        name = folder_name(index, spec)
        run_dir = work / "students" / name
        bundle = run_dir / "bundle"
        steps_file = run_dir / "steps.json"
        steps = read_json(steps_file, "steps.json", ConfigError) if steps_file.is_file() else {}
        for step, done, action in (
                ("distill", lambda: (run_dir / "cv.json").is_file(), lambda: self._distill(run_dir, spec, report)),
                # the spec is the user's own, given to this command: no --trust-model-code to ask for
                ("export", lambda: (bundle / "manifest.json").is_file(),
                 lambda: export_run(run_dir, out=bundle, trust_model_code=True)),
                ("bench", lambda: (bundle / "bench.json").is_file(),
                 lambda: run_bench(bundle, BenchOptions(**self.plan.bench), remote=self._board(name)))):
            if done():
                report("step", name=name, step=step, seconds=None)
                continue
            started = time.perf_counter()
            action()
            steps[step] = round(time.perf_counter() - started, 3)
            atomic_write_json(steps_file, steps)
            report("step", name=name, step=step, seconds=steps[step])
        cv = read_json(run_dir / "cv.json", "cv.json", ConfigError)
        row = {"name": name, "spec": spec, "run": f"students/{name}", "bundle": f"students/{name}/bundle",
               "parameters": cv["models"]["student"]["parameters"], "macs": cv["models"]["student"]["macs"],
               "cv": {role: cv["cv"][role] for role in ("teacher", "student", "simple", "distillation_gain")},
               "test": cv["test"], "seconds": steps}
        return row, read_bench(bundle / "bench.json")

    def _board(self, name: str):
        """The board's folder for this student: DIR/N-SPEC (its bundle in DIR/N-SPEC/bundle)."""
        if self.remote is None:
            return None
        return replace(self.remote, folder=posixpath.join(self.remote.folder, name))

    def _distill(self, run_dir: Path, spec: str, report: Reporter) -> None:
        """The student's distill run, its teacher shared; a finished run is kept (every rank agrees)."""
        from ..distill import Experiment

        if self.ranks.on_main(lambda: (run_dir / "cv.json").is_file()):
            return
        partial = run_dir.with_name(f".{run_dir.name}.partial")
        cfg = self.plan.student_config(spec, str(run_dir))
        Experiment.prepare(cfg, resume=partial.exists(), share=self.share).run(report)


def _checked_budget(budget) -> dict | None:
    """The budget, loaded and checked against the files every bundle of the sweep will have."""
    from ..bench.gate import load_budget, require_models
    from ..exporters.run import default_plan

    if budget is None:
        return None
    budget = load_budget(budget) if not isinstance(budget, dict) else budget
    files = [{"file": fmt.filename(role), "role": role} for role, fmt in default_plan(["student", "teacher"])]
    require_models(budget, files)
    return budget


def _check_students(cfg: DistillConfig, specs: list[str]) -> None:
    """Every student built for the data's shape now, not after the students before it have trained."""
    from ..distill.checks import check_models, load_data
    from ..distill.teachers import load_teacher

    brought = load_teacher(cfg.teacher_from) if cfg.teacher_from else None
    data = load_data(cfg)
    for spec in specs:
        check_models(replace(cfg, student=spec), data, brought)
