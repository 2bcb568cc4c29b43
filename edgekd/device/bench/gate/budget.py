"""The budget file: one table per role, per model file and ``[baseline]``, validated against KEYS
when it is read, and matched to the models of a bench before anything is measured."""
from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any, Mapping

from edgekd.core.errors import ConfigError, closest
from edgekd.device.runtimes import SUFFIXES
from edgekd.core.schema import BENCH_ROLES
from edgekd.core.schema.tomlfile import parse_toml
from edgekd.device.bench.gate.keys import BASELINE, BY_NAME, KEYS, Key

MODEL_SUFFIXES = tuple(SUFFIXES)      # a table named like a model file: one per runtime suffix
FILE_TABLES = " or ".join(f'"FILE{suffix}"' for suffix in MODEL_SUFFIXES)


def load_budget(path, target=None) -> dict:
    """Read and validate a budget file; every mistake is one ConfigError naming the file. ``target``:
    the bundle or model file benched against it, which the hint of a missing file proposes it from."""
    path = Path(path)
    try:
        doc = parse_toml(path.read_bytes(), f"'{path}'", "budget", ConfigError)
    except FileNotFoundError:
        # the bench's own target where it is there (a sweep has none yet, a mistyped one is not one)
        source = shlex.quote(str(target)) if target is not None and Path(target).exists() else "BUNDLE"
        hint = f"propose one with: edgekd init-budget {source} --out {shlex.quote(str(path))}"
        raise ConfigError(f"budget file '{path}' not found", hint=hint) from None
    return validate_budget(doc, str(path))


def validate_budget(doc: dict, where: str = "budget") -> dict:
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: '{section}' must be inside a table such as [student]",
                              hint=f"tables: [student], [teacher], [{FILE_TABLES}], [baseline]")
        kind = _section_kind(section, where)
        for name, value in table.items():
            if isinstance(value, dict):     # [student.int8.tflite] unquoted is three nested tables
                raise ConfigError(f"{where}: [{section}.{name}] is not a table edgekd knows",
                                  hint="a file name with dots needs quotes: [\"student.int8.tflite\"]")
            _check_value(_key_for(section, kind, name, where), section, value, where)
    return doc


def _section_kind(section: str, where: str) -> str:
    if section == BASELINE:
        return BASELINE
    if section in BENCH_ROLES or section.endswith(MODEL_SUFFIXES):
        return "role"
    guess = closest(section, (*BENCH_ROLES, BASELINE))
    raise ConfigError(f"{where}: unknown role [{section}]",
                      hint=(f"did you mean [{guess}]? " if guess else "") + "tables: " + ", ".join(
                          f"[{r}]" for r in BENCH_ROLES) + f", [{FILE_TABLES}], [baseline]")


def _key_for(section: str, kind: str, name: str, where: str) -> Key:
    key = BY_NAME.get(name)
    if key is not None and key.section == kind:
        if key.vs_teacher and section == "teacher":
            raise ConfigError(f"{where}: '{name}' compares a model with the teacher; it has no meaning in [teacher]")
        return key
    if key is not None:
        raise ConfigError(f"{where}: '{name}' belongs in " + ("[baseline]" if key.section == BASELINE
                                                              else "a role or file table") + f", not in [{section}]")
    known = [k.name for k in KEYS if k.section == kind]
    guess = closest(name, known)
    raise ConfigError(f"{where}: unknown key '{name}' in [{section}]",
                      hint=(f"did you mean '{guess}'? " if guess else "") + "known: " + ", ".join(known))


def _check_value(key: Key, section: str, value, where: str) -> None:
    what = "a whole number" if key.kind is int else "a number"
    ok = not isinstance(value, bool) and isinstance(value, int if key.kind is int else (int, float))
    if not ok:
        raise ConfigError(f"{where}: [{section}] {key.name} must be {what} ({key.unit}), "
                          f"got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: [{section}] {key.name} must be a finite number ≥ 0, got {value}")
    if key.positive and value == 0:
        raise ConfigError(f"{where}: [{section}] {key.name} must be > 0: a limit of 0 {key.unit} can never pass")
    if value > key.high:
        raise ConfigError(f"{where}: [{section}] {key.name} must be at most {key.high:g} ({key.unit}), got "
                          f"{value}: " + ("it could never pass" if key.direction == "min" else "it checks nothing"))


def require_models(budget: dict, models: list[dict], baseline: Mapping[str, Any] | None = None) -> None:
    """Checked before measuring: a file table must name a model the bench measures, and the budget
    or the baseline must hold something to check for at least one of them."""
    files = [m["file"] for m in models]
    for section in budget:
        if section.endswith(MODEL_SUFFIXES) and section not in files:
            guess = closest(section, files)
            raise ConfigError(f"the budget has a table [\"{section}\"] but the bundle has no such model",
                              hint=(f"did you mean \"{guess}\"? " if guess else "") + "models: " + ", ".join(files))
    for m in models:
        against_teacher = [k.name for k in KEYS if k.vs_teacher and k.name in budget.get(m["file"], {})]
        if m["role"] == "teacher" and against_teacher:
            raise ConfigError(f"'{against_teacher[0]}' compares a model with the teacher, "
                              f"and '{m['file']}' is a teacher")
    in_baseline = {b["file"] for b in baseline["models"]} if baseline else set()
    if not any(limits_for(budget, m) or m["file"] in in_baseline for m in models):
        raise ConfigError(*_nothing_to_check(budget, models, baseline))


def _nothing_to_check(budget: dict, models: list[dict], baseline: Mapping[str, Any] | None) -> tuple[str, str]:
    here = ", ".join(f"{m['file']} ({m['role']})" for m in models)
    if baseline is not None:
        return ("no model of this bench is in the baseline and the budget sets no limit for them: "
                "the gate would check nothing", f"models here: {here}")
    if BASELINE in budget:
        return ("the budget's [baseline] tolerances need --baseline, and no other table sets a limit for "
                "these models: the gate would check nothing",
                "add --baseline previous-bench.json, or limits in [student], [teacher] or [\"FILE\"]")
    return "the budget sets no limit for any model of this bench: the gate would check nothing", f"models: {here}"


def limits_for(budget: dict, m: dict) -> dict:
    """The model's role table, then its file table over it."""
    return {**budget.get(m["role"], {}), **budget.get(m["file"], {})}


