"""The runtime layer on real files: every registry row, ``logits`` (batching, a fixed batch's
padding, int8 (de)quantization with the model's own scale and zero point), agreement with PyTorch,
and the errors. The files are the shared demo run's and bundle's (conftest.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgekd.core.errors import DataError, RuntimeBackendError
from edgekd.device.bench.text import RUNTIME_PAIRS
from edgekd.exporters.formats import FORMATS, get_format
from edgekd.device.runtimes import ROWS, RUNTIMES, canonical_runtime, open_model, runtime_for
from edgekd.device.runtimes.base import TensorInfo, UnsupportedBatch, dequantize, quantize
from edgekd.device.runtimes.onnx import resolve_providers

ROW_IDS = [row.name for row in ROWS]


@pytest.fixture(scope="module")
def eval_data(demo_bundle):
    with np.load(demo_bundle / "eval.npz") as d:
        return d["x"].astype(np.float32), d["y"].astype(np.int64)


@pytest.fixture(scope="module")
def eval_x(eval_data):
    return eval_data[0][:16]


def bundle_files(bundle, row) -> list:
    """The bundle's model files that ``row``'s runtime runs (the manifest's own word)."""
    models = json.loads((bundle / "manifest.json").read_text())["models"]
    return [bundle / m["file"] for m in models if m["runtime"] == row.name]


@pytest.fixture(scope="module")
def demo_teacher(demo_run):
    torch = pytest.importorskip("torch")
    from edgekd.train.modelfile import load_model

    module, _ = load_model(demo_run / "teacher")
    return torch, module.eval()


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


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_a_row_names_its_runtime_everywhere(row):
    """Suffixes, aliases and formats of a row lead back to it; its packages are reported by device info."""
    from edgekd.device.bench.device import RUNTIME_PACKAGES

    assert row.suffixes and all(runtime_for(f"model{s}") == row.name for s in row.suffixes)
    assert all(canonical_runtime(name) == row.name for name in (row.name, *row.aliases))
    for fmt in filter(None, (row.export_format, row.int8_io_format)):
        assert get_format(fmt).runtime == row.name
    assert row.packages and set(row.packages) <= set(RUNTIME_PACKAGES)
    row.import_backend()                 # the worker's import before "rss before load"


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_a_row_opens_and_runs_its_bundle_files(row, demo_bundle, eval_x):
    files = bundle_files(demo_bundle, row)
    assert files, f"the demo bundle has no file for runtime {row.name}: export one of its formats by default"
    for path in files:
        row.check_file(path, path.name)                      # a good file passes bench's check
        rt = open_model(path, threads=1)
        assert rt.backend == row.name and rt.version and rt.threads == 1
        assert {"input", "output", "backend"} <= set(rt.info())
        logits = rt.logits(eval_x, batch=5)                  # 5 does not divide 16: a short last chunk
        assert logits.dtype == np.float32 and logits.shape == (16, 10)
        one_by_one = np.concatenate([rt.run(eval_x[i:i + 1]).reshape(1, -1) for i in range(16)])
        np.testing.assert_allclose(logits, one_by_one, atol=1e-5)
        assert np.array_equal(rt.predict(eval_x, batch=5), logits.argmax(1))
        assert rt.logits(eval_x[:0]).shape == (0, 10) and rt.predict(eval_x[:0]).shape == (0,)


def test_tflite_int8_runtime(demo_bundle, eval_x):
    rt = open_model(demo_bundle / "student.int8.tflite", threads=1)
    assert rt.backend == "tflite" and rt.module == "ai_edge_litert" and rt.version
    assert rt.input_dtype == np.int8 and rt.input.quantized and rt.output.quantized
    assert rt.delegate in ("XNNPACK", None) and rt.details["delegated_nodes"] is not None
    prepared = rt.prepare(eval_x[:1])
    assert prepared.dtype == np.int8
    raw = rt.fetch(rt.bind(prepared)())
    assert raw.dtype == np.int8
    assert np.array_equal(rt.run(eval_x[:1]), rt.postprocess(raw))


def test_int8_logits_are_dequantized_with_the_models_own_scale_and_zero_point(demo_bundle, eval_x):
    """By hand, beside the runtime: LiteRT's own interpreter, the file's quantization parameters."""
    from ai_edge_litert.interpreter import Interpreter

    path = demo_bundle / "student.int8.tflite"
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    (in_scale, in_zp), (out_scale, out_zp) = inp["quantization"], out["quantization"]
    assert in_scale > 0 and out_scale > 0
    expected = []
    for sample in eval_x:
        q = np.clip(np.round(sample[None] / np.float32(in_scale)) + in_zp, -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        raw = interp.get_tensor(out["index"]).astype(np.float32)
        expected.append(((raw - np.float32(out_zp)) * np.float32(out_scale)).reshape(-1))
    logits = open_model(path, threads=1).logits(eval_x)
    assert np.array_equal(logits, np.stack(expected))
    assert len(np.unique(logits)) > 10                     # real logits, not a constant


def test_onnx_runtime_threads_providers_and_dynamic_batch(demo_bundle, eval_x):
    rt = open_model(demo_bundle / "teacher.onnx", threads=2)
    assert rt.backend == "onnxruntime" and rt.providers[-1] == "CPUExecutionProvider"
    assert rt.details["intra_op_num_threads"] == 2 and rt.input_dtype == np.float32
    assert rt.fixed_batch is None                       # export writes a dynamic batch dimension
    out = rt.run(eval_x[:4])
    assert out.dtype == np.float32 and out.shape == (4, 10)
    np.testing.assert_allclose(out[1], rt.run(eval_x[1:2])[0], atol=1e-5)
    assert np.array_equal(rt.predict(eval_x, batch=5), rt.predict(eval_x, batch=16))


@pytest.mark.parametrize("fixed", [1, 3])
def test_a_fixed_batch_onnx_file_is_run_at_its_batch_and_padded(fixed, demo_teacher, demo_bundle, eval_x, tmp_path):
    """torch.onnx.export fixes the batch to the example's: logits pads the short last chunk and
    drops the padding, and the numbers are the dynamic-batch file's."""
    torch, teacher = demo_teacher
    path = tmp_path / f"teacher.batch{fixed}.onnx"
    torch.onnx.export(teacher, (torch.from_numpy(eval_x[:fixed]),), str(path), dynamo=True, external_data=False)
    rt = open_model(path, threads=1)
    assert rt.fixed_batch == fixed
    with pytest.raises(UnsupportedBatch, match="fixed batch size of"):
        rt.set_batch(fixed + 1)
    x = eval_x[:7]                                          # 7 = 2 × 3 + 1: one padded chunk for batch 3
    reference = open_model(demo_bundle / "teacher.onnx", threads=1).logits(x)
    logits = rt.logits(x)
    assert logits.shape == (7, 10)
    np.testing.assert_allclose(logits, reference, atol=1e-5)


def test_a_fixed_batch_tflite_file_refuses_another_batch_and_stays_usable(demo_bundle, eval_x):
    rt = open_model(demo_bundle / "student.int8.tflite")
    assert rt.fixed_batch == 1
    before = rt.run(eval_x[:1])
    with pytest.raises(UnsupportedBatch, match="fixed batch"):
        rt.set_batch(8)
    assert np.array_equal(rt.run(eval_x[:1]), before)      # still usable after a refused resize
    with pytest.raises(DataError, match="expects input"):
        rt.check_sample_shape((64,))
    rt.check_sample_shape(eval_x.shape[1:])


def test_logits_agree_with_pytorch(demo_run, demo_bundle, eval_data):
    """The demo run's student in PyTorch against its exported files, on the whole eval set."""
    torch = pytest.importorskip("torch")
    from edgekd.train.modelfile import load_model

    x, y = eval_data
    student, _ = load_model(demo_run / "student")
    with torch.no_grad():
        reference = student.eval()(torch.from_numpy(x)).numpy()
    fp32 = open_model(demo_bundle / "student.onnx", threads=1).logits(x)
    assert np.abs(fp32 - reference).max() <= 1e-4
    int8 = open_model(demo_bundle / "student.int8.tflite", threads=1).logits(x)
    assert (int8.argmax(1) == reference.argmax(1)).mean() >= 0.9
    assert abs((int8.argmax(1) == y).mean() - (reference.argmax(1) == y).mean()) <= 0.05


def test_parity_runs_a_file_in_its_runtime_and_keeps_the_io_fields(demo_bundle, eval_x):
    from edgekd.exporters.parity import run_file

    logits, ins, outs = run_file(demo_bundle / "student.onnx", eval_x)
    assert logits.shape == (16, 10) and ins == {"name": "input", "dtype": "float32", "scale": None,
                                                "zero_point": None}
    assert set(outs) == {"name", "dtype", "scale", "zero_point"}
    logits, ins, outs = run_file(demo_bundle / "student.int8.tflite", eval_x)
    assert logits.shape == (16, 10) and set(ins) == set(outs) == {"name", "dtype", "scale", "zero_point", "shape"}
    assert ins["dtype"] == "int8" and ins["scale"] > 0 and isinstance(ins["zero_point"], int)
    assert ins["shape"] == [1, *eval_x.shape[1:]] and outs["shape"] == [1, 10]


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


def test_every_runtime_rows_formats_are_export_formats_of_that_runtime():
    """bench's int8-vs-fp32 pairs and a single file's format come from the runtime rows: each format a
    row names must be an export format (FORMATS) that this runtime runs."""
    for row in ROWS:
        for name in filter(None, (row.export_format, row.int8_io_format, row.int8_format)):
            assert FORMATS.get(name).runtime == row.name, (row.name, name)
        if row.int8_format:
            assert FORMATS.get(row.int8_format).precision == "int8"
    assert [label for label, _, _ in RUNTIME_PAIRS] == [row.label or row.name for row in ROWS if row.int8_format]
