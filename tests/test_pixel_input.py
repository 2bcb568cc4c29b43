"""export --input uint8: int8 files that take the camera's frame (raw 0..255 pixels, NHWC) with the
standardisation inside. A real run on 8-bit images (sklearn's digits written as a PNG folder, in RGB,
short training), exported twice (float input, pixel input), run in the real runtimes and benched."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST_BENCH, TINY, assert_user_error, digits_png_folder, run_cli
from edgekd.core.errors import ConfigError, DataError, ExportError
from edgekd.core.preprocess import fit_standardize, standardize, to_pixels

#: the uint8-input file against the float-input one, top-1 on the eval set
MIN_AGREEMENT = 0.99
INT8_FILES = ("student.int8.tflite", "student.int8.onnx")


def test_to_pixels_gives_back_the_pixels_standardize_was_given():
    pixels = np.random.default_rng(0).integers(0, 256, (50, 3, 5, 7), dtype=np.uint8)
    pixels[0] = 0
    pixels[1] = 255          # the ends of the range survive the float32 round trip too
    pre = {**fit_standardize(pixels.astype(np.float32)), "image": {"dtype": "uint8"}}
    x = standardize(pre, pixels)
    np.testing.assert_array_equal(to_pixels(pre, x), pixels)
    nhwc = to_pixels(pre, x, "NHWC")
    assert nhwc.dtype == np.uint8 and nhwc.shape == (50, 5, 7, 3)
    np.testing.assert_array_equal(nhwc, pixels.transpose(0, 2, 3, 1))
    with pytest.raises(DataError, match="not made from 8-bit images"):
        to_pixels({k: v for k, v in pre.items() if k != "image"}, x)      # digits' float 0..16: no pixels


def test_input_is_declared_once_and_checked():
    from edgekd.exporters.formats import FORMATS, INPUT_VALUES
    from edgekd.exporters.run import ExportOptions

    assert INPUT_VALUES == ("float", "uint8") and ExportOptions().input == "float"
    assert {n for n in FORMATS.names() if "input" in FORMATS.get(n).options} == {"tflite-int8", "onnx-int8"}
    with pytest.raises(ConfigError, match="unknown --input 'unit8'") as info:
        ExportOptions(input="unit8").check_numbers()
    assert "uint8" in str(info.value.hint)                       # the closest match is named
    with pytest.raises(ConfigError, match="it would be ignored"):
        ExportOptions(input="uint8", formats=["onnx"]).plan()    # no int8 file to take the pixels
    with pytest.raises(ConfigError, match="--keep-float auto"):
        ExportOptions(input="uint8", keep_float=["auto"]).check_numbers()


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory) -> Path:
    """conftest's ``image_run`` in RGB (``--channels 3``): the three-channel paths (a table row per
    channel, the folded per-channel mean and std) where the gray run has one."""
    from edgekd.train.config import load_config
    from edgekd.train.distill import run_experiment

    root = tmp_path_factory.mktemp("rgb")
    run_experiment(load_config(None, **{**TINY, "data": f"folder:{digits_png_folder(root / 'images')}",
                                        "image_size": "12", "channels": 3}, out=str(root / "run")))
    return root / "run"


@pytest.fixture(scope="module")
def pixel_bundles(rgb_run, tmp_path_factory) -> dict[str, Path]:
    """"float" and "uint8": the student's tflite-int8 + onnx-int8 (and the default set's fp32 ONNX)."""
    import edgekd

    out = {}
    for values in ("float", "uint8"):
        out[values] = tmp_path_factory.mktemp(values) / "bundle"
        edgekd.export(rgb_run, out=out[values], formats=["onnx", "tflite-int8", "onnx-int8"], roles=["student"],
                      input=values)
    return out


def _manifest_inputs(bundle: Path) -> dict[str, dict]:
    return {m["file"]: m["input"] for m in json.loads((bundle / "manifest.json").read_text())["models"]}


def test_the_uint8_file_takes_nhwc_pixels_and_is_int8_everywhere_else(pixel_bundles):
    from edgekd.exporters.tflite import check_tflite, describe_tflite

    path = pixel_bundles["uint8"] / "student.int8.tflite"
    info = describe_tflite(path)
    assert info["inputs"] == ["uint8"] and info["outputs"] == ["int8"]
    (index, _, _, _), = [t for t in info["io"] if t[1] == "input"]
    others = [t for t in info["activations"] + info["constants"] if t[0] != index]
    assert {t[2] for t in others} <= {"int8", "int32"}
    assert all(t[2] == "int8" for t in info["activations"] if len(t[3]) > 1 and t[0] != index)
    check_tflite(path, "int8", "student", input_dtype="uint8")
    with pytest.raises(ExportError, match="input.*uint8"):
        check_tflite(path, "int8", "student")                    # int8 end to end, unless declared
    inputs = _manifest_inputs(pixel_bundles["uint8"])
    assert inputs["student.int8.tflite"] == {"shape": [1, 12, 12, 3], "layout": "NHWC", "dtype": "uint8",
                                             "scale": 1.0, "zero_point": 0, "values": "pixels"}
    assert inputs["student.int8.onnx"] == {"shape": [1, 12, 12, 3], "layout": "NHWC", "dtype": "uint8",
                                           "scale": None, "zero_point": None, "values": "pixels"}
    assert "values" not in inputs["student.onnx"] and inputs["student.onnx"]["layout"] == "NCHW"   # fp32 unchanged
    floats = _manifest_inputs(pixel_bundles["float"])
    assert floats["student.int8.tflite"]["dtype"] == "int8" and "values" not in floats["student.int8.tflite"]


def test_the_uint8_file_agrees_with_the_float_input_file(pixel_bundles):
    from edgekd.core.bundle import load_eval_npz
    from edgekd.device.runtimes import open_model

    manifest = json.loads((pixel_bundles["uint8"] / "manifest.json").read_text())
    x, y = load_eval_npz(pixel_bundles["uint8"] / "eval.npz")
    pixels = to_pixels(manifest["preprocessing"], x, "NHWC")
    reports = {values: json.loads((bundle / "export.json").read_text()) for values, bundle in pixel_bundles.items()}
    for name in INT8_FILES:
        runtime = open_model(pixel_bundles["uint8"] / name, threads=1)
        assert runtime.prepare(pixels[:4]).dtype == np.uint8       # the pixels go in as they are
        taken = runtime.predict(pixels)
        given = open_model(pixel_bundles["float"] / name, threads=1).predict(x)
        assert np.mean(taken == given) >= MIN_AGREEMENT, name
        # export's own check, int8 against PyTorch on the eval set: as the float-input file's
        parity = {values: next(m["parity"] for m in report["models"] if m["file"] == name)
                  for values, report in reports.items()}
        assert parity["uint8"]["samples"] == len(y) and parity["uint8"]["accuracy"] == pytest.approx(np.mean(taken == y))
        assert abs(parity["uint8"]["top1_agreement"] - parity["float"]["top1_agreement"]) <= 1 - MIN_AGREEMENT


def test_bench_feeds_the_pixels_of_the_same_eval_data(pixel_bundles, tmp_path):
    from edgekd.device.bench.run import run_bench

    docs = {values: run_bench(bundle, out=tmp_path / f"{values}.json", **FAST_BENCH)
            for values, bundle in pixel_bundles.items()}
    for name in INT8_FILES:
        models = {values: next(m for m in doc["models"] if m["file"] == name) for values, doc in docs.items()}
        assert models["uint8"]["input"]["dtype"] == "uint8" and models["uint8"]["input"]["shape"][1:] == [12, 12, 3]
        assert models["uint8"]["eval_samples"] == models["float"]["eval_samples"]
        assert abs(models["uint8"]["accuracy"] - models["float"]["accuracy"]) <= 1 - MIN_AGREEMENT
        assert "pixels" not in models["uint8"]


def test_input_uint8_on_a_run_without_8bit_images_is_one_error_line(demo_run, tmp_path):
    out = tmp_path / "bundle"
    result = run_cli("export", demo_run, "--out", out, "--input", "uint8")   # digits: float 0..16, no pixels
    assert_user_error(result, "--input uint8 needs a run trained on 8-bit images")
    assert "hint: export with --input float" in result.stderr
    assert not out.exists() and not (demo_run / "bundle").exists()


def test_the_predictor_feeds_the_uint8_file_the_frame_itself(pixel_bundles):
    from edgekd import Predictor
    from edgekd.core.bundle import load_eval_npz

    bundle = pixel_bundles["uint8"]
    p = Predictor(bundle)
    assert p.entry["file"] == "student.int8.tflite" and p.contract.pixels
    x, _ = load_eval_npz(bundle / "eval.npz")
    pre = json.loads((bundle / "manifest.json").read_text())["preprocessing"]
    frames = to_pixels(pre, x, "NHWC")
    np.testing.assert_array_equal(p.preprocess(frames), frames)           # no float work before the model
    direct = p.runtime.predict(frames)
    for given in (frames, x, list(frames)):                    # a batch of frames, eval samples, one frame each
        np.testing.assert_array_equal([q.classes[0] for q in p.predict(given)], direct)
    gray = list(frames[:5].mean(axis=-1).astype(np.uint8))     # gray frames, converted to RGB as training would
    assert len(p.predict(gray)) == 5


def test_one_frame_takes_the_lean_path_to_the_same_numbers(pixel_bundles):
    """predict(frame) of one frame at the model's size skips the general path's checks and copies
    (Predictor._one_frame): the runtime must get the very same input, float-input (a table lookup) and
    camera-ready file alike, RGB here (gray: tests/test_predict.py)."""
    from edgekd import Predictor
    from edgekd.core.bundle import load_eval_npz

    for values, bundle in pixel_bundles.items():
        p = Predictor(bundle)
        x, _ = load_eval_npz(bundle / "eval.npz")
        frames = to_pixels(json.loads((bundle / "manifest.json").read_text())["preprocessing"], x[:10], "NHWC")
        for frame in frames:
            lean = p._one_frame(frame)
            assert lean is not None and lean.flags.c_contiguous, values
            np.testing.assert_array_equal(lean, p._model_input(frame[None]))
            np.testing.assert_array_equal(p.logits(frame), p.logits(frame[None]))
