"""--keep-float auto: the report's worst layers kept float, one more at a time, until the int8 file's
accuracy drop on labelled training samples is within --max-int8-drop. Real exports of the demo run
(the toy CNN: features.0-2, features.4-6, output); the drops are recomputed here from the written
file in its runtime."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from rich.console import Console

import edgekd
from edgekd.core.errors import BundleError, ConfigError, DataError
from edgekd.exporters.keep_auto import EXACT_OPS, MIN_SAMPLES, load_search
from edgekd.exporters.source import calibration_indices, calibration_pool, load_source, reference_logits
from edgekd.app.render.export import print_export_summary
from edgekd.device.runtimes import open_model
from edgekd.core.schema.export import ExportReport
from edgekd.core.schema.manifest import Manifest
from conftest import assert_user_error, run_cli_here

ONE_SAMPLE = 1   # calibrated on one sample, every activation range is too narrow: int8 loses points


def _documents(bundle, index=0):
    report = ExportReport.from_json(json.loads((bundle / "export.json").read_text()), "export.json")
    manifest = Manifest.from_json(json.loads((bundle / "manifest.json").read_text()), "manifest.json")
    return report.models[index], manifest.models[index]


def _drop(run, path, calibration_samples: int) -> tuple[float, int]:
    """(accuracy points the file loses against PyTorch, samples) on auto's labelled training samples."""
    student = load_source(run, "student")
    search = load_search(run, student.input_shape, calibration_samples, 0.5)
    reference = reference_logits(student, search.x).argmax(1)
    int8 = open_model(path, threads=1, providers=["cpu"]).logits(search.x).argmax(1)
    return 100 * float((reference == search.y).mean() - (int8 == search.y).mean()), len(search.y)


def test_the_samples_are_labelled_training_samples_that_did_not_calibrate(demo_run):
    shape = load_source(demo_run, "student").input_shape
    x, y = calibration_pool(demo_run, shape)
    search = load_search(demo_run, shape, 256, 0.5)
    calibrating = {row.tobytes() for row in x[calibration_indices(y, 256)]}
    assert len(search.y) >= MIN_SAMPLES and not calibrating & {row.tobytes() for row in search.x}
    with np.load(demo_run / "eval.npz") as held_out:      # never the eval split
        assert not {row.tobytes() for row in held_out["x"].astype(np.float32)} & {r.tobytes() for r in search.x}
    pairs = {row.tobytes(): label for row, label in zip(x, y)}
    assert all(pairs[row.tobytes()] == label for row, label in zip(search.x, search.y))


def test_a_file_within_the_target_stays_full_integer(demo_run, tmp_path):
    edgekd.export(demo_run, out=tmp_path / "b", formats=["tflite-int8", "onnx-int8"], roles=["student"],
                  keep_float=["auto"], max_int8_drop=100)
    for index, name in enumerate(("student.int8.tflite", "student.int8.onnx")):
        row, entry = _documents(tmp_path / "b", index)
        auto = row.details["keep_float_auto"]
        assert auto["met"] is True and auto["kept_float"] == [] and len(auto["steps"]) == 1
        assert row.details["kept_float"] == [] and entry.kept_float == []
        drop, samples = _drop(demo_run, tmp_path / "b" / name, 256)
        assert auto["samples"] == samples and math.isclose(auto["drop_points"], drop, abs_tol=1e-6)
    assert _documents(tmp_path / "b", 0)[1].full_integer is True      # the TFLite file: int8 in and out
    damaged = json.loads((tmp_path / "b" / "export.json").read_text())
    damaged["models"][0]["details"]["keep_float_auto"]["met"] = "yes"
    with pytest.raises(BundleError, match="keep_float_auto.met"):
        ExportReport.from_json(damaged, "export.json")


