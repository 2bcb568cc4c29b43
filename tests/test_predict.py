"""edgekd predict and edgekd.Predictor: a bundle's model in the user's program, fed by the bundle's own
preprocessing. Real bundles (the zoo's, and digits saved as PNG files resized to 12×12), real
runtimes; the torch-free paths run in processes where torch cannot be imported."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd import Predictor
from edgekd.core.errors import BundleError, ConfigError, DataError
from edgekd.device.bench.run import run_bench

from conftest import FAST_BENCH, assert_user_error, run_cli_here, torch_blocked


def _eval(bundle: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(bundle / "eval.npz") as data:
        return data["x"], data["y"]


def _pixels(bundle: Path, x: np.ndarray) -> np.ndarray:
    """The eval samples back as the 8-bit gray pictures they were standardised from (N×H×W)."""
    pre = json.loads((bundle / "manifest.json").read_text())["preprocessing"]
    return np.clip(np.rint(x[:, 0] * pre["std"][0] + pre["mean"][0]), 0, 255).astype(np.uint8)


def _top1(predictions) -> np.ndarray:
    return np.asarray([p.classes[0] for p in predictions])


# -- the same answers as bench -------------------------------------------------------------------

PER_FILE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from edgekd import Predictor
    bundle, files = sys.argv[1], json.loads(sys.argv[2])
    with np.load(f"{bundle}/eval.npz") as data:
        x, y = data["x"], data["y"]
    out = {}
    for entry in files:
        p = Predictor(bundle, model=entry["role"], format=entry["format"])
        out[entry["file"]] = float(np.mean([q.classes[0] for q in p.predict(x)] == y))
    assert "torch" not in sys.modules
    print(json.dumps(out))
""")


def test_every_file_of_the_zoo_bundle_predicts_benchs_top1_without_torch(zoo_bundle, tmp_path):
    report = run_bench(zoo_bundle, out=tmp_path / "bench.json", **FAST_BENCH)
    files = [{"file": m["file"], "role": m["role"], "format": m["format"]} for m in report["models"]]
    assert len(files) == 3
    res = subprocess.run([sys.executable, "-c", PER_FILE, str(zoo_bundle), json.dumps(files)], capture_output=True,
                         text=True, env={**os.environ, **torch_blocked(tmp_path)})
    assert res.returncode == 0, res.stderr
    accuracy = json.loads(res.stdout.strip().splitlines()[-1])
    for m in report["models"]:
        assert accuracy[m["file"]] == pytest.approx(m["accuracy"], abs=1e-12), m["file"]


def test_pictures_of_the_eval_set_give_benchs_top1_in_every_file(image_bundle):
    """The picture path (8-bit frames through the table of standardize's own values, quantized by the
    runtime's quantize for int8 input, float for fp32 files) against bench's loop on eval.npz: the same
    input, so the same top-1, file by file; the table against preprocess + the runtime's quantization."""
    from edgekd.device.runtimes.base import quantize

    x, _ = _eval(image_bundle)
    frames = _pixels(image_bundle, x)[..., None]
    for entry in json.loads((image_bundle / "manifest.json").read_text())["models"]:
        p = Predictor(image_bundle, model=entry["role"], format=entry["format"])
        rt = p.runtime
        want = quantize(x, rt.input) if rt.input.quantized else x
        np.testing.assert_array_equal(p._model_input(frames), want)
        np.testing.assert_array_equal(_top1(p.predict(frames)), rt.predict(x))


def test_a_list_of_preprocessed_samples_is_not_standardised_again(demo_bundle):
    p = Predictor(demo_bundle)
    x, _ = _eval(demo_bundle)
    np.testing.assert_array_equal(p.logits(list(x[:4])), p.logits(x[:4]))
    np.testing.assert_array_equal(p.logits([x[0], x[1]]), p.logits(x[:2]))


def test_the_default_file_is_the_students_int8_tflite_and_repr_says_so(demo_bundle):
    p = Predictor(demo_bundle)
    assert p.entry["file"] == "student.int8.tflite"
    assert "student.int8.tflite" in repr(p) and "default" in repr(p)
    teacher = Predictor(demo_bundle, model="teacher")
    assert teacher.entry["file"] == "teacher.onnx" and "teacher" in repr(teacher)
    asked = Predictor(demo_bundle, format="onnx", threads=1)
    assert asked.entry["file"] == "student.onnx" and "asked for" in repr(asked) and asked.runtime.threads == 1


