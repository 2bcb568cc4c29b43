"""Where int8 hurts: each int8 file's per-layer report (int8 output vs fp32 on calibration samples),
in export.json, on the terminal (worst few) and with ``edgekd export --explain`` (all).

The damaged model computes exactly what the trained student does in fp32 (one channel scaled up after a
ReLU, the next conv scaling it back), but its features.4 conv sees an input whose int8 range that one
channel sets: the layer's int8 output loses most of its precision, and the report must say so there."""
from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("litert_torch")
pytest.importorskip("onnxruntime")

from conftest import run_cli_here  # noqa: E402
from edgekd.core.errors import BundleError  # noqa: E402
from edgekd.exporters.layer_error import readable_tflite_name, worst  # noqa: E402
from edgekd.core.schema.export import ExportReport  # noqa: E402

SCALE = 100.0     # channel 0 of features.1-2 made 100× larger, features.4 divides it back


@pytest.fixture(scope="module")
def damaged(demo_run, tmp_path_factory) -> dict:
    """The export report of demo_run's student, damaged as the module says, as tflite-int8 and onnx-int8."""
    from safetensors.numpy import load_file, save_file

    from edgekd.exporters import export_run

    run = shutil.copytree(demo_run, tmp_path_factory.mktemp("damaged") / "run")
    weights = load_file(run / "student" / "model.safetensors")
    # ReLU(K·z) = K·ReLU(z) and max pooling commutes with K > 0: the fp32 function is unchanged
    weights["features.1.weight"][0] *= SCALE
    weights["features.1.bias"][0] *= SCALE
    weights["features.4.weight"][:, 0] /= SCALE
    save_file(weights, run / "student" / "model.safetensors")
    return export_run(run, formats=["tflite-int8", "onnx-int8"], roles=["student"], calibration_samples=64)


def _rows(report: dict) -> dict:
    return {row["format"]: row for row in report["models"]}


def _module_names() -> set[str]:
    from edgekd.train.models import build

    return {name for name, _ in build("cnn:width=8,depth=2", (1, 8, 8), 10).named_modules()}


def assert_module_paths(names: list[str]) -> None:
    """Each name is a module of the demo student, a range of sibling modules, (model) or output."""
    modules = _module_names()
    for name in names:
        if "-" in name:  # a range of siblings: features.4-6 is features.4, features.5, features.6
            parent, _, span = name.rpartition(".")
            first, last = map(int, span.split("-"))
            assert {f"{parent}.{i}" for i in range(first, last + 1)} <= modules, name
        else:
            assert name in modules | {"(model)", "output"}, name


def test_one_entry_per_quantized_layer_with_readable_names(damaged):
    import onnx

    from edgekd.exporters.tflite import describe_tflite

    bundle = Path(damaged["bundle"])
    tflite, onnx_row = _rows(damaged)["tflite-int8"], _rows(damaged)["onnx-int8"]
    info = describe_tflite(bundle / tflite["file"])
    # every tensor an op writes (all but the input among the non-constant tensors) is an int8 layer output
    assert len(tflite["layer_error"]["layers"]) == len(info["activations"]) - len(info["inputs"])
    for layer in tflite["layer_error"]["layers"]:
        assert math.isfinite(layer["snr_db"]) and -1 <= layer["cosine"] <= 1, layer
    assert_module_paths([layer["layer"] for layer in tflite["layer_error"]["layers"]])
    assert tflite["layer_error"]["samples"] == 32

    # ONNX: one entry per activation the QDQ file quantizes (a QuantizeLinear on a computed tensor; the
    # graph's output keeps its name after the QDQ pair, so the node before it writes NAME_QuantizeLinear_Input)
    model = onnx.load(str(bundle / onnx_row["file"]))
    computed = {out for node in model.graph.node if node.op_type not in ("QuantizeLinear", "DequantizeLinear")
                for out in node.output}
    quantized = {n.input[0].removesuffix("_QuantizeLinear_Input") for n in model.graph.node
                 if n.op_type == "QuantizeLinear" and n.input[0] in computed}
    names = [layer["layer"] for layer in onnx_row["layer_error"]["layers"]]
    assert len(names) == len(quantized) and names[-1] == "output"
    assert all(math.isfinite(layer["snr_db"]) for layer in onnx_row["layer_error"]["layers"])
    # named by module path as the TFLite report is (the exporter's name scopes, kept across onnxsim)
    assert_module_paths(names)
    assert {"features.0-2", "features.4-6"} <= set(names) <= {layer["layer"] for layer in tflite["layer_error"]["layers"]}


