"""The sweep folder: locked while a sweep writes it, ``sweep.json`` written last.

A sweep is not staged and renamed like a run folder: every student's run folder, bundle and
bench.json record their own paths (config.toml's ``out``, export.json, bench.json), and those must
be where the files stay. Each of them is written whole by its own command's staging; the sweep's
``sweep.json`` comes last, so a folder without it is an interrupted sweep, which ``--resume``
continues (with the same plan) and ``--force`` starts over.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from edgekd.core.errors import ConfigError
from edgekd.core.fsutil import OutputLock, atomic_write_text, check_output_path, refuse_foreign_folder
from edgekd.core.schema.sweep import PLAN_FILE

DONE_FILE = "sweep.json"


def open_folder(out: Path, resume: bool, force: bool, record: str, locks: list[OutputLock]) -> None:
    """Lock ``out`` (the lock goes into ``locks``), refuse or clear what is there, write the plan."""
    check_output_path(out, "sweep folder")
    locks.append(OutputLock(out, "sweep folder"))
    try:
        _refuse_or_clear(out, resume, force, record)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / PLAN_FILE, record)
    except BaseException:
        locks.pop().release()
        raise


def _refuse_or_clear(out: Path, resume: bool, force: bool, record: str) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"sweep folder '{out}' is a file, not a folder", hint="choose another --out")
    saved = (out / PLAN_FILE).read_text() if (out / PLAN_FILE).is_file() else None
    if resume and saved is not None:
        if saved != record:
            then, now = next((a, b) for a, b in zip(saved.splitlines() + [""], record.splitlines() + [""]) if a != b)
            raise ConfigError(f"the sweep at '{out}' used a different configuration: '{then}' then, '{now}' now",
                              hint="resume with the same students and options (with --budget, --repeat defaults "
                                   "to 3: give the first run's), or pass --force to start over")
        return
    if not force:
        if saved is None or (out / DONE_FILE).is_file():
            raise ConfigError(f"sweep folder '{out}' already exists", hint="pass --force to overwrite it"
                              + (", or --resume to judge it again (another --budget or --pick)" if saved else ""))
        raise ConfigError(f"an interrupted sweep exists at '{out}' (it has no {DONE_FILE})",
                          hint="pass --resume to continue it, or --force to start over")
    refuse_foreign_folder(out, "sweep folder")
    shutil.rmtree(out)
