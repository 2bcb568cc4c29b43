"""Images at the size and colour the model wants, through the memory-mapped uint8 cache
(--image-size, --channels, --normalize, --cache-dir); torch-free except the one run + export."""
from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd.train.config import load_config
from edgekd.train.data import DataCache, ImageOptions, load_dataset
from edgekd.core.preprocess import preprocessing
from edgekd.core.errors import ConfigError, DataError

RNG = np.random.default_rng(0)


def rgb_folder(root: Path, per_class: int = 6, sizes=((20, 30), (31, 17), (24, 24))) -> Path:
    """Two classes of random RGB images of several (height, width), non-square among them."""
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def expected(path: Path, size: tuple[int, int], mode: str) -> np.ndarray:
    """The documented transform, step by step with Pillow: convert, resize to cover, center crop."""
    with Image.open(path) as img:
        img = img.convert(mode)
        scale = max(size[1] / img.width, size[0] / img.height)
        new = (max(size[1], round(img.width * scale)), max(size[0], round(img.height * scale)))
        img = img.resize(new, Image.BILINEAR)
        left, top = (new[0] - size[1]) // 2, (new[1] - size[0]) // 2
        pixels = np.asarray(img.crop((left, top, left + size[1], top + size[0])))
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


@pytest.mark.parametrize("channels,mode", [(None, "RGB"), (1, "L"), (3, "RGB")])
def test_folder_is_resized_shorter_side_then_center_cropped(tmp_path, channels, mode):
    root = rgb_folder(tmp_path / "img")
    data = load_dataset(f"folder:{root}", images=ImageOptions((8, 12), channels), cache=DataCache(tmp_path / "cache"))
    assert isinstance(data.x, np.memmap) and data.x.dtype == np.uint8
    assert data.x.shape == (12, 1 if mode == "L" else 3, 8, 12) and data.y.dtype == np.int64
    files = sorted((root / "cat").iterdir()) + sorted((root / "dog").iterdir())
    for row, path in zip(data.x, files):
        np.testing.assert_array_equal(row, expected(path, (8, 12), mode))
    assert data.image == {"size": [8, 12], "channels": 1 if mode == "L" else 3, "color": mode, "dtype": "uint8",
                          "resize": "shorter side (cover HxW)", "crop": "center", "interpolation": "bilinear",
                          "resampler": "Pillow"}


def test_the_images_one_size_and_the_first_ones_kind_without_options(tmp_path):
    root = rgb_folder(tmp_path / "img", sizes=((20, 30),))
    Image.fromarray(RNG.integers(0, 256, (20, 30), dtype=np.uint8)).save(root / "dog" / "gray.png")
    data = load_dataset(f"folder:{root}", cache=DataCache(tmp_path / "cache"))
    assert data.x.shape == (13, 3, 20, 30)
    np.testing.assert_array_equal(data.x[-1], expected(root / "dog" / "gray.png", (20, 30), "RGB"))


def test_images_of_several_sizes_need_an_image_size(tmp_path):
    """The first image's size won silently: photos of 36 to 90 pixels all became 60×90."""
    root = rgb_folder(tmp_path / "img", sizes=((60, 90), (36, 40)))
    cache = DataCache(tmp_path / "cache")
    with pytest.raises(DataError) as info:
        load_dataset(f"folder:{root}", cache=cache)
    assert info.value.message == (f"the images differ in size: '{root / 'cat' / '0.png'}' is 90×60 and "
                                  f"'{root / 'cat' / '1.png'}' is 40×36 pixels (width×height)")
    assert "--image-size 60,90" in info.value.hint
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())     # no staging left
    data = load_dataset(f"folder:{root}", images=ImageOptions((60, 90)), cache=cache)
    assert data.x.shape == (12, 3, 60, 90)
    np.testing.assert_array_equal(data.x[1], expected(root / "cat" / "1.png", (60, 90), "RGB"))


