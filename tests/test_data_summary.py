"""What a ``folder:`` source holds, said before its images are decoded (issue 31, item 2): classes and
images per class, the images' sizes, the entries passed over and why, and the warnings about
``--image-size`` (most images upsampled) and about the decoded images' size. Real PNG folders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd.core.errors import DataError
from edgekd.train.data import DataCache, ImageOptions, load_dataset
from edgekd.train.data.summary import LARGE_BYTES, summarize_folder

from conftest import assert_user_error, run_cli_here

RNG = np.random.default_rng(0)


def png(path: Path, width: int, height: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def folder(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> Path:
    """One class folder per key, an image of each (width, height) listed."""
    for label, shapes in sizes.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i, (width, height) in enumerate(shapes):
            png(root / label / f"{i}.png", width, height)
    return root


def test_classes_sizes_and_what_is_passed_over_and_why(tmp_path):
    root = folder(tmp_path / "img", {"cat": [(20, 10), (40, 30), (20, 10)], "dog": [(20, 10)], "owl": []})
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "labels.TXT").write_text("not an image")
    (root / "dog" / "Thumbs").write_text("no suffix")
    (root / "dog" / "more").mkdir()               # not searched: folder: reads one level of class folders
    png(root / "dog" / "more" / "0.png", 20, 10)
    (root / "dog" / "dir.png").mkdir()             # a folder with an image's name is still a folder
    (root / "README.md").write_text("beside the classes")
    summary = summarize_folder(str(root), cache=DataCache(tmp_path / "cache"))
    loaded = load_dataset(f"folder:{root}", images=ImageOptions((8, 8)), cache=DataCache(tmp_path / "cache"))
    assert summary.count == 4 == len(loaded.y)        # the images loading reads, no more, no fewer
    assert summary.lines() == [
        f"data folder:{root}: 3 classes, 4 images (cat 3, dog 1, owl 0); "
        "2 sizes: widths 20–40, heights 10–30 pixels",
        "skipped 6 entries: .txt files 2, folders inside class folders (not read) 2, "
        "files beside the class folders 1, files without a suffix 1"]
    assert summary.warnings() == [] and summary.decoded_shape() is None    # several sizes: loading refuses them
    with pytest.raises(DataError, match="the images differ in size"):
        load_dataset(f"folder:{root}", cache=DataCache(tmp_path / "cache"))


def test_one_size_many_classes_and_the_own_test_split(tmp_path):
    root = tmp_path / "img"
    folder(root / "train", {f"c{k:02d}": [(8, 8)] * (k + 2) for k in range(10)})
    folder(root / "test", {"c03": [(8, 8)], "c04": [(12, 9)]})
    summary = summarize_folder(str(root), cache=DataCache(tmp_path / "cache"))
    assert summary.lines() == [
        f"data folder:{root} train: 10 classes, 65 images (2 ('c00') to 11 ('c09') per class); "
        "all 8×8 pixels (width×height)",
        f"data folder:{root} test: 2 classes, 2 images (c03 1, c04 1); 2 sizes: widths 8–12, heights 8–9 pixels"]
    assert summary.decoded_shape() == (3, 8, 8)        # the test half is decoded as the training half is


@pytest.mark.parametrize("smaller,warned", [(3, True), (2, False)])
def test_an_image_size_that_upsamples_most_images_says_so(tmp_path, smaller, warned):
    """More than half the images smaller than --image-size in a side (here: narrower, or lower)."""
    small = [(30, 40), (40, 20), (16, 16)][:smaller]
    root = folder(tmp_path / "img", {"a": small, "b": [(64, 48)] * (5 - smaller)})
    summary = summarize_folder(str(root), ImageOptions((24, 32)), DataCache(tmp_path / "cache"))
    assert summary.upsampled() == smaller
    expected = [f"--image-size 24,32 upsamples {smaller} of 5 images, smaller than 24×32 (height×width) in a side "
                f"({smaller + 1} sizes: widths 16–64, heights 16–48 pixels): upsampling adds pixels to train on, "
                "not detail"] if warned else []
    assert summary.warnings() == expected


@pytest.mark.parametrize("images,channels,warned", [(86, None, True), (85, None, False), (86, 1, False)])
def test_decoded_images_over_4_gib_say_their_size_before_any_is_decoded(tmp_path, images, channels, warned):
    """N × C × H × W bytes: the uint8 cache on disk, and the rows training copies out of it. 86 RGB images
    at 4096×4096 are 4.03 GiB, 85 are 3.98 GiB, 86 gray ones a third of it."""
    root = folder(tmp_path / "img", {"a": [(8, 8)] * (images // 2), "b": [(8, 8)] * (images - images // 2)})
    cache = DataCache(tmp_path / "cache")
    summary = summarize_folder(str(root), ImageOptions((4096, 4096), channels), cache)
    size = images * (channels or 3) * 4096 * 4096
    assert (size > LARGE_BYTES) == warned
    large = [w for w in summary.warnings() if w.startswith("the decoded images")]
    assert large == ([f"the decoded images take 4.0 GB ({images} × 3×4096×4096 bytes, uint8) in the image cache "
                      f"'{cache.folder}', and about as much memory while training: a smaller --image-size takes less"]
                     if warned else [])
    assert [p.suffix for p in cache.folder.iterdir()] == [".json"]      # the headers' sizes kept; nothing decoded


def test_gray_images_decode_to_one_channel(tmp_path):
    png(tmp_path / "img" / "a" / "0.png", 8, 8, "L")
    png(tmp_path / "img" / "b" / "0.png", 8, 8, "L")
    assert summarize_folder(str(tmp_path / "img"), cache=DataCache(tmp_path / "cache")).decoded_shape() == (1, 8, 8)


def test_the_headers_are_read_once_while_the_folder_is_unchanged(tmp_path, monkeypatch):
    root = folder(tmp_path / "img", {"a": [(8, 8), (9, 9)], "b": [(10, 10)]})
    cache = DataCache(tmp_path / "cache")
    first = summarize_folder(str(root), cache=cache).lines()
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    assert summarize_folder(str(root), cache=cache).lines() == first and opened == []
    png(root / "b" / "1.png", 30, 12)                  # the folder changed: every header read again
    assert "widths 8–30, heights 8–12" in summarize_folder(str(root), cache=cache).lines()[0] and len(opened) == 4
    kept, = cache.folder.glob("*.json")
    doc = json.loads(kept.read_text())
    doc["document"]["sizes"] = [[1, 1, 4]]             # an edited file is not believed
    kept.write_text(json.dumps(doc))
    opened.clear()
    assert "widths 8–30" in summarize_folder(str(root), cache=cache).lines()[0] and len(opened) == 4


def test_a_header_that_cannot_be_read_is_refused_before_anything_is_said(tmp_path):
    root = folder(tmp_path / "img", {"a": [(8, 8)], "b": [(8, 8)]})
    (root / "b" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        summarize_folder(str(root), cache=DataCache(tmp_path / "cache"))


@pytest.mark.parametrize("cached", [True, False], ids=["warm-cache", "cold-cache"])
def test_a_refusal_after_the_data_is_checked_is_still_one_line(tmp_path, cached):
    """The summary waits for the decoding to start, or, with the images already in the cache, for every
    input to pass; an --out that is refused is refused before either: its one error line alone."""
    root = folder(tmp_path / "img", {"a": [(8, 8)] * 6, "b": [(8, 8)] * 6})
    if cached:
        load_dataset(f"folder:{root}", images=ImageOptions((6, 6)), cache=DataCache(tmp_path / "cache"))
    (tmp_path / "out").write_text("a file of the user's")
    result = run_cli_here("distill", "--data", f"folder:{root}", "--image-size", "6", "--folds", "2", "--cache-dir",
                          tmp_path / "cache", "--out", tmp_path / "out")
    assert_user_error(result, f"'{tmp_path / 'out'}'")
