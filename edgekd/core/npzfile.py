"""Opening an ``.npz`` someone else wrote: never unpickle, never inflate more than it may.

A compressed member of a few kB can declare gigabytes, and numpy allocates what a member's
``.npy`` header declares before it inflates a byte: a 2.5 GB eval bomb ended in a MemoryError
traceback. So every member's header is read first (a few hundred bytes each) and the archive
is refused when a header declares more than its zip entry holds, or when its compressed members
would inflate past ``MAX_INFLATED_BYTES``. Torch-free: the device side reads bundles with it.
"""
from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from edgekd.core.errors import EdgeKDError

#: the most the compressed members of one archive may inflate to. An npz edgekd reads is a split
#: of a classifier's data (Fashion-MNIST's 60,000 training images: 47 MB as uint8, 188 MB as
#: float32); stored members (``np.savez``) are not bounded by this: they are as large as the file.
MAX_INFLATED_BYTES = 2 * 1024**3

#: how numpy reads each ``.npy`` header version, without reading the data
HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def check_npz(path: Path, error: type[EdgeKDError]) -> None:
    """Refuse the file at ``path`` with ``error`` unless what ``np.load`` will read from it is bounded:
    as an archive, every member declares a plain array no larger than its entry, a stored entry is
    as large as the bytes it occupies, and the compressed ones inflate to ``MAX_INFLATED_BYTES`` at
    most; as a single ``.npy``, its array fits in the file. Decided by the first bytes, as np.load
    decides (a ``.npy`` with a zip directory appended is read as the ``.npy`` it starts with)."""
    try:
        with open(path, "rb") as f:
            start = f.read(len(np.lib.format.MAGIC_PREFIX))
            if start == np.lib.format.MAGIC_PREFIX:
                f.seek(0)
                _check_array(f, path.stat().st_size, "the array", path, error)
            elif start.startswith((b"PK\x03\x04", b"PK\x05\x06")):
                _check_archive(path, error)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise error(f"cannot read '{path}' as npz: {exc}",
                    hint="write it with np.savez(path, x=..., y=...) from numeric arrays") from None


def _check_archive(path: Path, error) -> None:
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        inflated = sum(m.file_size for m in members if m.compress_type != zipfile.ZIP_STORED)
        if inflated > MAX_INFLATED_BYTES:
            raise error(f"'{path}' would inflate to {inflated / 1024**3:.1f} GiB, more than edgekd reads "
                        f"from a compressed npz ({MAX_INFLATED_BYTES // 1024**3} GiB)",
                        hint="save the arrays uncompressed with np.savez (edgekd maps those, not inflates)")
        on_disk = path.stat().st_size
        for member in members:
            stored = member.compress_type == zipfile.ZIP_STORED
            if stored and (member.file_size != member.compress_size
                           or member.header_offset + member.compress_size > on_disk):
                raise error(f"'{path}': entry '{member.filename}' claims {member.file_size:,} bytes the file "
                            "does not hold", hint="the file is damaged or crafted; save it again with np.savez")
            with archive.open(member) as f:
                _check_array(f, member.file_size, f"array '{member.filename}'", path, error)


def _check_array(f, size: int, what: str, path: Path, error) -> None:
    """The ``.npy`` header at ``f`` (read without the data behind it) against the ``size`` bytes it has."""
    version = np.lib.format.read_magic(f)
    if version not in HEADER_READERS:
        raise ValueError(f".npy format version {version} of {what} is not supported")
    shape, _, dtype = HEADER_READERS[version](f)
    if dtype.hasobject:
        raise error(f"'{path}': {what} holds Python objects, which edgekd does not unpickle",
                    hint="save numeric arrays only")
    declared = math.prod(shape) * dtype.itemsize
    if declared > size:
        raise error(f"'{path}': {what} declares {declared:,} bytes but holds {size:,}",
                    hint="the file is damaged or crafted; save it again with np.savez")


def read_arrays(path: Path, names: tuple[str, ...], error: type[EdgeKDError], hint: str) -> dict[str, np.ndarray]:
    """The arrays ``names`` of the .npz at ``path``, checked by :func:`check_npz` first and never
    unpickled; a single .npy, a missing array or an unreadable file is one ``error`` (``hint``: how to
    write it)."""
    check_npz(path, error)
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise error(f"'{path}' is a single .npy array, not an .npz archive", hint=hint)
        with data:
            missing = [name for name in names if name not in data]
            if missing:
                raise error(f"'{path}' has no array{'s' if len(missing) > 1 else ''} {' and '.join(map(repr, missing))}",
                            hint=f"{hint}; it holds: {', '.join(data.files) or 'nothing'}")
            return {name: data[name] for name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise error(f"cannot read '{path}': {exc}") from None