def test_probabilities_are_the_softmax_of_the_dequantized_logits(demo_bundle):
    p = Predictor(demo_bundle)
    x, _ = _eval(demo_bundle)
    logits = p.runtime.logits(x[:20])
    [first, *_] = predictions = p.predict(x[:20], top_k=3)
    assert len(predictions) == 20 and len(first.classes) == 3
    z = np.exp(logits[0] - logits[0].max())
    expected = z / z.sum()
    assert first.classes == list(np.argsort(-expected, kind="stable")[:3])
    assert first.probabilities == pytest.approx(expected[first.classes], abs=1e-6)
    assert first.probabilities == sorted(first.probabilities, reverse=True) and first.label == first.labels[0]
    assert sum(p.predict(x[:1], top_k=10)[0].probabilities) == pytest.approx(1.0)
    assert p.predict(x[0], top_k=3)[0].classes == first.classes     # one sample, without a batch axis


# -- pictures: files, Pillow images, camera frames -------------------------------------------------

def test_png_and_jpeg_files_of_eval_images_give_the_arrays_class(image_bundle, tmp_path):
    p = Predictor(image_bundle)
    x, y = _eval(image_bundle)
    x, pixels = x[:40], _pixels(image_bundle, x[:40])
    pngs, jpegs = [], []
    for i, picture in enumerate(pixels):
        Image.fromarray(picture, "L").save(tmp_path / f"{i}.png")
        Image.fromarray(picture, "L").save(tmp_path / f"{i}.jpg", quality=95)
        pngs.append(tmp_path / f"{i}.png")
        jpegs.append(tmp_path / f"{i}.jpg")
    # PNG is lossless: preprocess gives the eval samples themselves, so the same logits
    np.testing.assert_allclose(p.preprocess(pngs), x, atol=1e-6)
    from_arrays = p.predict(x)
    np.testing.assert_array_equal(_top1(p.predict(pngs)), _top1(from_arrays))
    np.testing.assert_array_equal(_top1(p.predict([Image.open(f) for f in pngs])), _top1(from_arrays))
    # camera frames: uint8 H×W (a list of them), N×H×W×1 or RGB N×H×W×3 (to gray as Pillow converts it)
    np.testing.assert_array_equal(_top1(p.predict(list(pixels))), _top1(from_arrays))
    np.testing.assert_array_equal(_top1(p.predict(pixels[..., None])), _top1(from_arrays))
    rgb = np.repeat(pixels[..., None], 3, axis=-1)
    np.testing.assert_array_equal(_top1(p.predict(rgb)), _top1(from_arrays))
    # JPEG is lossy: the class holds wherever the model was not torn between two
    sure = [i for i, q in enumerate(from_arrays) if q.probabilities[0] - q.probabilities[1] > 0.2]
    assert len(sure) > 10
    jpeg = _top1(p.predict(jpegs))
    np.testing.assert_array_equal(jpeg[sure], _top1(from_arrays)[sure])


def test_a_larger_frame_is_resized_and_cropped_as_the_training_folder_was(image_bundle, tmp_path):
    """A 24×30 frame and the same picture as a file take the data side's path: one transform."""
    from edgekd.device.images import read_image

    p = Predictor(image_bundle)
    frame = np.random.default_rng(0).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    Image.fromarray(frame).save(tmp_path / "frame.png")
    expected = read_image(tmp_path / "frame.png", 1, (12, 12))[None]
    pre = json.loads((image_bundle / "manifest.json").read_text())["preprocessing"]
    want = (expected.astype(np.float64) - pre["mean"][0]) / pre["std"][0]
    np.testing.assert_allclose(p.preprocess(frame), want, atol=1e-5)
    np.testing.assert_allclose(p.preprocess(tmp_path / "frame.png"), want, atol=1e-5)


def test_one_frame_takes_the_lean_path_to_the_same_numbers(image_bundle):
    """One gray frame at the model's size, H×W or H×W×1, skips the general path (Predictor._one_frame):
    the runtime gets the very same input (RGB and camera-ready files: tests/test_pixel_input.py)."""
    p = Predictor(image_bundle)
    for frame in _pixels(image_bundle, _eval(image_bundle)[0][:10]):
        for given in (frame, frame[..., None]):
            lean = p._one_frame(given)
            assert lean is not None
            np.testing.assert_array_equal(lean, p._model_input(given[None] if given.ndim == 3 else [given]))
            np.testing.assert_array_equal(p.logits(given), p.logits([given]))
    assert p._one_frame(np.zeros((13, 12), np.uint8)) is None and p._one_frame(np.array(7, np.uint8)) is None


