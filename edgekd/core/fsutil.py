"""Atomic file and folder output. Torch-free.

Every output goes to a temporary sibling first and is renamed into place only when
complete, so an error or Ctrl-C never leaves a half-written file or folder behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from edgekd.core.errors import EdgeKDError
from edgekd.core.schema.cv import CONFIG_FILE, CONFIG_HEADER, CV_FILE
from edgekd.core.schema.export import EXPORT_REPORT
from edgekd.core.schema.manifest import MANIFEST
from edgekd.core.schema.sweep import PLAN_FILE, PLAN_HEAD


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


#: What makes an existing folder one of edgekd's own, per kind of folder output: the documents its
#: command always writes (name -> the bytes the file starts with). Documents, not a marker file, so
#: that a folder written by an earlier version counts too. --force replaces such a folder or an
#: empty one, never a folder of the user's that happens to be where the output goes.
OWN_FOLDERS: dict[str, dict[str, bytes]] = {
    "run folder": {CONFIG_FILE: CONFIG_HEADER.encode(), CV_FILE: b"{"},
    "interrupted run": {CONFIG_FILE: CONFIG_HEADER.encode()},    # a run's .NAME.partial: its config first
    "bundle folder": {MANIFEST: b"{", EXPORT_REPORT: b"{"},
    "sweep folder": {PLAN_FILE: PLAN_HEAD.encode()},     # a plan.txt alone is too common a name
}


def refuse_existing(path: Path, force: bool, what: str) -> None:
    """An existing output is never overwritten without --force, and a folder output (``what`` in
    OWN_FOLDERS) even with it only when it is edgekd's; a path that cannot be an output is refused
    here too, since every command asks this before writing."""
    check_output_path(Path(path), what)
    if not path.exists():
        return
    if not force:
        raise EdgeKDError(f"{what} '{path}' already exists", hint="pass --force to overwrite it")
    if what in OWN_FOLDERS:
        refuse_foreign_folder(path, what)


def refuse_foreign_folder(path: Path, what: str) -> None:
    """What --force may replace: an edgekd ``what`` (its OWN_FOLDERS documents) or an empty folder;
    never a file, a link, or a folder holding someone else's files."""
    if path.is_symlink() or not path.is_dir():
        kind = "a link" if path.is_symlink() else "a file"
        raise EdgeKDError(f"{what} '{path}' is {kind}, not a folder",
                          hint=f"--force replaces a folder, never {kind}: choose another path")
    documents = OWN_FOLDERS[what]
    try:
        with os.scandir(path) as entries:
            if next(entries, None) is None:
                return
        if all(_starts_with(path / name, head) for name, head in documents.items()):
            return
    except OSError as exc:
        raise EdgeKDError(f"cannot look into {what} '{path}': {exc.strerror}") from None
    raise EdgeKDError(f"'{path}' is not an edgekd {what} (it has no {' and '.join(documents)}): "
                      "--force will not replace it",
                      hint=f"--force replaces only a {what} edgekd wrote, or an empty folder: choose another "
                           f"path, or move '{path}' away yourself")


def _starts_with(path: Path, head: bytes) -> bool:
    """A plain file (not a link, not a FIFO that would block the open) that starts with ``head``."""
    if not path.is_file() or path.is_symlink():
        return False
    with open(path, "rb") as f:
        return f.read(len(head)) == head


#: bytes a staging or lock name adds to an output's name (".NAME.tmp-PID", ".NAME.XXXXXXXX.tmp")
NAME_ROOM = 16


def check_output_path(path: Path, what: str) -> None:
    """The output must have a name of its own (``.``, ``..`` or ``/`` would replace the folder
    it is in), a name the file system can hold (UTF-8, not too long, with room for its staging
    name), and its nearest existing parent must be a folder we can really create things in."""
    if path.name in ("", ".", ".."):
        raise EdgeKDError(f"{what} '{path}' has no name of its own: it would replace the folder it names",
                          hint=f"name the {what} itself, e.g. '{path / 'NAME'}'")
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:      # a byte that is not UTF-8 on the command line; it cannot go into our JSON/TOML
        shown = str(path).encode("utf-8", "backslashreplace").decode("utf-8")
        raise EdgeKDError(f"cannot create {what} '{shown}': the name is not valid UTF-8",
                          hint="use a name made of UTF-8 characters") from None
    _check_name_lengths(path, what)
    parent = path.parent
    try:
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        usable = parent.is_dir()
    except OSError as exc:          # a folder on the way we may not look into
        raise EdgeKDError(f"cannot create {what} '{path}': {exc.strerror} ('{exc.filename}')") from None
    if not usable:
        raise EdgeKDError(f"cannot create {what} '{path}': '{parent}' is not a folder")
    try:        # os.access says yes to root on /proc or /sys: only creating something there tells
        os.rmdir(tempfile.mkdtemp(prefix=".edgekd-probe-", dir=parent))
    except OSError as exc:
        raise EdgeKDError(f"cannot create {what} '{path}': cannot write in '{parent}' ({exc.strerror})",
                          hint=f"choose a {what} on a writable disk") from None


