"""Data sources and their bad inputs (torch-free layer)."""
import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from edgekd.train.data import SOURCES, Dataset, load_dataset
from edgekd.core.preprocess import fit_standardize, standardize
from edgekd.train.data.split import folds, holdout, stratified_subset
from edgekd.core.errors import DataError


def test_digits_is_embedded():
    data = load_dataset("digits")
    assert data.x.shape == (1797, 1, 8, 8) and data.x.dtype == np.float32
    assert data.labels == [str(i) for i in range(10)] and data.test is None


def test_npz_with_its_own_test_split_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.random((40, 28, 28)), y=np.repeat([3, 7], 20), x_test=rng.random((6, 28, 28)),
             y_test=np.array([7, 3, 3, 7, 7, 3]), labels=np.array(["three", "seven"]))
    data = load_dataset(f"npz:{path}")
    assert data.x.shape == (40, 1, 28, 28) and data.labels == ["three", "seven"]
    x_train, y_train, x_test, y_test = holdout(data, 0.2, 0)
    assert len(x_train) == 40 and y_test.tolist() == [1, 0, 0, 1, 1, 0]


def test_nhwc_images_become_nchw(tmp_path):
    path = tmp_path / "rgb.npz"
    np.savez(path, x=np.zeros((10, 32, 32, 3), np.uint8), y=np.arange(10) % 2)
    assert load_dataset(f"npz:{path}").x.shape == (10, 3, 32, 32)


@pytest.mark.parametrize("x,recorded", [
    (np.zeros((10, 28, 28), np.uint8), {"size": [28, 28], "channels": 1}),       # idx:'s Fashion-MNIST, gray
    (np.zeros((10, 16, 24, 3), np.uint8), {"size": [16, 24], "channels": 3}),    # RGB, NHWC
    (np.zeros((10, 28, 28), np.float32), None),                                   # float: no pixels to take
    (np.zeros((10, 2, 8, 8), np.uint8), None),                                    # two channels: no picture
    (np.zeros((10, 5), np.uint8), None),                                          # a table
])
def test_8bit_images_as_stored_record_their_transform(tmp_path, x, recorded):
    """A predictor takes camera frames, and export --input uint8 folds the statistics in, only for a
    model of 8-bit images: those as stored record the identity transform (their own size and colour)."""
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(10) % 2)
    image = load_dataset(f"npz:{tmp_path / 'd.npz'}").image
    assert (image and {k: image[k] for k in ("size", "channels")}) == recorded
    assert image is None or (image["dtype"] == "uint8" and image["color"] == ("L" if image["channels"] == 1 else "RGB"))


def write_idx(path, array):
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if path.suffix == ".gz" else open)(path, "wb").write(data)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_reads_train_and_t10k(tmp_path, suffix):
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 255, (12, 28, 28)), np.arange(12) % 3
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images[:6])
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels[:6])
    data = load_dataset(f"idx:{tmp_path}")
    np.testing.assert_array_equal(data.x[:, 0], images)
    assert data.test[0].shape == (6, 1, 28, 28) and data.test[1].tolist() == [0, 1, 2, 0, 1, 2]


def _is_mapped(array: np.ndarray) -> bool:
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base
    return False


def test_large_data_is_held_once(tmp_path):
    """Uncompressed IDX files and npz members are memory-mapped, 8-bit pixels stay 8-bit, and
    standardisation gives the same float32 numbers as from a float32 copy."""
    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 255, (12, 28, 28)).astype(np.uint8), np.arange(12) % 3
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    np.savez(tmp_path / "plain.npz", x=images, y=labels, x_test=images[:3].astype(np.float32), y_test=labels[:3])
    np.savez_compressed(tmp_path / "packed.npz", x=images, y=labels)
    idx, plain, packed = (load_dataset(s) for s in (f"idx:{tmp_path}", f"npz:{tmp_path}/plain.npz",
                                                   f"npz:{tmp_path}/packed.npz"))
    assert _is_mapped(idx.x) and _is_mapped(plain.x) and _is_mapped(plain.test[0]) and not _is_mapped(packed.x)
    for data in (idx, plain, packed):
        assert data.x.dtype == np.uint8
        np.testing.assert_array_equal(data.x[:, 0], images)
    pre = fit_standardize(idx.x)
    assert pre == fit_standardize(idx.x.astype(np.float32))
    z = standardize(pre, idx.x)
    assert z.dtype == np.float32 and np.array_equal(z, standardize(pre, idx.x.astype(np.float32)))


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4))
    with open(tmp_path / "train-images-idx3-ubyte", "r+b") as f:
        f.truncate(100)
    with pytest.raises(DataError, match="not a readable IDX file"):
        load_dataset(f"idx:{tmp_path}")


