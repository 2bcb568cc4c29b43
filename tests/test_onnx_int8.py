"""onnx-int8: the activation type (--int8-activations u8|s8|auto) in the file and in export.json, the ops
left in float recorded, a float island where onnxruntime has an int8 kernel refused, spatial means
quantized as GlobalAveragePool, bad values refused.
A MobileNetV3-Small (hard-swish, squeeze-excitation, residual adds: the ops quantizers leave float most
often) exported for real through the exporter (random weights: the graph is what is checked), and one
small run folder exported by export_run for export.json and the CLI."""
from __future__ import annotations

import platform
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from conftest import assert_user_error, run_cli  # noqa: E402
from test_export import make_run  # noqa: E402
from test_zoo import _calibrated  # noqa: E402

from edgekd.core.errors import ConfigError, ExportError  # noqa: E402
from edgekd.exporters import export_run  # noqa: E402
from edgekd.exporters.onnx import (INT8_KERNEL_OPS, check_onnx_int8, export_onnx_int8, int8_activations,  # noqa: E402
                                   pooling_rewritten)
from edgekd.exporters.run import ExportContext, ExportOptions  # noqa: E402
from edgekd.exporters.source import Source  # noqa: E402
from edgekd.core.schema.export import EXPORT_REPORT, ExportReport  # noqa: E402
from edgekd.core.schema.jsonfile import read_json  # noqa: E402

SHAPE = (1, 8, 8)
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
# measured: onnxruntime 1.32's CPU EP has no int8 kernel for these, so they run in float between DQ and Q
# (the squeeze-excitation means do: onnx-int8 quantizes them as GlobalAveragePool)
V3_FLOAT_OPS = {"HardSigmoid", "HardSwish"}
CORRELATION_SLACK = 0.02  # int8 with pools against fp32, next to int8 with float means


def v3_source(work: Path, shape: tuple[int, ...]) -> tuple[Source, np.ndarray]:
    """A MobileNetV3-Small source for the exporter (random weights: the graph is what is checked) and
    16 calibration samples."""
    calibration = np.random.default_rng(1).normal(0, 1, (16, *shape)).astype(np.float32)
    return Source("student", work, {"input": {"shape": list(shape)}}, "torch",
                  module=_calibrated("mobilenetv3:variant=small,width=0.25", shape)), calibration


@pytest.fixture(scope="module")
def v3(tmp_path_factory) -> dict:
    """"u8"/"s8" -> (file, the exporter's details); "fp32" -> the fp32 ONNX file they were quantized from."""
    work = tmp_path_factory.mktemp("v3")
    source, calibration = v3_source(work, SHAPE)
    files = {}
    for choice in ("u8", "s8"):       # one fp32 export: the source caches it
        path = work / f"{choice}.int8.onnx"
        files[choice] = (path, export_onnx_int8(ExportContext(work, None, calibration, choice), source, path))
    files["fp32"] = source.cache["onnx"]
    return files


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("onnx_int8") / "run", "cnn:width=4,depth=2", SHAPE, classes=4,
                    n_train=64, n_eval=24, n_calibration=32)


