"""bench's per-class results: per-class accuracy, the confusion matrix and top-5 of each evaluated file,
the classes a student lost against the teacher, in bench.json, --markdown, --plot and the terminal,
and a bench.json whose per-class fields disagree refused in one line.

The numbers are checked against the runtimes themselves (onnxruntime, LiteRT), run sample by sample
here, on the shared ``demo_bundle`` and on hand-made ONNX files whose predictions numpy computes
exactly; the command runs as a real process with torch made unimportable.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FAST_BENCH, FAST_BENCH_ARGS, assert_user_error, run_cli, run_cli_here, torch_blocked

from edgekd.core.errors import ConfigError
from edgekd.core.schema import bench as schema
from edgekd.device.bench.classes import holm, lost_classes, sign_test
from edgekd.device.bench.classes_text import lost_lines
from edgekd.device.bench.text import shown_comparisons


def _runtime_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """Each sample's logits from the runtime itself, one sample at a time (int8 I/O by the file's scales)."""
    out = []
    if path.suffix == ".onnx":
        import onnxruntime as ort
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return np.concatenate([sess.run(None, {name: xi[None]})[0] for xi in x])
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    inp, res = it.get_input_details()[0], it.get_output_details()[0]
    (scale, zp), (o_scale, o_zp) = inp["quantization"], res["quantization"]
    for xi in x:
        it.set_tensor(inp["index"], np.clip(np.rint(xi[None] / scale) + zp, -128, 127).astype(np.int8)
                      if scale else xi[None])
        it.invoke()
        raw = it.get_tensor(res["index"]).astype(np.float32)
        out.append((raw - o_zp) * o_scale if o_scale else raw)
    return np.concatenate(out)


def _confusion(y: np.ndarray, pred: np.ndarray, classes: int) -> list[list[int]]:
    matrix = [[0] * classes for _ in range(classes)]
    for truth, guess in zip(y.tolist(), pred.tolist()):
        matrix[truth][guess] += 1
    return matrix


def _eval(bundle: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(bundle / "eval.npz") as data:
        return data["x"].astype(np.float32), data["y"].astype(np.int64)


# -- the numbers -------------------------------------------------------------------------------------

def test_per_class_and_confusion_are_the_runtimes_own_predictions(demo_bench, demo_bundle):
    x, y = _eval(demo_bundle)
    labels = json.loads((demo_bundle / "manifest.json").read_text())["labels"]
    for m in demo_bench["models"]:
        logits = _runtime_logits(demo_bundle / m["file"], x)
        pred = np.argmax(logits, axis=1)
        confusion = m["confusion"]
        assert confusion == _confusion(y, pred, len(labels)), m["file"]
        assert sum(map(sum, confusion)) == len(y) == m["eval_samples"]
        assert [c["label"] for c in m["per_class"]] == [str(label) for label in labels]
        for i, (c, row) in enumerate(zip(m["per_class"], confusion)):
            assert c["samples"] == sum(row) == int(np.sum(y == i))
            assert c["correct"] == row[i] == int(np.sum((y == i) & (pred == i)))
            assert c["accuracy"] == pytest.approx(row[i] / sum(row), abs=1e-12)
        assert m["accuracy"] == pytest.approx(sum(confusion[i][i] for i in range(len(labels))) / len(y), abs=1e-12)
        top5 = np.mean([np.sum(row > row[truth]) < 5 for row, truth in zip(logits, y)])   # ties: a hit
        assert len(labels) > 5 and m["top5_accuracy"] == pytest.approx(top5, abs=1e-12)
        assert m["top5_accuracy"] >= m["accuracy"]


def _linear_onnx(path: Path, weights: np.ndarray) -> None:
    """A one-layer classifier of 1×8×8 inputs: logits = flatten(x) @ weights, numpy's own arithmetic."""
    from onnx import TensorProto, helper, numpy_helper, save
    classes = weights.shape[1]
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))


@pytest.mark.parametrize("classes", [4, 5, 7])
def test_top5_only_with_more_than_five_classes(tmp_path, classes):
    from edgekd.device.bench.run import run_bench
    rng = np.random.default_rng(classes)
    weights = rng.standard_normal((64, classes)).astype(np.float32)
    x = rng.standard_normal((60, 1, 8, 8)).astype(np.float32)
    y = np.arange(60) % classes                     # every class present, about a classes-th right by chance
    _linear_onnx(tmp_path / "linear.onnx", weights)
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    [m] = run_bench(tmp_path / "linear.onnx", data=tmp_path / "eval.npz", out=False, **FAST_BENCH)["models"]
    logits = x.reshape(len(x), -1).astype(np.float64) @ weights
    assert m["confusion"] == _confusion(y, np.argmax(logits, axis=1), classes)
    assert [c["label"] for c in m["per_class"]] == [str(i) for i in range(classes)]     # no manifest: indices
    if classes <= 5:
        assert "top5_accuracy" not in m
    else:
        top5 = np.mean([np.sum(row > row[truth]) < 5 for row, truth in zip(logits, y)])   # ties: a hit
        assert m["top5_accuracy"] == pytest.approx(top5) and m["top5_accuracy"] >= m["accuracy"]