def test_folder_of_images(tmp_path):
    for name, value in (("cat", 10), ("dog", 200)):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((6, 5), value + i, np.uint8)).save(tmp_path / name / f"{i}.png")
    data = load_dataset(f"folder:{tmp_path}")
    assert data.labels == ["cat", "dog"] and data.x.shape == (6, 1, 6, 5) and data.y.tolist() == [0, 0, 0, 1, 1, 1]


def test_csv_with_label_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,species,b\n1,x,2\n3,y,4\n5,x,6\n")
    data = load_dataset(f"csv:{path}", label_column="species")
    assert data.x.tolist() == [[1, 2], [3, 4], [5, 6]] and data.labels == ["x", "y"] and data.y.tolist() == [0, 1, 0]


def test_csv_ignores_blank_lines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label\n1,x\n\n3,y\n\n")
    data = load_dataset(f"csv:{path}")
    assert data.x.tolist() == [[1], [3]] and data.labels == ["x", "y"]


@pytest.mark.parametrize("spec,label_column,fragment", [
    ("digits:foo", None, "takes no argument"),
    ("digits", "label", "--label-column does not apply to data source 'digits'"),
    ("npz", "label", "--label-column does not apply to data source 'npz'"),
])
def test_arguments_a_source_does_not_take_are_errors(tmp_path, spec, label_column, fragment):
    if spec == "npz":
        np.savez(tmp_path / "a.npz", x=np.zeros((4, 2)), y=np.arange(4) % 2)
        spec = f"npz:{tmp_path}/a.npz"
    with pytest.raises(DataError) as info:
        load_dataset(spec, label_column=label_column)
    assert fragment in info.value.message


def test_standardize_uses_training_statistics_only():
    x = np.arange(24, dtype=np.float32).reshape(3, 2, 2, 2)
    pre = fit_standardize(x)
    z = standardize(pre, x)
    assert np.allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-6) and np.allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-5)