def test_train_and_test_folders_are_the_sources_own_split(tmp_path):
    """``train/`` + ``test/`` (ImageNet's layout): the test folder is the held-out split, at the
    training images' size, its classes indexed as the training split's (a subset is fine)."""
    rgb_folder(tmp_path / "img" / "train", sizes=((12, 12),))
    (tmp_path / "img" / "test" / "dog").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(RNG.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / "img" / "test" / "dog" / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path / 'img'}", cache=DataCache(tmp_path / "cache"))
    assert data.labels == ["cat", "dog"] and data.x.shape == (12, 3, 12, 12)
    x_test, y_test = data.test
    assert x_test.shape == (3, 3, 12, 12) and y_test.tolist() == [1, 1, 1]
    np.testing.assert_array_equal(x_test[0], expected(tmp_path / "img" / "test" / "dog" / "0.png", (12, 12), "RGB"))
    (tmp_path / "img" / "test" / "bird").mkdir()
    Image.fromarray(RNG.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / "img" / "test" / "bird" / "0.png")
    with pytest.raises(DataError, match="has classes that .* lacks: bird"):
        load_dataset(f"folder:{tmp_path / 'img'}", cache=DataCache(tmp_path / "cache"))


def test_arrays_are_transformed_as_a_folder_of_the_same_images(tmp_path):
    """npz (N×H×W×3 uint8, with its own test split) and the same pictures as PNG files: the same bytes."""
    x = RNG.integers(0, 256, (10, 14, 22, 3), dtype=np.uint8)
    y = np.arange(10) % 2
    np.savez(tmp_path / "d.npz", x=x[:8], y=y[:8], x_test=x[8:], y_test=y[8:])
    for i, (image, label) in enumerate(zip(x[:8], y[:8])):
        (tmp_path / "img" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "img" / str(label) / f"{i}.png")
    options, cache = ImageOptions((9, 9), 1), DataCache(tmp_path / "cache")
    arrays = load_dataset(f"npz:{tmp_path}/d.npz", images=options, cache=cache)
    folder = load_dataset(f"folder:{tmp_path}/img", images=options, cache=cache)
    assert arrays.x.shape == (8, 1, 9, 9) and arrays.test[0].shape == (2, 1, 9, 9) and arrays.x.dtype == np.uint8
    order = np.argsort(y[:8], kind="stable")           # the folder lists class 0 first
    np.testing.assert_array_equal(arrays.x[order], folder.x)
    np.testing.assert_array_equal(arrays.test[1], [0, 1])


def test_gray_arrays_to_rgb_and_float_arrays_resized(tmp_path):
    digits = load_dataset("digits", images=ImageOptions((16, 16), 3), cache=DataCache(tmp_path))
    assert digits.x.shape == (1797, 3, 16, 16) and digits.x.dtype == np.float32
    assert np.array_equal(digits.x[:, 0], digits.x[:, 2]) and digits.image["dtype"] == "float32"
    plain = load_dataset("digits")
    assert abs(float(digits.x.mean()) - float(plain.x.mean())) < 0.2      # bilinear keeps the mean level


def test_a_second_load_maps_the_cache_and_opens_no_image(tmp_path, monkeypatch):
    root = rgb_folder(tmp_path / "img")
    seen = []
    cache = DataCache(tmp_path / "cache", progress=lambda done, total: seen.append((done, total)))
    first = load_dataset(f"folder:{root}", images=ImageOptions((8, 8)), cache=cache)
    assert seen[-1] == (12, 12) and [d for d, _ in seen] == sorted(d for d, _ in seen)

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was opened on the second load")

    monkeypatch.setattr(Image, "open", no_decoding)
    seen.clear()
    second = load_dataset(f"folder:{root}", images=ImageOptions((8, 8)), cache=cache)
    assert not seen and np.array_equal(first.x, second.x) and second.x.filename == first.x.filename
    assert not list((tmp_path / "cache").glob(".*partial"))      # no staging folder left


def test_an_interrupted_builds_staging_folder_goes_at_the_next_build(tmp_path):
    root = rgb_folder(tmp_path / "img")
    cache = DataCache(tmp_path / "cache")
    entry = cache.entry({"source": f"folder:{root.resolve()}", "size": [8, 8], "channels": None})
    left, recent = tmp_path / "cache" / f".{entry.name}.old.partial", tmp_path / "cache" / f".{entry.name}.new.partial"
    for folder in (left, recent):
        folder.mkdir(parents=True)
    os.utime(left, (0, 0))
    load_dataset(f"folder:{root}", images=ImageOptions((8, 8)), cache=cache)
    assert not left.exists() and recent.exists()          # a recent one may be another run's build


