"""The decoded-image cache: one N×C×H×W array per source, image size and channels, decoded once
and memory-mapped after (a second load opens no image). Torch-free.

An entry is a folder ``<cache>/<name>/`` holding ``x.npy`` (read with ``np.lib.format.open_memmap``)
and ``meta.json`` (the key, the source's digest, the array's shape and dtype, and a CRC-32 of
``x.npy``). It is written under a temporary name and renamed whole, so a reader sees a finished
entry or none. An entry whose record does not match — another digest of the source (it changed),
a file cut short, an edited header, other bytes than it was written with — is rebuilt, never
read. Beside the entries, ``<name>.json`` files keep small documents about a source (a folder's image
sizes, for its summary), by the same rules. Deleting the cache folder, or any entry in it, is always safe.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from edgekd.core.errors import DataError
from edgekd.core.fsutil import atomic_write_json

FORMAT = 1
CHUNK = 1 << 20         # bytes read at a time for the CRC: the page cache, not the process, holds the file

STALE_SECONDS = 24 * 3600     # a staging folder this old is no build in progress: an interrupted one

Progress = Callable[[int, int], None]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgekd``, else ``~/.cache/edgekd``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "edgekd"


def path_digest(path: Path) -> str:
    """sha256 over the relative name, size and mtime of ``path`` (a file) or every file under it."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return stat_digest(files, path if path.is_dir() else path.parent)


