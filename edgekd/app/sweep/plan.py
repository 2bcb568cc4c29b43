"""What a sweep runs: its students (checked, named) and the record that a resumed sweep must match."""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace

from edgekd.train.config import DistillConfig
from edgekd.core.errors import ConfigError, unknown_name
from edgekd.core.schema.sweep import PLAN_HEAD
from edgekd.train.options import SEPARATOR, split_specs
from edgekd.app.sweep.front import PICK_AXIS
from edgekd.device.bench.gate import BASELINE, load_budget, require_models
from edgekd.device.bench.gate.budget import limits_for
from edgekd.device.bench.options import BenchOptions
from edgekd.device.bench.remote import Remote
from edgekd.exporters.run import ExportOptions


def parse_students(students: str | list[str]) -> list[str]:
    """``"cnn:width=8;mlp:hidden=32"`` (or a list) → the specs, each built-in spec checked against
    the zoo; none, or one given twice (also with its options in another order or a default spelled
    out), is a ConfigError."""
    specs = split_specs(students) if isinstance(students, str) else [spec.strip() for spec in students if spec.strip()]
    if not specs:
        example = SEPARATOR.join(["cnn:width=8,depth=2", "cnn:width=16,depth=2", "mlp:hidden=32"])
        raise ConfigError("a sweep needs at least one student, and --students names none",
                          hint=f"e.g. --students '{example}'")
    seen: dict[str, str] = {}
    for spec in specs:
        key = canonical(spec)
        if key in seen:
            same = "" if seen[key] == spec else f" (as '{seen[key]}')"
            raise ConfigError(f"student '{spec}' is given twice{same}: the sweep would train it twice",
                              hint="give each student once")
        seen[key] = spec
    return specs


def canonical(spec: str) -> str:
    """One spelling per model: a zoo spec with every option, defaults included, in name order; your
    own factory (``MODULE:FACTORY``) as written, its file made absolute."""
    from edgekd.train.models import MODELS, parse_spec, read_options
    from edgekd.train.models.user import absolute_spec, parse_user_spec

    if parse_user_spec(spec) is not None:
        return absolute_spec(spec)
    name, given = parse_spec(spec)
    options = {key: option.default for key, option in read_options(MODELS.get(name)).items()}
    options.update(given)
    return f"{name}:" + ",".join(f"{key}={options[key]}" for key in sorted(options))


def folder_name(index: int, spec: str) -> str:
    """``2-cnn-width-16-depth-2``: the student's folder under ``students/`` (its number keeps two
    specs that differ only in punctuation apart, and the order of --students)."""
    tail = spec.rsplit("/", 1)[-1]            # FILE.py:FACTORY: no folders in the name
    return f"{index + 1}-" + (re.sub(r"[^A-Za-z0-9.]+", "-", tail).strip("-.")[:60] or "student")


@dataclass(frozen=True)
class Plan:
    """Everything that decides the sweep's numbers; a resumed sweep must have the same (plan.txt
    in the sweep folder). The budget and the pick are not in it: they are applied at the end, so
    a resumed (or re-judged) sweep may change them."""
    students: tuple[str, ...]
    config: DistillConfig           # the students' common distill configuration (``student``, ``out`` unused)
    bench: dict                     # BenchOptions' fields
    remote: str | None              # [user@]host:DIR of --remote

    def record(self) -> str:
        cfg = replace(self.config, student="", out="")
        bench = "".join(f"bench.{key} = {value!r}\n" for key, value in sorted(self.bench.items()))
        return f"{PLAN_HEAD}{list(self.students)!r}\nremote = {self.remote!r}\n{bench}" + cfg.to_toml()

    def student_config(self, spec: str, out: str) -> DistillConfig:
        return replace(self.config, student=spec, out=out)


@dataclass(frozen=True)
class SweepOptions:
    """How to sweep, beside the distill configuration and the students (as BenchOptions and
    ExportOptions are for their commands). ``bench``: how to measure; ``repeat``: over its own, and
    by default 3 with a budget (as ``bench --budget``); ``budget``: a budget TOML (path or loaded)
    whose checks each candidate file must pass to be picked; ``pick``: fastest or smallest;
    ``remote``: the board to bench on; ``resume``/``force``: continue or replace the sweep folder;
    ``trust_model_code``: a ``--teacher-from`` run whose model.json names code may run it."""
    bench: BenchOptions | None = None
    repeat: int | None = None
    budget: str | os.PathLike | dict | None = None
    pick: str = "fastest"
    remote: Remote | None = None
    resume: bool = False
    force: bool = False
    trust_model_code: bool = False


def bench_fields(options) -> dict:
    """A BenchOptions as plain values (``data`` as text)."""
    fields = asdict(options)
    fields["data"] = None if fields["data"] is None else str(fields["data"])
    return fields


def check_pick(pick: str) -> str:
    if pick not in PICK_AXIS:
        raise unknown_name("pick", pick, PICK_AXIS, ConfigError)
    return pick


def checked_budget(budget) -> dict | None:
    """The budget (a path, or loaded), checked against the files every bundle of the sweep will have:
    it must set a limit for a student file, or nothing could be picked."""
    if budget is None:
        return None
    budget = load_budget(budget) if not isinstance(budget, dict) else budget
    if BASELINE in budget:
        raise ConfigError("the budget has a [baseline] table, and a sweep compares its students with no baseline",
                          hint="leave [baseline] out of the sweep's budget (it is for bench --baseline)")
    files = [{"file": fmt.filename(role), "role": role} for role, fmt in ExportOptions().plan()[1]]
    require_models(budget, files)
    if not any(limits_for(budget, m) for m in files if m["role"] == "student"):
        raise ConfigError("the budget sets no limit for a student file: the sweep could pick none",
                          hint="add limits in [student] or [\"student.int8.tflite\"] (docs/guides/ci.md, 'The budget file')")
    return budget


def check_students(cfg: DistillConfig, specs: list[str], trust_model_code: bool = False) -> None:
    """Every student built for the data's shape now, not after the students before it have trained."""
    from edgekd.train.distill.checks import check_models, load_data
    from edgekd.train.distill.teachers import load_teacher

    brought = load_teacher(cfg.teacher_from, trust_model_code) if cfg.teacher_from else None
    data = load_data(cfg)
    for spec in specs:
        check_models(replace(cfg, student=spec), data, brought)