def _check_name_lengths(path: Path, what: str) -> None:
    absolute = os.fsencode(os.path.abspath(path))
    name_max, path_max = 255, 4096          # Linux's, where pathconf cannot tell
    with contextlib.suppress(OSError, ValueError, AttributeError):
        name_max, path_max = os.pathconf("/", "PC_NAME_MAX"), os.pathconf("/", "PC_PATH_MAX")
    parts = absolute.split(b"/")
    if max(map(len, parts[:-1])) > name_max or len(parts[-1]) > name_max - NAME_ROOM \
            or len(absolute) > path_max - NAME_ROOM:
        raise EdgeKDError(f"cannot create {what}: the name '{path}' is too long",
                          hint=f"a file name may have up to {name_max - NAME_ROOM} bytes here, "
                               f"a whole path {path_max - NAME_ROOM}")


class OutputLock:
    """An OS lock on ``.NAME.lock`` beside an output, held while the output is written.

    A second edgekd process writing the same output is refused, naming the holder's PID; the
    OS releases the lock when the holder dies, however it dies, so a lock is never stale.
    Folders made for the lock file are removed on release when they stay empty.
    """

    def __init__(self, final: str | os.PathLike, what: str):
        final = Path(final)
        self.path = final.with_name(f".{final.name}.lock")
        self.created = [p for p in reversed(final.parents) if not p.exists()][::-1]    # deepest first
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fd: int | None = _take_lock(self.path, f"{what} '{final}'")
        except BaseException:
            self._remove_created()
            raise

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)        # while still held: see _take_lock for one that opened it meanwhile
        os.close(self.fd)
        self.fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self.created:
            with contextlib.suppress(OSError):      # not empty: it holds an output (or someone's file)
                folder.rmdir()


def _take_lock(path: Path, what: str) -> int:
    """The open, locked lock file, holding our PID."""
    while True:
        # O_NOFOLLOW: a symlink planted in a shared folder must not make us truncate its target
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            raise EdgeKDError(f"cannot lock {what}: '{path}' cannot be opened ({exc.strerror})",
                              hint="remove it if it is a symlink or not a file of edgekd's") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise EdgeKDError(f"{what} is being written by another edgekd process (PID {holder})",
                              hint="wait for it to finish (or stop it), or write to another --out") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)        # its holder removed the file as it released it: lock the one at the path now


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, force: bool, what: str, keep_on_error: bool = False,
               staging: str | os.PathLike | None = None, lock: OutputLock | None = None) -> Iterator[Path]:
    """Yield a staging folder that replaces ``final`` only when the block succeeds.

    ``keep_on_error`` keeps the staging folder for ``--resume`` (distill's epoch
    checkpoints live there); otherwise it is removed on any error. The output is locked
    from here to the final rename (``lock``: one the caller took earlier; released here).
    ``what``: a kind of OWN_FOLDERS, which says what --force may replace.
    """
    assert what in OWN_FOLDERS, what
    final = Path(final)
    if lock is None:
        check_output_path(final, what)      # before the lock file is made beside it
        lock = OutputLock(final, what)
    try:
        refuse_existing(final, force, what)     # under the lock: another process may have just finished it
        stage = Path(staging) if staging else final.with_name(f".{final.name}.tmp-{os.getpid()}")
        stage.mkdir(parents=True, exist_ok=True)
        try:
            yield stage
            refuse_existing(final, force, what)     # made meanwhile by something that took no lock
        except BaseException:
            if not keep_on_error:
                shutil.rmtree(stage, ignore_errors=True)
            raise
        _replace(stage, final)
    finally:
        lock.release()


def _replace(stage: Path, final: Path) -> None:
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, final)