def test_the_cache_needs_no_torch(tmp_path):
    """data/ is device-side code: it decodes and maps images with torch unimportable."""
    import subprocess
    import sys

    root = rgb_folder(tmp_path / "img")
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgekd.train.data import DataCache, ImageOptions, load_dataset\n"
            f"d = load_dataset('folder:{root}', images=ImageOptions((8, 8), 1), cache=DataCache({str(tmp_path)!r}))\n"
            "print(d.x.shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0 and result.stdout.strip() == "(12, 1, 8, 8)", result.stderr


def _entry(cache_root: Path) -> Path:
    (entry,) = [p for p in cache_root.iterdir() if not p.name.startswith(".")]
    return entry


def _truncate(entry: Path) -> None:
    data = (entry / "x.npy").read_bytes()
    (entry / "x.npy").write_bytes(data[:-100])


def _edit_header(entry: Path) -> None:      # the same length, another shape: (12, 3, 8, 8) → (12, 3, 8, 4)
    data = (entry / "x.npy").read_bytes()
    (entry / "x.npy").write_bytes(data.replace(b"(12, 3, 8, 8)", b"(12, 3, 8, 4)", 1))


def _flip_pixels(entry: Path) -> None:
    data = bytearray((entry / "x.npy").read_bytes())
    data[-1] ^= 0xFF
    (entry / "x.npy").write_bytes(bytes(data))


def _edit_record(entry: Path) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    (entry / "meta.json").write_text(json.dumps({**meta, "source_digest": "0" * 64}))


def _change_source(entry: Path) -> None:
    image = entry.parent.parent / "img" / "cat" / "0.png"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))


@pytest.mark.parametrize("damage,reason", [
    (_truncate, "another size than its header"), (_edit_header, "header that does not match"),
    (_flip_pixels, "recorded digest"), (_edit_record, "before the source changed"),
    (lambda entry: (entry / "meta.json").write_text("{"), "cannot be read"),
    (_change_source, "before the source changed"),
])
def test_a_damaged_cache_is_rebuilt_with_a_note(tmp_path, damage, reason):
    root = rgb_folder(tmp_path / "img")
    notes = []
    cache = DataCache(tmp_path / "cache", note=notes.append)
    good = np.array(load_dataset(f"folder:{root}", images=ImageOptions((8, 8)), cache=cache).x)
    damage(_entry(tmp_path / "cache"))
    again = load_dataset(f"folder:{root}", images=ImageOptions((8, 8)), cache=cache)
    assert len(notes) == 1 and reason in notes[0] and "rebuilt" in notes[0]
    np.testing.assert_array_equal(again.x, good)
    assert load_dataset(f"folder:{root}", images=ImageOptions((8, 8)), cache=cache).x.shape == good.shape
    assert len(notes) == 1      # the rebuilt entry is trusted