def test_layers_are_kept_float_worst_first_until_the_target_holds(demo_run, tmp_path):
    common = dict(formats=["tflite-int8"], roles=["student"], calibration_samples=ONE_SAMPLE)
    edgekd.export(demo_run, out=tmp_path / "full", **common)
    report = edgekd.export(demo_run, out=tmp_path / "auto", keep_float=["auto"], max_int8_drop=0, **common)
    full, _ = _documents(tmp_path / "full")
    row, entry = _documents(tmp_path / "auto")
    auto = row.details["keep_float_auto"]
    steps, passed = auto["steps"], [p["layer"] for p in auto["passed_over"]]
    assert steps[0]["drop_points"] > 0 and len(steps) > 1         # full-integer misses 0: layers were tried
    # the order of the full-integer file's report, lowest SNR first, one more layer each step
    ranked = [layer["layer"] for layer in sorted(full.layer_error["layers"], key=lambda layer: layer["snr_db"])
              if layer["op"] not in EXACT_OPS]
    tried = [name for name in ranked[:len(steps) - 1 + len(passed)] if name not in passed]
    assert [step["kept_float"] for step in steps] == [tried[:i] for i in range(len(steps))]
    # the file written is the step with the smallest drop (the fewest layers on a tie), measured for real
    best = min(steps, key=lambda step: step["drop_points"])
    assert auto["kept_float"] == best["kept_float"] == row.details["kept_float"] == entry.kept_float
    assert auto["met"] is (best["drop_points"] <= 0) and entry.full_integer is (not best["kept_float"])
    drop, _ = _drop(demo_run, tmp_path / "auto" / "student.int8.tflite", ONE_SAMPLE)
    assert math.isclose(auto["drop_points"], drop, abs_tol=1e-6) and drop < steps[0]["drop_points"]
    # re-quantized with the full-integer file's ranges: the same file as naming those layers
    edgekd.export(demo_run, out=tmp_path / "named", keep_float=best["kept_float"] or None, **common)
    assert (tmp_path / "named" / "student.int8.tflite").read_bytes() == \
        (tmp_path / "auto" / "student.int8.tflite").read_bytes()
    console = Console(record=True, width=400)
    print_export_summary(report, console)
    line = next(line for line in console.export_text().splitlines() if "--keep-float auto" in line)
    assert ("missed --max-int8-drop 0" in line) is (not auto["met"]) and f"{auto['drop_points']:.2f} pt" in line


@pytest.mark.parametrize("choices, fragment", [
    (dict(max_int8_drop=0.5), "without --keep-float auto"),
    (dict(keep_float=["features.4-6"], max_int8_drop=0.5), "without --keep-float auto"),
    (dict(keep_float=["auto"], max_int8_drop=-0.1), "from 0 to 100"),
    (dict(keep_float=["auto"], max_int8_drop=100.5), "from 0 to 100"),
    (dict(keep_float=["auto"], max_int8_drop=float("nan")), "from 0 to 100"),
    (dict(keep_float=["auto"], max_int8_drop=True), "from 0 to 100"),
    (dict(keep_float=["auto", "output"]), "cannot be given with layer names (output)"),
    (dict(keep_float=["auto"], formats=["onnx"]), "none of the formats exported"),
])
def test_bad_auto_options_fail_before_anything_is_written(demo_run, tmp_path, choices, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        edgekd.export(demo_run, out=tmp_path / "b", **{"formats": ["tflite-int8"], **choices})
    assert not (tmp_path / "b").exists()


def test_the_run_must_leave_labelled_samples_beside_calibration(demo_run, tmp_path):
    _, y = calibration_pool(demo_run, load_source(demo_run, "student").input_shape)
    with pytest.raises(DataError, match=f"{MIN_SAMPLES - 1} are left") as caught:
        edgekd.export(demo_run, out=tmp_path / "b", formats=["tflite-int8"], keep_float=["auto"],
                      calibration_samples=len(y) - MIN_SAMPLES + 1)
    assert f"lower --calibration-samples to {len(y) - MIN_SAMPLES}" in caught.value.hint
    old = tmp_path / "old"    # a run from before calibration.npz kept its labels
    shutil.copytree(demo_run, old)
    with np.load(old / "calibration.npz") as data:
        np.savez(old / "calibration.npz", x=data["x"])
    with pytest.raises(DataError, match="needs labels"):
        edgekd.export(old, out=tmp_path / "c", formats=["tflite-int8"], keep_float=["auto"])
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_cli_refuses_a_drop_without_auto(demo_run, tmp_path):
    assert_user_error(run_cli_here("export", demo_run, "--out", tmp_path / "b", "--formats", "tflite-int8",
                                   "--max-int8-drop", "0.5"), "--max-int8-drop")
    assert_user_error(run_cli_here("export", demo_run, "--out", tmp_path / "b", "--formats", "tflite-int8",
                                   "--keep-float", "auto", "--max-int8-drop", "-1"), "from 0 to 100")
    assert not (tmp_path / "b").exists()
