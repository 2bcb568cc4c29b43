"""The runtime layer: opened by suffix, int8 quantize/dequantize with the model's own scale, errors."""
from __future__ import annotations

import numpy as np
import pytest

from edgekd.errors import DataError, RuntimeBackendError
from edgekd.runtimes import RUNTIMES, open_model, runtime_for
from edgekd.runtimes.base import TensorInfo, UnsupportedBatch, dequantize, quantize
from edgekd.runtimes.onnx import resolve_providers
from test_bench import USE_DEMO_BUNDLE, own_bundle


@pytest.fixture(scope="module")
def bundle(request, tmp_path_factory):
    if USE_DEMO_BUNDLE:
        return request.getfixturevalue("demo_bundle")
    return own_bundle(tmp_path_factory)


@pytest.fixture(scope="module")
def eval_x(bundle):
    with np.load(bundle / "eval.npz") as d:
        return d["x"].astype(np.float32)[:16]


def test_quantize_uses_scale_and_zero_point_and_clips():
    info = TensorInfo("x", [1, 4], "int8", scale=0.5, zero_point=-3)
    q = quantize(np.array([[0.0, 1.0, 1000.0, -1000.0]], np.float32), info)
    assert q.dtype == np.int8 and q.tolist() == [[-3, -1, 127, -128]]
    assert dequantize(np.array([-3, -1], np.int8), info).tolist() == [0.0, 1.0]
    u = TensorInfo("x", [1], "uint8", scale=0.1, zero_point=128)
    assert quantize(np.array([-100.0, 0.0], np.float32), u).tolist() == [0, 128]


def test_suffix_picks_the_runtime_and_unknown_names_fail_with_the_closest():
    assert runtime_for("a/student.int8.tflite") == "tflite" and runtime_for("t.ONNX") == "onnxruntime"
    assert runtime_for("model.bin", "ort") == "onnxruntime" and "litert" in RUNTIMES
    with pytest.raises(RuntimeBackendError, match="unknown runtime 'onnxruntim'") as e:
        runtime_for("m.onnx", "onnxruntim")
    assert "did you mean 'onnxruntime'" in e.value.hint
    with pytest.raises(RuntimeBackendError, match="unknown model file suffix '.pb'"):
        runtime_for("m.pb")


def test_tflite_int8_runtime(bundle, eval_x):
    rt = open_model(bundle / "student.int8.tflite", threads=1)
    assert rt.backend == "tflite" and rt.module == "ai_edge_litert" and rt.version
    assert rt.input_dtype == np.int8 and rt.input.quantized and rt.output.quantized
    assert rt.delegate in ("XNNPACK", None) and rt.details["delegated_nodes"] is not None
    prepared = rt.prepare(eval_x[:1])
    assert prepared.dtype == np.int8
    expected = np.clip(np.rint(eval_x[:1] / rt.input.scale) + rt.input.zero_point, -128, 127)
    assert np.array_equal(prepared, expected.astype(np.int8))
    raw = rt.fetch(rt.bind(prepared)())
    assert raw.dtype == np.int8
    logits = rt.postprocess(raw)
    assert logits.dtype == np.float32
    assert np.allclose(logits, (raw.astype(np.float32) - rt.output.zero_point) * rt.output.scale)
    assert np.array_equal(rt.run(eval_x[:1]), logits)
    preds = rt.predict(eval_x)
    assert preds.shape == (16,)
    assert np.array_equal(preds, [np.argmax(rt.run(eval_x[i:i + 1])) for i in range(16)])


def test_onnx_runtime_threads_providers_and_dynamic_batch(bundle, eval_x):
    rt = open_model(bundle / "teacher.onnx", threads=2)
    assert rt.backend == "onnxruntime" and rt.providers[-1] == "CPUExecutionProvider"
    assert rt.details["intra_op_num_threads"] == 2 and rt.input_dtype == np.float32
    out = rt.run(eval_x[:4]) if rt.fixed_batch is None else rt.run(eval_x[:1])
    assert out.dtype == np.float32 and out.shape[-1] == 10
    if rt.fixed_batch is None:
        assert np.allclose(rt.run(eval_x[:4])[1], rt.run(eval_x[1:2])[0], atol=1e-5)
    assert np.array_equal(rt.predict(eval_x, batch=5), rt.predict(eval_x, batch=16))


def test_fixed_batch_and_wrong_shapes(bundle, eval_x):
    rt = open_model(bundle / "student.int8.tflite")
    if rt.fixed_batch:
        try:
            rt.set_batch(8)
        except UnsupportedBatch as exc:
            assert "fixed batch" in exc.message
        assert rt.run(eval_x[:1]).shape[0] == 1        # still usable after a refused resize
    with pytest.raises(DataError, match="expects input"):
        rt.check_sample_shape((64,))
    rt.check_sample_shape(eval_x.shape[1:])


def test_providers_resolution():
    assert resolve_providers(None, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    avail = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(None, avail) == avail
    assert resolve_providers(["cuda"], avail) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(RuntimeBackendError, match="unknown onnxruntime execution provider"):
        resolve_providers(["cuda"], ["CPUExecutionProvider"])


def test_corrupt_files_are_user_errors(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(RuntimeBackendError, match="onnxruntime cannot load"):
        open_model(bad)
    tfl = tmp_path / "x.tflite"
    tfl.write_bytes(b"abc")
    with pytest.raises(RuntimeBackendError, match="not a TFLite flatbuffer"):
        open_model(tfl)
    with pytest.raises(RuntimeBackendError, match="not found"):
        open_model(tmp_path / "missing.onnx")
