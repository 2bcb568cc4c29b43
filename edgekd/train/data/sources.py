"""The built-in data sources. Each turns one kind of file into a ``Dataset``."""
from __future__ import annotations

import csv
import gzip
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from edgekd.core.errors import DataError, closest
from edgekd.core.npzfile import HEADER_READERS, check_npz
from edgekd.train.data import Dataset, as_images_or_table, check_pair, encode_labels, register_source


def existing_path(arg: str | None, source: str, kind: str, option: str = "--data") -> Path:
    """The ``kind`` ("file" or "folder") that ``option source:arg`` names, which must exist."""
    if not arg:
        raise DataError(f"data source '{source}' needs a path", hint=f"example: {option} {source}:PATH")
    path = Path(arg).expanduser()
    exists = path.is_dir() if kind == "folder" else path.is_file()
    if not exists:
        raise DataError(f"{kind} '{path}' not found ({option} {source}:…)",
                        hint=f"check the path; relative paths start from the current folder, '{Path.cwd()}'")
    return path


#: the most a gzipped IDX file may inflate to (in memory): 4 GiB, 70 times Fashion-MNIST; a larger data
#: set is stored uncompressed, which is memory-mapped instead
MAX_INFLATED_IDX = 4 << 30


@register_source("digits")
def load_digits(arg: str | None = None) -> Dataset:
    """scikit-learn's bundled 8×8 digits: 1,797 images, 10 classes, values 0..16; no download."""
    from sklearn.datasets import load_digits as sklearn_digits

    if arg:
        raise DataError(f"data source 'digits' takes no argument, got 'digits:{arg}'", hint="use --data digits")

    bunch = sklearn_digits()
    x = bunch.images.astype(np.float32)[:, None]
    return Dataset(x, bunch.target.astype(np.int64), [str(c) for c in bunch.target_names], "digits")


@register_source("npz")
def load_npz(arg: str | None) -> Dataset:
    """Arrays ``x`` and ``y`` (and optionally ``x_test``/``y_test``, ``labels``); never unpickles."""
    path = existing_path(arg, "npz", "file")
    arrays = _read_npz(path)
    x = as_images_or_table(arrays["x"], str(path))
    check_pair(x, arrays["y"], str(path))
    names = [str(n) for n in arrays["labels"]] if "labels" in arrays else None
    y, labels = encode_labels(arrays["y"], str(path), names)
    return Dataset(x, y, labels, f"npz:{path}", _npz_test_split(arrays, x, path))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every member of the npz at ``path``; a damaged archive or an object array is a DataError
    (np.load raises EOFError on an empty file, which click would turn into "Aborted!")."""
    if path.stat().st_size == 0:
        raise DataError(f"'{path}' is empty (0 bytes), not an npz archive", hint="save it again with np.savez")
    check_npz(path, DataError)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise DataError(f"'{path}' has no array {' or '.join(repr(m) for m in missing)}",
                                hint=f"it holds: {', '.join(data.files) or 'nothing'}; "
                                     "save with np.savez(path, x=..., y=...)")
            return {k: mapped_member(data, path, k) if k in ("x", "x_test") else data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"cannot read '{path}' as npz: {exc}",
                        hint="write it with np.savez(path, x=..., y=...) from numeric arrays") from None


def _npz_test_split(arrays: dict[str, np.ndarray], x: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The npz's own test split: both arrays or neither, with samples shaped like ``x``'s."""
    given = [k for k in ("x_test", "y_test") if k in arrays]
    if not given:
        return None
    if len(given) == 1:
        other = "y_test" if given[0] == "x_test" else "x_test"
        raise DataError(f"'{path}' has {given[0]} but no {other}", hint="save both, or neither")
    x_test = as_images_or_table(arrays["x_test"], f"{path} (x_test)")
    if x_test.shape[1:] != x.shape[1:]:
        raise DataError(f"in '{path}', x_test has samples of shape {x_test.shape[1:]}, x has {x.shape[1:]}",
                        hint="the test split must have the same sample shape as the training data")
    check_pair(x_test, arrays["y_test"], f"{path} (test split)")
    return x_test, _index_like(arrays["y_test"], arrays["y"], str(path))


def mapped_member(data, path: Path, name: str) -> np.ndarray:
    """A member of the open npz ``data`` memory-mapped when stored uncompressed (``np.savez``),
    else read (``np.savez_compressed``). Object arrays are refused: loading never unpickles."""
    try:
        info = data.zip.getinfo(f"{name}.npy")       # the archive np.load already opened
        if info.compress_type != zipfile.ZIP_STORED:
            return data[name]
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)           # the member's local header: its name and extra field precede the data
            f.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little"))
            version = np.lib.format.read_magic(f)
            read_header = HEADER_READERS.get(version)
            if read_header is None:
                raise ValueError(f".npy format version {version} is not supported")
            shape, fortran, dtype = read_header(f)
            if dtype.hasobject:
                raise ValueError("it holds Python objects, which edgekd does not unpickle")
            return np.memmap(path, dtype, mode="r", offset=f.tell(), shape=shape, order="F" if fortran else "C")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read array '{name}' of '{path}': {exc}") from None