def test_standardize_statistics_without_a_full_size_float64_copy():
    """x.std(dtype=float64) would allocate 8 bytes per element of x (125 MB here); the
    chunked statistics need a few MB and agree with it to float64 rounding."""
    import tracemalloc

    x = np.random.default_rng(4).integers(0, 255, (20000, 1, 28, 28)).astype(np.uint8)
    tracemalloc.start()
    try:
        pre = fit_standardize(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes, peak
    np.testing.assert_allclose(pre["mean"], x.mean(axis=(0, 2, 3), dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(pre["std"], x.std(axis=(0, 2, 3), dtype=np.float64), rtol=1e-12)
    table = np.random.default_rng(5).normal(3, 2, (3000, 400)).astype(np.float32)     # several chunks of rows
    np.testing.assert_allclose(fit_standardize(table)["std"], table.std(axis=0, dtype=np.float64), rtol=1e-12)


def test_splits_are_stratified_disjoint_and_seeded():
    data = load_dataset("digits")
    x_train, y_train, x_test, y_test = holdout(data, 0.2, 0)
    assert len(y_test) == 360 and np.all(np.bincount(y_test) >= 35)
    parts = folds(y_train, 5, 0.2, 0, data.labels)
    validations = np.concatenate([v for _, v in parts])
    assert sorted(validations.tolist()) == list(range(len(y_train)))
    subset = stratified_subset(y_train, 0.1, 3)
    assert np.array_equal(subset, stratified_subset(y_train, 0.1, 3))
    assert set(np.bincount(y_train[subset])) <= {13, 14, 15}


@pytest.mark.parametrize("case,fragment", [
    ("no_xy", "no array 'y'"),
    ("lengths", "10 samples but 9 labels"),
    ("fractional", "must be integers"),
    ("strings", "must be integers"),
    ("bad_image", "cannot read image"),
    ("bad_idx", "not a readable IDX"),
    ("csv_column", "did you mean 'species'"),
])
def test_bad_inputs_are_clear_errors(tmp_path, case, fragment):
    """A DataError naming the problem, raised while reading, before a run folder exists (an unknown
    source and a missing file are rows of test_distill.py's bad options; the CLI's one-line form of
    a DataError is test_bad_input.py's)."""
    spec = f"npz:{tmp_path}/a.npz"
    label_column = None
    if case == "no_xy":
        np.savez(tmp_path / "a.npz", x=np.zeros((3, 2)))
    elif case == "lengths":
        np.savez(tmp_path / "a.npz", x=np.zeros((10, 2)), y=np.zeros(9, int))
    elif case == "fractional":
        np.savez(tmp_path / "a.npz", x=np.zeros((3, 2)), y=np.array([0.0, 1.5, 1.0]))
    elif case == "strings":
        np.savez(tmp_path / "a.npz", x=np.zeros((3, 2)), y=np.array(["a", "b", "a"]))
    elif case == "bad_image":
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / name / "ok.png")
        (tmp_path / "b" / "broken.png").write_bytes(b"not a png")
        spec = f"folder:{tmp_path}"
    elif case == "bad_idx":
        (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03junk")
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"junk")
        spec = f"idx:{tmp_path}"
    elif case == "csv_column":
        (tmp_path / "t.csv").write_text("a,species\n1,x\n")
        spec, label_column = f"csv:{tmp_path}/t.csv", "specie"
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DataError) as info:
        load_dataset(spec, label_column=label_column)
    assert fragment in f"{info.value.message}\nhint: {info.value.hint}"
    assert sorted(tmp_path.rglob("*")) == before


def test_too_few_samples_per_class_for_folds():
    y = np.array([0] * 10 + [1] * 3)
    with pytest.raises(DataError, match="'1' has 3"):
        folds(y, 5, 0.2, 0, ["a", "1"])


def test_registry_lists_every_source():
    assert SOURCES.names() == ["csv", "digits", "folder", "idx", "npz"]


def _dataset(counts: list[int]) -> Dataset:
    y = np.repeat(np.arange(len(counts)), counts)
    return Dataset(np.zeros((len(y), 3), np.float32), y, [f"c{i}" for i in range(len(counts))], "test")


@pytest.mark.parametrize("counts,fraction,fragment,hint", [
    ([3] * 20, 0.2, "would hold 12 of 60 samples, fewer than the 20 classes", "--test-fraction 0.334 or more"),
    ([30] * 10, 0.001, "would hold 1 of 300 samples", "--test-fraction 0.034 or more"),
    ([30] * 10, 0.999, "the training part beside the held-out test split", "--test-fraction 0.966 or less"),
    ([100, 100, 2], 0.02, "gets no sample of class 'c2'", "add samples"),      # rounding leaves c2 out
])
def test_every_class_in_both_parts_of_the_held_out_split(counts, fraction, fragment, hint):
    with pytest.raises(DataError) as info:
        holdout(_dataset(counts), fraction, 0)
    assert fragment in info.value.message and hint in info.value.hint


def test_every_class_in_both_parts_of_a_single_validation_split():
    y = _dataset([3] * 20).y
    with pytest.raises(DataError, match="validation split of --folds 1.*fewer than the 20 classes"):
        folds(y, 1, 0.2, 0, [f"c{i}" for i in range(20)])
    train, val = folds(y, 1, 0.4, 0, [f"c{i}" for i in range(20)])[0]
    assert set(y[train]) == set(y[val]) == set(range(20))