def test_the_damaged_layer_ranks_worst(damaged):
    tflite, onnx_row = _rows(damaged)["tflite-int8"], _rows(damaged)["onnx-int8"]
    layers = tflite["layer_error"]["layers"]
    assert worst(tflite["layer_error"], 1)[0]["layer"] == "features.4-6"
    before = layers[:[layer["layer"] for layer in layers].index("features.4-6")]
    damaged_db = worst(tflite["layer_error"], 1)[0]["snr_db"]
    # the layers before it are as good as int8 gets; the damage is where the ratio falls
    assert before and min(layer["snr_db"] for layer in before) > damaged_db + 20, layers
    # ONNX: the activation of features.6 (the second ReLU) is the worst
    relus = [layer for layer in onnx_row["layer_error"]["layers"] if layer["op"] == "Relu"]
    assert worst(onnx_row["layer_error"], 1)[0]["layer"] == relus[-1]["layer"] == "features.4-6"
    assert relus[0]["snr_db"] > relus[-1]["snr_db"] + 20


def test_terminal_shows_the_worst_few_and_explain_all(damaged):
    from rich.console import Console

    from edgekd.app.render.export import WORST_LAYERS, print_export_summary

    def shown(explain: bool) -> str:
        console = Console(file=io.StringIO(), width=200)
        print_export_summary(damaged, console, explain=explain)
        return console.file.getvalue()

    tflite = _rows(damaged)["tflite-int8"]["layer_error"]["layers"]
    brief, full = shown(False), shown(True)
    assert f"the {WORST_LAYERS} worst of {len(tflite)} layers" in brief and "--explain" in brief
    assert brief.index("features.4-6") < brief.index("student.int8.onnx: ")  # under its own file's header
    assert sum(" dB  " in line for line in full.splitlines()) == sum(
        len(row["layer_error"]["layers"]) for row in damaged["models"])


def test_a_broken_layer_report_is_refused(damaged, tmp_path):
    doc = json.loads(json.dumps(damaged))
    assert ExportReport.from_json(doc, "export.json").models[0].layer_error["layers"]
    doc["models"][0]["layer_error"]["layers"][0]["snr_db"] = "high"
    with pytest.raises(BundleError, match=r"models\[0\].layer_error.layers\[0\].snr_db must be a number"):
        ExportReport.from_json(doc, "export.json")


def test_litert_names_become_module_paths():
    net, seq, block = "pkg.Net", "torch.nn.modules.container.Sequential", "pkg.my_models.Conv_BN"
    classes = {net, seq, block, "torch.nn.modules.conv.Conv2d", "torch.nn.modules.activation.ReLU"}
    conv = f"{net}/{seq}_blocks/{block}_3/torch.nn.modules.conv.Conv2d_0"
    relu = f"{net}/{seq}_blocks/{block}_3/torch.nn.modules.activation.ReLU_2"
    # a class and an attribute with "_" in them; a neighbour's op folded in between is not the layer
    other = f"{net}/{seq}_blocks/{block}_2/torch.nn.modules.activation.ReLU_2"
    assert readable_tflite_name(f"{relu};;{other};;{conv};1", classes) == "blocks.3.0-2"
    assert readable_tflite_name(f"{net}/{seq}_blocks/{block}_3;;{conv};", classes) == "blocks.3"
    assert readable_tflite_name(f"{net}/{seq}_stem_conv/torch.nn.modules.conv.Conv2d_0", classes) == "stem_conv.0"
    assert readable_tflite_name(f"{net};1", classes) == "(model)"
    assert readable_tflite_name("serving_default_output_0", classes) == "serving_default_output_0"


def test_explain_from_the_command_line(demo_run, tmp_path):
    result = run_cli_here("export", demo_run, "--out", tmp_path / "bundle", "--formats", "tflite-int8",
                          "--roles", "student", "--calibration-samples", "32", "--explain")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "bundle" / "export.json").read_text())
    layers = report["models"][0]["layer_error"]["layers"]
    assert "student.int8.tflite: every layer" in result.stdout
    for layer in layers:
        assert f"{layer['snr_db']:6.1f} dB  {layer['layer']} ({layer['op']})" in result.stdout