def test_only_a_model_of_8bit_images_takes_pictures():
    """A model trained on float images (digits with --image-size: 0..16) would be fed 0..255 pixels."""
    from edgekd.device.images import describe
    from edgekd.device.predict.inputs import InputContract

    pre = {"type": "standardize", "axis": "channel", "mean": [4.9], "std": [6.0]}
    entry = {"file": "student.onnx", "input": {"shape": [1, 1, 12, 12]}}
    for dtype, takes in (("float32", False), ("uint8", True)):
        image = describe((12, 12), 1, np.dtype(dtype))
        contract = InputContract.of({"preprocessing": {**pre, "image": image}}, entry, [1, 1, 12, 12])
        assert (contract.channels is not None) == takes
        if not takes:
            with pytest.raises(DataError, match="not on 8-bit images"):
                contract.pictures("photo.png")          # refused before the file is looked for


# -- refusals ------------------------------------------------------------------------------------

def test_bad_inputs_are_one_error_each(image_bundle, demo_bundle, tmp_path):
    p = Predictor(image_bundle)
    gray = _pixels(image_bundle, _eval(image_bundle)[0][:1])[0]
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")        # an opaque alpha is dropped, as training does
    assert p.predict(tmp_path / "opaque.png")[0].classes == p.predict(gray)[0].classes
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")           # one transparent pixel: no defined colour
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    for bad, fragment in [
        (tmp_path / "rgba.png", "transparent"),
        (Image.open(tmp_path / "rgba.png"), "transparent"),
        (rgba, "transparent"),
        (np.zeros((1, 12, 13), np.float32), "1×12×13"),
        (np.full((1, 12, 12), np.nan, np.float32), "finite"),
        (tmp_path / "broken.png", "cannot read"),
        ({"not": "an image"}, "cannot predict"),
        ([], "no images"),
        (np.array(7, np.uint8), "H×W"),                                   # no picture, not a traceback
        (gray.astype(np.int64), "uint8"),                                  # 16/64-bit or bool: not taken as pixels
        (gray > 0, "bool"),
        (np.zeros((1, 20000), np.uint8), "20,000"),                        # a strip 16 times longer than wide
    ]:
        with pytest.raises(DataError, match=fragment):
            p.predict(bad)
    with pytest.raises(ConfigError, match="top_k"):
        p.predict(gray, top_k=0)
    assert len(p.predict(gray, top_k=np.int64(50))[0].classes) == 10      # at most every class
    with pytest.raises(DataError, match="not on 8-bit images"):
        Predictor(demo_bundle).predict(tmp_path / "opaque.png")
    with pytest.raises(ConfigError, match="unknown model 'teachr'") as info:
        Predictor(image_bundle, model="teachr")
    assert "did you mean 'teacher'" in info.value.hint
    with pytest.raises(ConfigError, match="no student file in format 'tflite'"):
        Predictor(image_bundle, format="tflite")
    for bad in (dict(threads=0), dict(threads="4"), dict(model=None), dict(format=5)):
        with pytest.raises(ConfigError):
            Predictor(image_bundle, **bad)


@pytest.mark.parametrize("edit,fragment", [
    (lambda m: m["preprocessing"].update(std=[0.0]), "std above 0"),
    (lambda m: m["preprocessing"].update(mean=["x"]), "finite mean"),
    (lambda m: m["preprocessing"].update(image="x"), "finite mean"),
    (lambda m: m["preprocessing"]["image"].update(size=[13, 12]), "not a transform"),
    (lambda m: m["preprocessing"]["image"].update(interpolation="nearest"), "not a transform"),
    (lambda m: m.update(labels=["a", "b"]), "labels"),
])
def test_a_hostile_manifest_is_one_bundle_error(image_bundle, tmp_path, edit, fragment):
    bundle = tmp_path / "bundle"
    shutil.copytree(image_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=fragment):
        Predictor(bundle)


