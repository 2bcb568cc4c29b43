"""--keep-float: the named layers of an int8 file stay float, everything else stays int8, and the bundle
says the file is not full-integer. The demo student is the toy CNN (features.0-2: depthwise conv block;
features.4-6: conv block; output: the classifier); both formats' reports name layers so."""
from __future__ import annotations

import json

import pytest

import edgekd
from edgekd.core.errors import ConfigError, ExportError
from edgekd.exporters.layer_error import readable_tflite_name
from edgekd.exporters.tflite import check_tflite, describe_tflite
from edgekd.core.schema.export import ExportReport
from edgekd.core.schema.manifest import Manifest
from conftest import assert_user_error, run_cli_here

KEPT = "features.4-6"


def _documents(bundle):
    report = ExportReport.from_json(json.loads((bundle / "export.json").read_text()), "export.json")
    manifest = Manifest.from_json(json.loads((bundle / "manifest.json").read_text()), "manifest.json")
    return report.models[0], manifest.models[0]


@pytest.fixture(scope="module")
def kept_tflite(demo_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("keep_float") / "bundle"
    edgekd.export(demo_run, out=out, formats=["tflite-int8"], roles=["student"], keep_float=[KEPT])
    return out


def _float_layers(path):
    info = describe_tflite(path)
    return {readable_tflite_name(name): name for _, name, dtype, shape in info["activations"] + info["constants"]
            if dtype == "float32" and len(shape) > 1}


def test_kept_tflite_layer_is_float_and_the_rest_int8(kept_tflite):
    path = kept_tflite / "student.int8.tflite"
    floats = _float_layers(path)
    assert KEPT in floats                              # the conv block's weights and output are float
    assert not {"features.0-2", "output"} & set(floats)  # the other layers' are not
    info = describe_tflite(path)
    assert info["inputs"] == ["int8"] and info["outputs"] == ["int8"]
    assert "QUANTIZE" in info["ops"] and "DEQUANTIZE" in info["ops"]
    row, entry = _documents(kept_tflite)
    assert row.details["full_integer"] is False and row.details["kept_float"] == [KEPT]
    assert entry.full_integer is False and entry.kept_float == [KEPT]
    assert row.parity["top1_agreement"] > 0.9


def test_dtype_check_allows_float_in_kept_layers_only(kept_tflite):
    path = kept_tflite / "student.int8.tflite"
    kept = {name for layer, name in _float_layers(path).items() if layer == KEPT}
    check_tflite(path, "int8", "student", kept)        # float only around the kept layer: accepted
    with pytest.raises(ExportError, match="ops left in float32: CONV_2D"):
        check_tflite(path, "int8", "student")          # the same file with nothing kept: refused
    other = {name for _, name, _, _ in describe_tflite(path)["activations"]
             if readable_tflite_name(name) == "features.0-2"}
    assert other
    with pytest.raises(ExportError, match="features"):
        check_tflite(path, "int8", "student", other)   # exempting another layer does not excuse this one


def test_kept_onnx_layer_is_float(demo_run, tmp_path):
    import onnx

    from edgekd.exporters.onnx import check_onnx_int8

    edgekd.export(demo_run, out=tmp_path / "b", formats=["onnx-int8"], roles=["student"], keep_float=[KEPT])
    model = onnx.load(str(tmp_path / "b" / "student.int8.onnx"))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert [c.input[1] in dequantized for c in convs] == [True, False]   # the second conv (features.4's) is float
    with pytest.raises(ExportError, match="not int8"):
        check_onnx_int8(model, "student")
    row, entry = _documents(tmp_path / "b")
    assert row.details["kept_float"] == [KEPT] and entry.kept_float == [KEPT]
    assert entry.full_integer is False


def test_the_pooling_after_a_kept_onnx_layer_stays_float_with_it(demo_run, tmp_path):
    """Keeping the first conv block float leaves the MaxPool reading it float too (onnxruntime gives a
    pooling its input's grid, and a float layer has none): part of the kept region, not a refused island."""
    edgekd.export(demo_run, out=tmp_path / "b", formats=["onnx-int8"], roles=["student"], keep_float=["features.0-2"])
    row, entry = _documents(tmp_path / "b")
    assert row.details["float_ops"].get("MaxPool") == 1 and entry.kept_float == ["features.0-2"]


def test_an_onnx_file_without_module_paths_is_named_by_tensor(demo_run, tmp_path):
    """A brought ONNX file has no exporter's name scopes: its layers keep their tensor names, and the
    tensor name covers what the module path does in edgekd's own export."""
    import onnx

    from edgekd.exporters.layer_error import kept_tensors, onnx_layer_nodes

    edgekd.export(demo_run, out=tmp_path / "b", formats=["onnx"], roles=["student"])
    named = onnx_layer_nodes(tmp_path / "b" / "student.onnx")
    model = onnx.load(str(tmp_path / "b" / "student.onnx"))
    for node in model.graph.node:
        del node.metadata_props[:]
    onnx.save(model, str(tmp_path / "brought.onnx"))
    bare = onnx_layer_nodes(tmp_path / "brought.onnx")
    assert {"features.0-2", "features.4-6", "output"} <= set(named) and "relu_1" not in named
    assert {"relu", "relu_1", "logits"} <= set(bare) and not {KEPT, "output"} & set(bare)
    assert kept_tensors(["relu_1"], bare, "onnx-int8", "student")["relu_1"] == \
        kept_tensors([KEPT], named, "onnx-int8", "student")[KEPT]      # the conv and its ReLU, by either name


def test_unknown_layer_names_the_closest_and_writes_nothing(demo_run, tmp_path):
    with pytest.raises(ExportError, match="no layer 'features.4-7'") as caught:
        edgekd.export(demo_run, out=tmp_path / "b", formats=["tflite-int8"], roles=["student"],
                      keep_float=["features.4-7"])
    assert "features.4-6" in caught.value.hint
    assert not (tmp_path / "b").exists()


def test_keep_float_needs_an_int8_format(demo_run, tmp_path):
    with pytest.raises(ConfigError, match="none of the formats exported"):
        edgekd.export(demo_run, out=tmp_path / "b", formats=["tflite", "onnx"], keep_float=[KEPT])
    with pytest.raises(ConfigError, match="list of names"):
        edgekd.export(demo_run, out=tmp_path / "b", formats=["tflite-int8"], keep_float=KEPT)
    assert_user_error(run_cli_here("export", demo_run, "--out", tmp_path / "c", "--formats", "tflite",
                              "--keep-float", KEPT), "--keep-float")
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