def stat_digest(files: list[Path], root: Path) -> str:
    """sha256 over the name (relative to ``root``), size and mtime of each of ``files``, in order."""
    digest = hashlib.sha256()
    for file in files:
        info = file.stat()
        digest.update(f"{file.relative_to(root).as_posix()}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _file_crc(path: Path) -> int:
    crc, buffer = 0, bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while read := f.readinto(buffer):
            crc = zlib.crc32(view[:read], crc)
    return crc


class DataCache:
    """The cache folder (default: ``default_cache_dir()``); ``progress(done, total)`` hears how far a
    build is (``done`` 0 as its decoding starts), ``note(text)`` why an entry was rebuilt."""

    def __init__(self, folder: str | Path | None = None, progress: Progress | None = None,
                 note: Callable[[str], None] | None = None):
        self.folder = Path(folder).expanduser() if folder is not None else default_cache_dir()
        self.progress = progress or (lambda done, total: None)
        self.note = note or (lambda text: None)

    def entry(self, key: dict) -> Path:
        """Where ``key``'s entry lives: a readable stem and a hash of the key."""
        text = json.dumps(key, sort_keys=True)
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(str(key["source"])).name)[:40]
        return self.folder / f"{stem}-{hashlib.sha256(text.encode()).hexdigest()[:20]}"

    def load(self, key: dict, digest: str, plan: Callable[[], tuple[tuple[int, ...], np.dtype]],
             fill: Callable[[np.ndarray, Progress], None]) -> np.ndarray:
        """The array of ``key`` (source, size, channels) made from the source whose digest is
        ``digest``, mapped read-only; built first when missing or not to be trusted: ``plan()``
        gives its shape and dtype, ``fill(out, progress)`` writes every row of ``out``."""
        key = json.loads(json.dumps(key))      # as meta.json gives it back: tuples are lists there
        entry = self.entry(key)
        record = {"format": FORMAT, "key": key, "source_digest": digest}
        if entry.exists():
            x, reason = _open(entry, record)
            if x is not None:
                return x
            self.note(f"image cache '{entry}' {reason}: rebuilt")
        return self._build(entry, record, plan, fill)

    def document(self, key: dict, digest: str, make: Callable[[], dict]) -> dict:
        """A small JSON document about the source whose digest is ``digest`` (a folder's image sizes, read
        from every header): kept as ``<entry>.json`` and read back while the source is unchanged and the
        file is as it was written, else made again. A cache that cannot be written costs only the making."""
        key = json.loads(json.dumps(key))
        path = self.folder / f"{self.entry(key).name}.json"
        record = {"format": FORMAT, "key": key, "source_digest": digest}
        try:
            kept = json.loads(path.read_text())
            if {k: kept.get(k) for k in record} == record and kept.get("sha256") == _json_digest(kept.get("document")):
                return kept["document"]
        except (OSError, ValueError, AttributeError):      # none yet, or not one this cache wrote
            pass
        document = make()
        try:
            atomic_write_json(path, {**record, "document": document, "sha256": _json_digest(document)})
        except OSError:          # an unwritable cache folder: the entries' own build says so
            pass
        return document

    def _build(self, entry: Path, record: dict, plan, fill) -> np.ndarray:
        shape, dtype = plan()
        stage = self._stage(entry)
        try:
            x = np.lib.format.open_memmap(stage / "x.npy", mode="w+", dtype=dtype, shape=shape)
            _reserve(stage / "x.npy")
            self.progress(0, shape[0])       # the work starts: what could be refused cheaply was
            fill(x, self.progress)
            x.flush()
            del x
            record = {**record, "shape": list(shape), "dtype": np.dtype(dtype).str, "crc32": _file_crc(stage / "x.npy")}
            (stage / "meta.json").write_text(json.dumps(record, indent=1))
            shutil.rmtree(entry, ignore_errors=True)       # the entry not to be trusted, if any
            try:
                os.rename(stage, entry)
            except OSError:          # another run built the same entry meanwhile: its copy is as good
                shutil.rmtree(stage, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(stage, ignore_errors=True)
            raise _unwritable(self.folder, exc) from None
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        written, reason = _open(entry, record)
        if written is None:
            raise DataError(f"the image cache '{entry}' just written {reason}",
                            hint="another edgekd may be writing the same cache: run again, or pass --cache-dir DIR")
        return written

    def _stage(self, entry: Path) -> Path:
        """A new staging folder for ``entry``; those an interrupted build left (a day old) go first."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for left in self.folder.glob(f".{entry.name}.*.partial"):
                if time.time() - left.stat().st_mtime > STALE_SECONDS:
                    shutil.rmtree(left, ignore_errors=True)
            return Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".partial", dir=self.folder))
        except OSError as exc:
            raise _unwritable(self.folder, exc) from None


def _json_digest(document) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _unwritable(folder: Path, exc: OSError) -> DataError:
    return DataError(f"cannot write the image cache in '{folder}': {exc.strerror or exc}",
                     hint="pass --cache-dir DIR (cache_dir in a config file) naming a writable folder with room "
                          "for the decoded images (N×C×H×W bytes)")


def _reserve(path: Path) -> None:
    """Allocate the file's blocks now: a full disk is then an OSError here, not a SIGBUS while writing
    through the memory map."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):     # a file system that cannot: write as is
                raise


def _open(entry: Path, record: dict) -> tuple[np.ndarray | None, str]:
    """(the mapped array, "") when ``entry`` is whole and made as ``record`` says, else (None, why not)."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("key") != record["key"]:
            return None, "has no record of this source, or another one"
        if meta.get("source_digest") != record["source_digest"]:
            return None, "was made before the source changed"
        if "shape" in record and (meta.get("shape"), meta.get("dtype")) != (record["shape"], record["dtype"]):
            return None, "has another shape than was written"
        path = entry / "x.npy"
        shape, dtype, offset = _header(path)
        if list(shape) != meta["shape"] or dtype.str != meta["dtype"]:
            return None, "has a header that does not match its record"
        if path.stat().st_size != offset + int(np.prod(shape)) * dtype.itemsize:
            return None, "has another size than its header says (cut short, or grown)"
        if _file_crc(path) != meta["crc32"]:
            return None, "does not match its recorded digest"
        return np.memmap(path, dtype, mode="r", offset=offset, shape=tuple(shape)), ""
    except (OSError, ValueError, KeyError, TypeError, SyntaxError) as exc:    # json's errors are ValueErrors
        return None, f"cannot be read ({type(exc).__name__}: {exc})"


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of the .npy file at ``path``, read without mapping it."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version != (1, 0):          # what open_memmap writes for a small header
            raise ValueError(f".npy format version {version}, not 1.0")
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        if fortran or dtype.hasobject:
            raise ValueError("not a C-ordered numeric array")
        return shape, dtype, f.tell()