def test_a_tampered_bundle_is_refused_before_its_model_opens(image_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(image_bundle, bundle)
    with open(bundle / "student.int8.tflite", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="does not match the manifest"):
        Predictor(bundle)


# -- the command ---------------------------------------------------------------------------------

@pytest.fixture
def pictures(image_bundle, tmp_path) -> Path:
    """Eight eval images as PNG files in a folder with a sub-folder (predict walks it)."""
    pixels = _pixels(image_bundle, _eval(image_bundle)[0][:8])
    for i, picture in enumerate(pixels):
        folder = tmp_path / "pictures" / ("more" if i >= 4 else "")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture, "L").save(folder / f"{i}.png")
    return tmp_path / "pictures"


def test_predict_prints_a_line_per_image_and_json_and_csv_for_pipes(image_bundle, pictures):
    res = run_cli_here("predict", image_bundle, pictures, "--top-k", "2")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 8 and lines[0].startswith(str(pictures / "0.png"))
    assert any(str(pictures / "more" / "4.png") in line for line in lines)
    doc = json.loads(run_cli_here("predict", image_bundle, pictures, "--json", "--top-k", "3").stdout)
    assert doc["schema"] == "edgekd.predict" and doc["file"] == "student.int8.tflite" and doc["skipped"] == []
    assert len(doc["predictions"]) == 8 and all(len(p["top"]) == 3 for p in doc["predictions"])
    expected = Predictor(image_bundle).predict(sorted(pictures.rglob("*.png")))
    assert sorted((p["source"], p["label"]) for p in doc["predictions"]) == \
        sorted((str(f), q.label) for f, q in zip(sorted(pictures.rglob("*.png")), expected))
    csv = run_cli_here("predict", image_bundle, pictures / "0.png", "--csv").stdout.splitlines()
    assert csv[0] == "source,label_1,probability_1" and csv[1].startswith(f"{pictures / '0.png'},digit")


def test_predict_reads_an_npz_of_samples(image_bundle, tmp_path):
    x, _ = _eval(image_bundle)
    np.savez(tmp_path / "one.npz", x=_pixels(image_bundle, x[:1])[0])
    assert_user_error(run_cli_here("predict", image_bundle, tmp_path / "one.npz"), "N×H×W×C")   # not cut in rows
    np.savez(tmp_path / "some.npz", x=x[:5])
    doc = json.loads(run_cli_here("predict", image_bundle, tmp_path / "some.npz", "--json").stdout)
    assert [p["source"] for p in doc["predictions"]] == [f"{tmp_path / 'some.npz'}[{i}]" for i in range(5)]
    assert [p["label"] for p in doc["predictions"]] == [q.label for q in Predictor(image_bundle).predict(x[:5])]


def test_an_unreadable_image_is_one_error_or_skipped_and_counted(image_bundle, pictures):
    (pictures / "more" / "broken.png").write_bytes(b"not a png")
    assert_user_error(run_cli_here("predict", image_bundle, pictures), "broken.png")
    res = run_cli_here("predict", image_bundle, pictures, "--skip-bad", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert len(doc["predictions"]) == 8 and [s["source"] for s in doc["skipped"]] == [str(pictures / "more" / "broken.png")]
    assert "skipped 1 unreadable image" in res.stderr


def test_skip_bad_does_not_hide_a_model_that_takes_no_pictures(demo_bundle, pictures):
    assert_user_error(run_cli_here("predict", demo_bundle, pictures, "--skip-bad"), "not on 8-bit images")


def test_predict_runs_where_torch_cannot_be_imported(image_bundle, pictures, tmp_path):
    from conftest import run_cli

    res = run_cli("predict", image_bundle, pictures, "--json", env=torch_blocked(tmp_path))
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["predictions"]) == 8


def test_the_board_example_classifies_a_folder_without_torch(image_bundle, pictures, tmp_path):
    example = Path(__file__).resolve().parents[1] / "examples" / "classify_folder.py"
    assert len(example.read_text().splitlines()) < 40
    res = subprocess.run([sys.executable, str(example), str(image_bundle), str(pictures), "--top-k", "2"],
                         capture_output=True, text=True, env={**os.environ, **torch_blocked(tmp_path)})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("Predictor(") and len(lines) == 1 + 8 + 1 and lines[-1].endswith("skipped: 0")
    files = sorted(pictures.rglob("*.png"))
    expected = Predictor(image_bundle).predict(files)
    assert [line.rsplit(": ", 1)[0] for line in lines[1:-1]] == [str(f) for f in files]
    assert [line.rsplit(": ", 1)[1].split(" (")[0] for line in lines[1:-1]] == [q.label for q in expected]