def activation_and_weight_dtypes(path: Path) -> tuple[set, set]:
    """(dtypes of the activations' QuantizeLinear zero points, dtypes of the weights behind a DequantizeLinear)."""
    model = onnx.load(str(path))
    init = {t.name: t.data_type for t in model.graph.initializer}
    activations = {init[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    weights = {init[n.input[0]] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in init
               and init[n.input[0]] != onnx.TensorProto.INT32}     # int32: the biases
    return activations, weights


def test_activation_type_in_the_file(v3):
    for choice, dtype, name in (("u8", onnx.TensorProto.UINT8, "uint8"), ("s8", onnx.TensorProto.INT8, "int8")):
        path, details = v3[choice]
        assert activation_and_weight_dtypes(path) == ({dtype}, {onnx.TensorProto.INT8}), choice  # int8 weights
        assert details["activation_type"] == choice and details["activations"] == f"{name} static"
        assert details["activation_choice"] == f"--int8-activations {choice}"


def test_ops_left_in_float_are_recorded_and_none_has_an_int8_kernel(v3):
    for choice in ("u8", "s8"):
        path, details = v3[choice]
        # at 8x8 the head's map is 1x1 and its mean a Squeeze of the float HardSwish before it (nothing int8 to move)
        assert V3_FLOAT_OPS <= set(details["float_ops"]) <= V3_FLOAT_OPS | {"Squeeze"}, details["float_ops"]
        assert not set(details["float_ops"]) & INT8_KERNEL_OPS
        assert check_onnx_int8(onnx.load(str(path)), "student") == details["float_ops"]


def test_export_json_records_the_choice_auto_by_default(cnn_run, tmp_path):
    bundle = tmp_path / "bundle"
    export_run(cnn_run, out=bundle, formats=["onnx-int8"], roles=["student"], calibration_samples=16)
    row = ExportReport.from_json(read_json(bundle / EXPORT_REPORT, "export report", ConfigError), "export.json").models[0]
    assert row.details["activation_type"] == ("u8" if X86 else "s8")
    assert row.details["activation_choice"].startswith(f"auto: exported on {platform.machine().lower()}")
    assert row.details["float_ops"] == {}           # MaxPool runs in int8, the global mean as a GlobalAveragePool
    assert row.details["pools_rewritten"] == 1
    dtype = onnx.TensorProto.UINT8 if X86 else onnx.TensorProto.INT8
    assert activation_and_weight_dtypes(bundle / row.file) == ({dtype}, {onnx.TensorProto.INT8})
    assert row.parity["passed"] and row.parity["samples"] == 24     # it loads and runs in onnxruntime


def quantize_as_is(fp32: Path, out: Path, x: np.ndarray, **options) -> Path:
    """``fp32`` quantized by onnxruntime directly (QDQ, per-channel int8 weights), not by the exporter."""
    from onnxruntime.quantization import QuantType, quantize_static

    batches = iter([{"input": x}])

    class Reader:
        def get_next(self):
            return next(batches, None)

    quantize_static(str(fp32), str(out), Reader(), per_channel=True, weight_type=QuantType.QInt8, **options)
    return out


def test_a_float_island_where_onnxruntime_has_an_int8_kernel_is_refused(v3, tmp_path):
    """Quantizing only Conv and Gemm leaves the residual Adds and the SE Muls float: int8 in name only."""
    x = np.random.default_rng(0).normal(0, 1, (8, 1, 8, 8)).astype(np.float32)
    partial = quantize_as_is(v3["fp32"], tmp_path / "partial.onnx", x, op_types_to_quantize=["Conv", "Gemm"])
    with pytest.raises(ExportError, match="in float that onnxruntime runs in int8: .*(Add|Mul)"):
        check_onnx_int8(onnx.load(str(partial)), "student")


POOLED_SHAPE = (3, 32, 32)     # nine squeeze-excitation means (8x8 down to 1x1) and the head's: ten ReduceMean


@pytest.fixture(scope="module")
def pooled(tmp_path_factory) -> dict:
    """MobileNetV3-Small at 3x32x32 exported for real: its fp32 file, its onnx-int8 file and details."""
    work = tmp_path_factory.mktemp("pooled")
    source, calibration = v3_source(work, POOLED_SHAPE)
    path = work / "student.int8.onnx"
    details = export_onnx_int8(ExportContext(work, None, calibration, "u8"), source, path)
    return {"fp32": source.cache["onnx"], "int8": path, "details": details, "x": calibration}


def _op_counts(path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def test_spatial_means_are_quantized_as_global_average_pools(pooled):
    assert _op_counts(pooled["fp32"])["ReduceMean"] == 10    # the exported fp32 file keeps the exporter's graph
    int8 = _op_counts(pooled["int8"])
    assert "ReduceMean" not in int8 and int8["GlobalAveragePool"] == 10 == pooled["details"]["pools_rewritten"]
    assert set(pooled["details"]["float_ops"]) == V3_FLOAT_OPS     # the head's Flatten moves int8 values
    assert check_onnx_int8(onnx.load(str(pooled["int8"])), "student") == pooled["details"]["float_ops"]


def test_onnxruntime_runs_the_pools_in_int8(pooled, tmp_path):
    """What onnxruntime makes of the file (its optimized graph): every pool fused into its int8 kernel."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(pooled["int8"]), options, providers=["CPUExecutionProvider"])
    optimized = _op_counts(tmp_path / "optimized.onnx")
    assert optimized["QLinearGlobalAveragePool"] == 10 and not {"GlobalAveragePool", "ReduceMean"} & set(optimized)


def test_a_spatial_mean_left_in_float_is_refused(pooled, tmp_path):
    """The exporter's graph quantized as it is: its ReduceMeans run in float, where a pool would not."""
    means = quantize_as_is(pooled["fp32"], tmp_path / "means.onnx", pooled["x"])
    with pytest.raises(ExportError, match="in float that onnxruntime runs in int8: 10 ReduceMean"):
        check_onnx_int8(onnx.load(str(means)), "student")


def test_int8_with_pools_agrees_with_fp32_as_with_float_means(pooled, tmp_path):
    """Random weights: int8 noise grows layer by layer (test_zoo's correlation floor), so the pools are
    held to the file with float means, quantized alike, as the reference."""
    from onnxruntime.quantization import QuantType

    from edgekd.exporters.parity import run_file

    means = quantize_as_is(pooled["fp32"], tmp_path / "means.onnx", pooled["x"], activation_type=QuantType.QUInt8,
                           extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    x = np.random.default_rng(7).normal(0, 1, (64, *POOLED_SHAPE)).astype(np.float32)
    fp32 = run_file(pooled["fp32"], x)[0]
    pools, floats = (np.corrcoef(run_file(path, x)[0].ravel(), fp32.ravel())[0, 1] for path in (pooled["int8"], means))
    assert pools >= 0.5 and pools >= floats - CORRELATION_SLACK, (pools, floats)


@pytest.mark.parametrize("opset", [13, 20], ids=["axes-attribute", "axes-input"])
def test_the_rewrite_keeps_the_numbers_and_other_means(tmp_path, opset):
    """Both forms (keepdims 1 and 0, axes written negative) become pools, a mean over channels stays,
    the rewritten file gives the same numbers in onnxruntime and the original file is untouched."""
    from onnx import TensorProto, helper, numpy_helper

    from edgekd.exporters.parity import run_file

    axes = {"se": [2, 3], "pooled": [-1, -2], "logits": [1]}     # by output

    def mean(source: str, out: str, keepdims: int):
        if opset < 18:      # the axes were an attribute before opset 18
            return helper.make_node("ReduceMean", [source], [out], name=out, keepdims=keepdims, axes=axes[out])
        return helper.make_node("ReduceMean", [source, f"{out}_axes"], [out], name=out, keepdims=keepdims)

    nodes = [mean("input", "se", 1), helper.make_node("Mul", ["input", "se"], ["gated"], name="gate"),
             mean("gated", "pooled", 0), mean("pooled", "logits", 1)]
    init = [numpy_helper.from_array(np.array(v, np.int64), f"{k}_axes") for k, v in axes.items()] if opset >= 18 else []
    graph = helper.make_graph(nodes, "means", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 5, 7])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 1])], init)
    original = tmp_path / "means.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10), str(original))
    x = np.random.default_rng(0).normal(1, 1, (8, 3, 5, 7)).astype(np.float32)
    rewritten, count = pooling_rewritten(original, x, "student")
    assert count == 2 and rewritten != original and _op_counts(original) == Counter(ReduceMean=3, Mul=1)
    assert _op_counts(rewritten) == Counter(GlobalAveragePool=2, Flatten=1, Mul=1, ReduceMean=1)
    assert {t.name for t in onnx.load(str(rewritten)).graph.initializer} == ({"logits_axes"} if init else set())
    np.testing.assert_allclose(run_file(rewritten, x)[0], run_file(original, x)[0], rtol=1e-5)
    assert pooling_rewritten(rewritten, x, "student") == (rewritten, 0)      # nothing left to rewrite


