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

from .errors import EdgeKDError

#: the most the compressed members of one archive may inflate to. An npz edgekd reads is a split
#: of a classifier's data (Fashion-MNIST's 60,000 training images: 47 MB as uint8, 188 MB as
#: float32); stored members (``np.savez``) are not bounded by this: they are as large as the file.
MAX_INFLATED_BYTES = 2 * 1024**3

_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def check_npz(path: Path, error: type[EdgeKDError]) -> None:
    """Refuse the archive at ``path`` with ``error`` unless every member declares a plain array no
    larger than its zip entry, and the compressed ones inflate to ``MAX_INFLATED_BYTES`` at most.
    Not a zip (an ``.npy``, a damaged file): left to ``np.load``'s own error."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            inflated = sum(m.file_size for m in members if m.compress_type != zipfile.ZIP_STORED)
            if inflated > MAX_INFLATED_BYTES:
                raise error(f"'{path}' would inflate to {inflated / 1024**3:.1f} GiB, more than edgekd reads "
                            f"from a compressed npz ({MAX_INFLATED_BYTES // 1024**3} GiB)",
                            hint="save the arrays uncompressed with np.savez (edgekd maps those, not inflates)")
            for member in members:
                _check_member(archive, member, path, error)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise error(f"cannot read '{path}' as npz: {exc}",
                    hint="write it with np.savez(path, x=..., y=...) from numeric arrays") from None


def _check_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path, error) -> None:
    """One member's ``.npy`` header against its zip entry, read without inflating its data."""
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version not in _HEADER_READERS:
            raise ValueError(f".npy format version {version} of '{member.filename}' is not supported")
        shape, _, dtype = _HEADER_READERS[version](f)
    if dtype.hasobject:
        raise error(f"'{path}': array '{member.filename}' holds Python objects, which edgekd does not unpickle",
                    hint="save numeric arrays only")
    declared = math.prod(shape) * dtype.itemsize
    if declared > member.file_size:
        raise error(f"'{path}': array '{member.filename}' declares {declared:,} bytes but its entry holds "
                    f"{member.file_size:,}", hint="the file is damaged or crafted; save it again with np.savez")
