"""A hostile ``folder:`` source: links out of the folder, and image bombs PIL's pixel limit lets
through. Each is one DataError, refused before the file (links) or its pixels (bombs) are read,
with nothing left in the image cache. Torch-free: the data tier alone."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd.train.data import DataCache, ImageOptions, load_dataset
from edgekd.core.errors import DataError

REPO = Path(__file__).resolve().parents[1]

#: the paths ``open`` was called with while a test records (an audit hook cannot be removed: it
#: stays for the session, idle while this is None)
OPENED: list[str] | None = None


def _record_opens(event: str, args: tuple) -> None:
    if OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_record_opens)


def png(width: int, height: int) -> bytes:
    """A valid grayscale PNG of one colour: a few kB on disk, ``width × height`` pixels decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    packer = zlib.compressobj(9)
    rows = b"".join(packer.compress(b"\0" * (width + 1)) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def folder(root: Path, side: int = 8) -> Path:
    """Two classes of three real ``side``×``side`` images."""
    for label in ("a", "b"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            Image.fromarray(np.full((side, side), 40 * i, np.uint8)).save(root / label / f"{i}.png")
    return root


def _outside_image(work: Path) -> Path:
    """A real, decodable PNG outside the image folder: what old code read into the run."""
    (work / "elsewhere").mkdir()
    Image.fromarray(np.full((8, 8), 123, np.uint8)).save(work / "elsewhere" / "private.png")
    return work / "elsewhere" / "private.png"


def _file_link(work: Path) -> tuple[Path, Path]:
    target = _outside_image(work)
    (work / "img" / "a" / "link.png").symlink_to(target)
    return work / "img" / "a" / "link.png", target


def _class_link(work: Path) -> tuple[Path, Path]:
    target = _outside_image(work).parent
    (work / "img" / "c").symlink_to(target)
    return work / "img" / "c", target / "private.png"


def _passwd_link(work: Path) -> tuple[Path, Path]:
    (work / "img" / "b" / "x.png").symlink_to("/etc/passwd")
    return work / "img" / "b" / "x.png", Path("/etc/passwd")


def _split_link(work: Path) -> tuple[Path, Path]:
    """``train/`` + ``test/`` with the training folder a link out."""
    folder(work / "elsewhere" / "train")
    (work / "img" / "test").mkdir()
    for name in ("a", "b"):
        os.replace(work / "img" / name, work / "img" / "test" / name)
    (work / "img" / "train").symlink_to(work / "elsewhere" / "train")
    return work / "img" / "train", work / "elsewhere" / "train" / "a" / "0.png"


@pytest.mark.parametrize("make", [_file_link, _class_link, _passwd_link, _split_link],
                         ids=["image", "class-folder", "etc-passwd", "train-folder"])
def test_a_link_out_of_the_folder_is_refused_before_it_is_opened(tmp_path, monkeypatch, make):
    global OPENED
    folder(tmp_path / "img")
    link, target = make(tmp_path)
    monkeypatch.chdir(tmp_path)            # the folder as a user gives it: a relative path
    OPENED = []
    try:
        with pytest.raises(DataError) as info:
            load_dataset("folder:img", images=ImageOptions((8, 8)), cache=DataCache(tmp_path / "cache"))
        control = tmp_path / "control"
        control.write_text("")                 # the hook sees an open when there is one
        opened = OPENED
    finally:
        OPENED = None
    given = str(link.relative_to(tmp_path))
    assert f"'{given}' is a link to" in info.value.message and "outside the folder" in info.value.message
    assert str(control.resolve()) in opened and str(target.resolve()) not in opened, opened
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_links_that_stay_inside_the_folder_are_followed(tmp_path):
    """A duplicate image or a class folder linked from within the folder reads nothing outside it."""
    root = folder(tmp_path / "img")
    (root / "a" / "dup.png").symlink_to(Path("..") / "b" / "0.png")
    (root / "c").symlink_to("a")
    data = load_dataset(f"folder:{root}", cache=DataCache(tmp_path / "cache"))
    assert data.labels == ["a", "b", "c"] and data.x.shape == (11, 1, 8, 8)
    assert np.array_equal(data.x[3], data.x[4])           # a/dup.png is b/0.png


#: decoded by a fresh interpreter, one folder after the other: how each ended, what it left in the
#: cache, and the process's peak resident memory (Linux's /proc)
PROBE = """
import json, sys
from pathlib import Path
from edgekd.train.data import DataCache, ImageOptions, load_dataset
from edgekd.core.errors import DataError
results = []
for spec, size, cache in json.loads(sys.argv[1]):
    try:
        load_dataset(spec, images=ImageOptions(size and tuple(size)), cache=DataCache(cache))
        outcome = "loaded"
    except DataError as exc:
        outcome = f"{exc.message}\\nhint: {exc.hint}"
    except BaseException as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    left = sorted(p.name for p in Path(cache).iterdir()) if Path(cache).exists() else []
    results.append([outcome, left])
# VmHWM, not getrusage's ru_maxrss: that one keeps the high-water mark of the (forked) parent across exec
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"results": results, "peak_mb": peak_kb / 1024}))
"""


def test_image_bombs_are_refused_from_the_header(tmp_path):
    """A 19 kB 20,000,000×1 PNG (a MemoryError), a 2 kB 2,000,000×1 one resized to 8×8 (+400 MB), a
    9000×9000 first image that set the size of the folder (gigabytes of cache) and a folder of them:
    each one DataError, the peak memory that of the interpreter, and no staging folder left."""
    wide, long, huge, big = (folder(tmp_path / name) for name in ("wide", "long", "huge", "big"))
    (wide / "a" / "wide.png").write_bytes(png(20_000_000, 1))
    (long / "b" / "long.png").write_bytes(png(2_000_000, 1))
    (huge / "a" / "0.png").write_bytes(png(9000, 9000))
    for path in big.rglob("*.png"):
        path.write_bytes((huge / "a" / "0.png").read_bytes())
    cases = [(f"folder:{wide}", None), (f"folder:{long}", [8, 8]), (f"folder:{huge}", None), (f"folder:{big}", None)]
    jobs = [[spec, size, str(tmp_path / f"cache{i}")] for i, (spec, size) in enumerate(cases)]
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (wide_error, wide_left), (long_error, long_left), (huge_error, huge_left), (big_error, big_left) = report["results"]
    assert "wide.png' is 20,000,000×1 pixels" in wide_error and "16:1" in wide_error
    assert "long.png' is 2,000,000×1 pixels" in long_error
    assert "the images differ in size" in huge_error and "9000×9000" in huge_error and "--image-size" in huge_error
    assert "at most 4096" in big_error and "--image-size" in big_error
    assert wide_left == long_left == huge_left == big_left == [], report
    assert report["peak_mb"] < 250, report          # the interpreter, numpy and PIL: about 35 MB


def test_a_photo_larger_than_the_model_input_is_still_read(tmp_path):
    """The caps are on bombs, not on photos: a 12-megapixel-class image resized to 16×16 loads."""
    root = folder(tmp_path / "img")
    Image.fromarray(np.full((3000, 4000), 7, np.uint8)).save(root / "b" / "photo.png")
    data = load_dataset(f"folder:{root}", images=ImageOptions((16, 16)), cache=DataCache(tmp_path / "cache"))
    assert data.x.shape == (7, 1, 16, 16) and int(data.x[-1].max()) == 7