def test_auto_follows_the_exporting_machine_and_says_so(monkeypatch):
    for machine, expected in (("x86_64", "u8"), ("AMD64", "u8"), ("aarch64", "s8"), ("armv7l", "s8")):
        monkeypatch.setattr(platform, "machine", lambda m=machine: m)
        chosen, why = int8_activations(None)
        assert chosen == expected and why.startswith("auto: exported on") and "--int8-activations" in why
        assert int8_activations("auto")[0] == expected
    assert int8_activations("s8") == ("s8", "--int8-activations s8")     # asked for beats the machine


def test_bad_value_is_refused_with_the_closest_name():
    with pytest.raises(ConfigError, match="unknown int8 activation type 'u9'") as caught:
        ExportOptions(int8_activations="u9").check_numbers()
    assert "did you mean 'u8'" in caught.value.hint


@pytest.mark.parametrize("formats", [None, ["onnx", "tflite-int8"]], ids=["default-set", "no-onnx-int8"])
def test_the_option_is_refused_when_no_onnx_int8_is_exported(cnn_run, tmp_path, formats):
    with pytest.raises(ConfigError, match="int8 activation type \\(s8\\) was given.*would be ignored") as caught:
        export_run(cnn_run, out=tmp_path / "bundle", formats=formats, int8_activations="s8")
    assert "onnx-int8" in caught.value.hint and not (tmp_path / "bundle").exists()


def test_cli_bad_value_is_one_error_line(cnn_run, tmp_path):
    result = run_cli("export", cnn_run, "--out", tmp_path / "b", "--formats", "onnx-int8", "--int8-activations", "s9")
    assert_user_error(result, "unknown int8 activation type 's9'")
    assert not (tmp_path / "b").exists()