# -- the classes a student lost ----------------------------------------------------------------------

def test_sign_test_and_holm_golden_values():
    assert sign_test(3, 0) == 1 / 8 and sign_test(2, 2) == 11 / 16 and sign_test(0, 5) == 1.0
    assert sign_test(20, 0) == 2.0 ** -20
    adjusted = holm({0: 0.01, 1: 0.04, 2: 0.03})
    assert adjusted == pytest.approx({0: 0.03, 1: 0.06, 2: 0.06})     # 0.04·1 is raised to 0.03·2's level


def test_lost_classes_golden():
    """Class 0: the teacher gets all 40 right, the student 20 (20 discordant, all the teacher's: lost).
    Class 1: 2 discordant (the student's drop of 2 of 40 is noise). Class 2: the student is better."""
    y = [0] * 40 + [1] * 40 + [2] * 40
    teacher = [0] * 40 + [1] * 40 + [2] * 30 + [0] * 10
    student = [0] * 20 + [1] * 20 + [1] * 38 + [0] * 2 + [2] * 40
    [lost] = lost_classes(y, student, teacher, ["zero", "one", "two"])
    assert lost == {"label": "zero", "samples": 40, "accuracy": 0.5, "teacher_accuracy": 1.0, "only_teacher_right": 20,
                    "only_model_right": 0, "p_value": pytest.approx(3 * 2.0 ** -20)}   # Holm over the 3 tested classes
    assert lost_classes(y, teacher, teacher, ["zero", "one", "two"]) == []


def test_demo_lost_classes_are_the_runtimes_own(demo_bench, demo_bundle):
    """Every comparison names its lost classes, and they are what the runtimes' own predictions give."""
    x, y = _eval(demo_bundle)
    pred = {m["file"]: np.argmax(_runtime_logits(demo_bundle / m["file"], x), axis=1).tolist()
            for m in demo_bench["models"]}
    by_file = {m["file"]: m for m in demo_bench["models"]}
    assert demo_bench["comparisons"]
    for c in demo_bench["comparisons"]:
        names = [s["label"] for s in by_file[c["model"]]["per_class"]]
        assert c["lost_classes"] == lost_classes(y.tolist(), pred[c["model"]], pred[c["teacher"]], names)
        for lost in c["lost_classes"]:
            i = names.index(lost["label"])
            assert lost["accuracy"] == by_file[c["model"]]["per_class"][i]["accuracy"]
            assert lost["teacher_accuracy"] == by_file[c["teacher"]]["per_class"][i]["accuracy"]
            assert lost["accuracy"] < lost["teacher_accuracy"] and lost["p_value"] < 0.05


def _with_lost(lost: list[dict], student_accuracy: list[float]) -> dict:
    per_class = [{"label": str(i), "samples": 10, "correct": round(a * 10), "accuracy": a}
                 for i, a in enumerate(student_accuracy)]
    teacher = [{"label": str(i), "samples": 10, "correct": 9, "accuracy": 0.9} for i in range(len(student_accuracy))]
    models = [{"file": "s.onnx", "role": "student", "format": "onnx", "per_class": per_class},
              {"file": "t.onnx", "role": "teacher", "format": "onnx", "per_class": teacher}]
    comparisons = [{"model": "s.onnx", "teacher": "t.onnx", "threads": t, "batch": 1, "lost_classes": lost}
                   for t in (1, 2)]
    return {"models": models, "comparisons": comparisons, "teacher": "t.onnx"}


def test_the_lost_classes_line():
    lost = [{"label": str(i), "accuracy": 0.1 * i, "teacher_accuracy": 0.9} for i in range(5)]
    result = _with_lost(lost, [0.5] * 5)
    assert lost_lines(result, shown_comparisons(result)) == [     # one line for both settings
        "s.onnx lost against t.onnx: 0 (90.0% → 0.0%), 1 (90.0% → 10.0%), 2 (90.0% → 20.0%) and 2 more"]
    result = _with_lost([], [0.9, 0.7, 0.8])
    assert lost_lines(result, shown_comparisons(result)) == [
        "s.onnx lost no class against t.onnx beyond sampling noise (largest drop: 1, 90.0% → 70.0%)"]
    result = _with_lost([], [0.9, 1.0])
    assert lost_lines(result, shown_comparisons(result)) == ["s.onnx lost no class against t.onnx: no class scored lower"]


# -- the command: terminal, markdown, plot, torch unimportable ---------------------------------------