def test_decoding_writes_into_the_map_not_a_list_of_float_arrays(tmp_path):
    """The old folder: built a list of float32 images and stacked it (8 bytes per pixel at the peak)."""
    root = rgb_folder(tmp_path / "img", per_class=60, sizes=((100, 100),))
    tracemalloc.start()
    try:
        data = load_dataset(f"folder:{root}", images=ImageOptions((96, 96)), cache=DataCache(tmp_path / "cache"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data.x.nbytes == 120 * 3 * 96 * 96 and peak < data.x.nbytes / 2, peak


def test_an_unwritable_cache_folder_is_one_data_error(tmp_path):
    root = rgb_folder(tmp_path / "img")
    (tmp_path / "file").write_text("a file, not a folder")
    for where in ("/proc/edgekd-cache", tmp_path / "file" / "cache"):
        with pytest.raises(DataError) as info:
            load_dataset(f"folder:{root}", images=ImageOptions((8, 8)), cache=DataCache(where))
        assert "cannot write the image cache" in info.value.message and "--cache-dir" in info.value.hint


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_cache_folder_is_one_data_error(tmp_path):
    root, cache = rgb_folder(tmp_path / "img"), tmp_path / "cache"
    cache.mkdir(mode=0o555)
    with pytest.raises(DataError, match="cannot write the image cache"):
        load_dataset(f"folder:{root}", images=ImageOptions((8, 8)), cache=DataCache(cache))


@pytest.mark.parametrize("options,fragment", [
    (dict(image_size="0"), "between 1 and 4096"), (dict(image_size="-3"), "between 1 and 4096"),
    (dict(image_size="5000"), "between 1 and 4096"), (dict(image_size="96,5000"), "between 1 and 4096"),
    (dict(image_size="3,x"), "N or H,W"), (dict(image_size="1,2,3"), "N or H,W"), (dict(image_size=""), "N or H,W"),
    (dict(channels=2), "1 (grayscale) or 3 (RGB)"), (dict(normalize="imagnet"), "did you mean 'imagenet'"),
])
def test_bad_image_options_are_config_errors(options, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, **options)
    assert fragment in f"{info.value.message} {info.value.hint}" and info.value.hint


def test_image_options_of_the_python_api_are_checked_too():
    for bad in (dict(size=(0, 8)), dict(size=(8, 5000)), dict(channels=2)):
        with pytest.raises(ConfigError):
            ImageOptions(**bad)


def test_image_sizes_parse(tmp_path):
    assert load_config(None, image_size="96").image_options() == ImageOptions((96, 96))
    assert load_config(None, image_size=" 96, 128", channels=3).image_options() == ImageOptions((96, 128), 3)
    (tmp_path / "c.toml").write_text("image_size = 64\nchannels = 1\n")      # a number in a config file too
    assert load_config(tmp_path / "c.toml").image_options() == ImageOptions((64, 64), 1)


def test_image_options_on_tabular_data_are_refused(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,label\n1,2,x\n3,4,y\n")
    for options in (ImageOptions((8, 8)), ImageOptions(channels=3)):
        with pytest.raises(DataError) as info:
            load_dataset(f"csv:{tmp_path}/t.csv", images=options, cache=DataCache(tmp_path / "cache"))
        assert "tabular" in info.value.message and info.value.hint
    assert not (tmp_path / "cache").exists()


def test_imagenet_statistics_need_rgb_and_a_brought_teachers_win():
    rgb = RNG.integers(0, 256, (4, 3, 5, 5)).astype(np.uint8)
    pre = preprocessing("imagenet", rgb, {"size": [5, 5]})
    np.testing.assert_allclose(pre["mean"], [123.675, 116.28, 103.53])
    np.testing.assert_allclose(pre["std"], [58.395, 57.12, 57.375])
    assert pre["image"] == {"size": [5, 5]} and pre["axis"] == "channel"
    with pytest.raises(DataError) as info:
        preprocessing("imagenet", rgb[:, :1], None)
    assert "3 channels" in info.value.message and "--channels 3" in info.value.hint
    brought = {"type": "standardize", "axis": "channel", "mean": [1, 2, 3], "std": [4, 5, 6], "image": {"size": [9, 9]}}
    assert preprocessing("imagenet", rgb, {"size": [5, 5]}, brought) == {**brought, "image": {"size": [5, 5]}}
    assert "image" not in preprocessing("data", rgb, None)


def test_imagenet_on_gray_data_fails_before_anything_is_written(tmp_path):
    from edgekd.train.distill import Experiment

    cfg = load_config(None, data="digits", normalize="imagenet", out=str(tmp_path / "run"))
    with pytest.raises(DataError, match="needs RGB images"):
        Experiment.prepare(cfg)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_run_and_bundle_record_the_image_transform(tmp_path):
    """model.json's preprocessing (statistics + image), cv.json's data, and the exported manifest
    carry the same record, so a device preprocesses as training did."""
    import edgekd
    from edgekd.train.distill import run_experiment

    root = rgb_folder(tmp_path / "img", per_class=10)
    out = tmp_path / "run"
    run_experiment(load_config(None, data=f"folder:{root}", image_size="10,12", channels=3, normalize="imagenet",
                               cache_dir=str(tmp_path / "cache"), folds=1, teacher_epochs=1, student_epochs=1,
                               student_fraction=0.5, test_fraction=0.25, out=str(out)))
    spec = json.loads((out / "student" / "model.json").read_text())
    assert spec["input"]["shape"] == [3, 10, 12]
    assert spec["preprocessing"]["image"]["size"] == [10, 12] and spec["preprocessing"]["statistics"] == "imagenet"
    assert json.loads((out / "cv.json").read_text())["data"]["image"] == spec["preprocessing"]["image"]
    assert 'image_size = "10,12"' in (out / "config.toml").read_text()
    edgekd.export(out, formats=["onnx"], roles=["student"], out=out / "bundle")
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert manifest["preprocessing"] == spec["preprocessing"]
