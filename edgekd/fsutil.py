"""Atomic file and folder output. Torch-free.

Every output goes to a temporary sibling first and is renamed into place only when
complete, so an error or Ctrl-C never leaves a half-written file or folder behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import EdgeKDError


def _read_umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


_UMASK = _read_umask()  # read once at import: os.umask is process-wide and not thread-safe


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def refuse_existing(path: Path, force: bool, what: str) -> None:
    """An existing output is never overwritten without --force; a path that cannot be an
    output is refused here too, since every command asks this before writing."""
    check_output_path(Path(path), what)
    if path.exists() and not force:
        raise EdgeKDError(f"{what} '{path}' already exists", hint="pass --force to overwrite it")


def check_output_path(path: Path, what: str) -> None:
    """The output must have a name of its own (``.``, ``..`` or ``/`` would replace the folder
    it is in), and its nearest existing parent must be a folder we can write into."""
    if path.name in ("", ".", ".."):
        raise EdgeKDError(f"{what} '{path}' has no name of its own: it would replace the folder it names",
                          hint=f"name the {what} itself, e.g. '{path / 'NAME'}'")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise EdgeKDError(f"cannot create {what} '{path}': '{parent}' is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EdgeKDError(f"cannot create {what} '{path}': no permission to write in '{parent}'")


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, force: bool, what: str, keep_on_error: bool = False,
               staging: str | os.PathLike | None = None) -> Iterator[Path]:
    """Yield a staging folder that replaces ``final`` only when the block succeeds.

    ``keep_on_error`` keeps the staging folder for ``--resume`` (distill's epoch
    checkpoints live there); otherwise it is removed on any error.
    """
    final = Path(final)
    refuse_existing(final, force, what)
    if final.exists() and not final.is_dir():     # --force replaces a folder of ours, never a file
        raise EdgeKDError(f"{what} '{final}' is a file, not a folder",
                          hint="--force replaces a folder, never a file: choose another path")
    stage = Path(staging) if staging else final.with_name(f".{final.name}.tmp-{os.getpid()}")
    stage.mkdir(parents=True, exist_ok=True)
    try:
        yield stage
    except BaseException:
        if not keep_on_error:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, final)
