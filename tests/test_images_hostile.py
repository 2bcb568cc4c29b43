"""A hostile ``folder:`` source: links out of the folder. Each is one DataError, refused before the
file is opened, with nothing left in the image cache. Torch-free: the data tier alone."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd.data import DataCache, ImageOptions, load_dataset
from edgekd.errors import DataError

#: the paths ``open`` was called with while a test records (an audit hook cannot be removed: it
#: stays for the session, idle while this is None)
OPENED: list[str] | None = None


def _record_opens(event: str, args: tuple) -> None:
    if OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.path.realpath(os.fsdecode(args[0])))


sys.addaudithook(_record_opens)


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