def _index_like(y_test: np.ndarray, y_train: np.ndarray, where: str) -> np.ndarray:
    """Map a test split's raw labels onto the training split's class indices."""
    classes = np.unique(np.asarray(y_train))
    y_test = np.asarray(y_test)
    unknown = np.setdiff1d(np.unique(y_test), classes)
    if unknown.size:
        raise DataError(f"the test split of {where} has classes the training split lacks: {unknown[:5].tolist()}")
    return np.searchsorted(classes, y_test).astype(np.int64)


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (MNIST format): memory-mapped when uncompressed, else read (gzip), in either case
    exactly the bytes its header promises (a gzip member inflating past them is refused, not read)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            zero, dtype_code, ndim = struct.unpack(">HBB", f.read(4))
            if zero != 0 or dtype_code != 0x08:
                raise ValueError("not an unsigned-byte IDX file")
            shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
            offset, size = 4 + 4 * ndim, math.prod(shape)
            if opener is gzip.open:
                if size > MAX_INFLATED_IDX:
                    raise ValueError(f"its header promises {size:,} bytes, over the {MAX_INFLATED_IDX:,} edgekd "
                                     "inflates from a .gz (store a larger one uncompressed: it is memory-mapped)")
                data = f.read(size + 1)
                if len(data) != size:
                    raise ValueError(f"its header promises {size:,} bytes of data, the file inflates to another size")
                return np.frombuffer(data, np.uint8).reshape(shape)
        if path.stat().st_size != offset + size:
            raise ValueError(f"its header promises {shape} bytes of data, the file has another size")
        return np.memmap(path, np.uint8, mode="r", offset=offset, shape=shape)
    except (OSError, ValueError, struct.error, EOFError) as exc:
        raise DataError(f"'{path}' is not a readable IDX file: {exc}",
                        hint="IDX files are MNIST's format: a header of unsigned-byte dimensions, then the bytes") from None


def _find_idx(folder: Path, prefix: str, kind: str) -> Path | None:
    for pattern in (f"{prefix}-{kind}-idx*-ubyte*", f"{prefix}*{kind}*"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


@register_source("idx")
def load_idx(arg: str | None) -> Dataset:
    """MNIST-format ``train-images-idx3-ubyte[.gz]`` + labels; ``t10k-*`` beside them is the test split."""
    folder = existing_path(arg, "idx", "folder")
    images, labels = _find_idx(folder, "train", "images"), _find_idx(folder, "train", "labels")
    if images is None or labels is None:
        raise DataError(f"no train-images/train-labels IDX files in '{folder}'",
                        hint="expected train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]")
    x, y_raw = as_images_or_table(read_idx(images), str(images)), read_idx(labels)
    check_pair(x, y_raw, str(folder))
    y, names = encode_labels(y_raw.astype(np.int64), str(labels))
    test = None
    test_images, test_labels = _find_idx(folder, "t10k", "images"), _find_idx(folder, "t10k", "labels")
    if test_images and test_labels:
        x_test, y_test = as_images_or_table(read_idx(test_images), str(test_images)), read_idx(test_labels)
        check_pair(x_test, y_test, f"{folder} (t10k)")
        test = (x_test, _index_like(y_test.astype(np.int64), y_raw, str(folder)))
    return Dataset(x, y, names, f"idx:{folder}", test)


@register_source("csv")
def load_csv(arg: str | None, label_column: str | None = None) -> Dataset:
    """A table with a header row; ``--label-column`` (default: the last column) holds the class."""
    path = existing_path(arg, "csv", "file")
    try:
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark, not part of the first name
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if row]     # blank lines (a trailing one, say) hold no sample
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read '{path}' as CSV: {exc}", hint="save it as UTF-8 CSV") from None
    if len(rows) < 2:
        raise DataError(f"'{path}' needs a header row and at least one data row")
    header, body = rows[0], rows[1:]
    label_at = _label_index(header, label_column, path)
    if any(len(r) != len(header) for r in body):
        raise DataError(f"'{path}' has rows with a different number of columns than its header")
    try:
        table = np.array([[float(v) for i, v in enumerate(r) if i != label_at] for r in body], np.float32)
    except ValueError as exc:
        raise DataError(f"'{path}' has a non-numeric feature value: {exc}") from None
    raw_labels = np.array([r[label_at] for r in body])
    names, y = np.unique(raw_labels, return_inverse=True)
    return Dataset(as_images_or_table(table, str(path)), y.astype(np.int64), [str(n) for n in names], f"csv:{path}")


def _label_index(header: list[str], label_column: str | None, path: Path) -> int:
    """Where the label column is in a header that names each column once and has features beside it."""
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise DataError(f"'{path}' names column {', '.join(repr(n) for n in twice[:5])} twice in its header",
                        hint="give every column its own name")
    column = label_column if label_column is not None else header[-1]
    if column not in header:
        guess = closest(column, header)
        raise DataError(f"label column '{column}' not in '{path}'",
                        hint=(f"did you mean '{guess}'? " if guess else "") + f"columns: {', '.join(header)}")
    if len(header) == 1:
        raise DataError(f"'{path}' has no feature columns, only the label column '{column}'",
                        hint="a CSV needs at least one feature column beside the label")
    return header.index(column)