def test_the_command_prints_the_lost_classes_and_writes_them(demo_bundle, tmp_path):
    out, md, png = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "b.png"
    res = run_cli("bench", demo_bundle, *FAST_BENCH_ARGS, "--out", out, "--markdown", md, "--plot", png,
                  env={**torch_blocked(tmp_path), "COLUMNS": "250"})
    assert res.returncode == 0, res.stderr
    doc = schema.read(out)
    lines = lost_lines(doc, shown_comparisons(doc))
    students = [m["file"] for m in doc["models"] if m["role"] != "teacher"]
    assert [line.split()[0] for line in lines] == students
    for line in lines:
        assert " lost against teacher.onnx: " in line or " lost no class against teacher.onnx" in line
        assert line in res.stdout, res.stdout
    text = md.read_text()
    section = text[text.index("### Per class"):]
    assert "| class | samples | " + " | ".join(m["file"] for m in doc["models"]) + " |" in section
    for i, c in enumerate(doc["models"][0]["per_class"]):
        cells = " | ".join(f"{100 * m['per_class'][i]['accuracy']:.2f}%" for m in doc["models"])
        assert f"| {c['label']} | {c['samples']} | {cells} |" in section
    assert "**all (top-5)**" in section and all(f"- {line}" in section for line in lines)
    assert all(f"#### Confusion matrix: `{m['file']}`" in section for m in doc["models"])
    assert doc["outputs"]["classes_plot"] == str(tmp_path / "b.classes.png")
    assert (tmp_path / "b.classes.png").read_bytes()[:4] == b"\x89PNG"


# -- a bench.json whose per-class fields cannot be right ---------------------------------------------

def _document(demo_bench) -> dict:
    return json.loads(schema.to_json(demo_bench))


def _resize(doc: dict, rows: int) -> None:
    doc["models"][0]["confusion"] = [[0] * rows for _ in range(rows)]


@pytest.mark.parametrize("damage, fragment", [
    pytest.param(lambda d: d["models"][0]["confusion"].pop(), "confusion[0] must be a row of 9 counts",
                 id="a row short"),
    pytest.param(lambda d: d["models"][0].__setitem__("confusion", [r[:9] for r in d["models"][0]["confusion"][:9]]),
                 "per_class has 10 classes, but models[0].confusion 9", id="a class short"),
    pytest.param(lambda d: d["models"][0]["confusion"][3].append(0), "confusion[3] must be a row of 10 counts",
                 id="a long row"),
    pytest.param(lambda d: d["models"][0]["confusion"][2].__setitem__(2, -1), "whole numbers >= 0", id="negative"),
    pytest.param(lambda d: d["models"][0]["confusion"][2].__setitem__(2, 1.5), "whole numbers >= 0", id="fraction"),
    pytest.param(lambda d: d["models"][0]["confusion"][0].__setitem__(1, 5), "disagrees with row 0", id="moved count"),
    pytest.param(lambda d: _resize(d, 1001), "at most 1,000 rows", id="huge"),
    pytest.param(lambda d: d["models"][0].__setitem__("confusion", "10x10"), "confusion must be", id="not a list"),
    pytest.param(lambda d: d["models"][0]["per_class"][0].__setitem__("accuracy", 0.5), "is not correct / samples",
                 id="per-class accuracy"),
    pytest.param(lambda d: d["models"][0]["per_class"][0].__setitem__("samples", "36"), "samples must be",
                 id="samples a string"),
    pytest.param(lambda d: d["models"][0].__setitem__("accuracy", 0.5), "is not its per-class counts'",
                 id="overall accuracy"),
    pytest.param(lambda d: d["models"][0].__setitem__("eval_samples", 7), "add up to", id="eval samples"),
    pytest.param(lambda d: d["models"][0].__setitem__("top5_accuracy", 0.1), "below its top-1", id="top-5 below"),
    pytest.param(lambda d: d["comparisons"][0].__setitem__("lost_classes", [{"label": "9"}]),
                 "has no 'samples'", id="lost class incomplete"),
])
def test_a_bench_json_with_bad_per_class_fields_is_one_error(demo_bench, damage, fragment):
    doc = _document(demo_bench)
    damage(doc)
    with pytest.raises(ConfigError) as info:
        schema.from_json(schema.to_json(doc).encode(), "the test")
    message = info.value.message
    assert fragment in message and "\n" not in message and len(message) < 400, message


def test_a_hostile_baseline_is_refused_before_measuring(demo_bench, demo_bundle, tmp_path):
    doc = _document(demo_bench)
    doc["models"][1]["confusion"] = doc["models"][1]["confusion"][:-1]
    (tmp_path / "base.json").write_text(json.dumps(doc))
    res = run_cli_here("bench", demo_bundle, *FAST_BENCH_ARGS, "--baseline", tmp_path / "base.json",
                       "--out", tmp_path / "b.json")
    assert_user_error(res, "models[1]")
    assert not (tmp_path / "b.json").exists()


def test_an_old_bench_json_without_per_class_fields_still_reads(demo_bench):
    doc = copy.deepcopy(_document(demo_bench))
    for m in doc["models"]:
        for key in ("per_class", "confusion", "top5_accuracy"):
            m.pop(key, None)
    for c in doc["comparisons"]:
        c.pop("lost_classes", None)
    doc["outputs"].pop("classes_plot", None)
    assert schema.from_json(schema.to_json(doc).encode())["models"] == doc["models"]
