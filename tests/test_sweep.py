"""``edgekd sweep``: four students of two zoo families against one teacher, each distilled, exported
and benched for real (short training on digits); the pick is checked against the raw bench.json
numbers, the shared teacher against a plain distill, and the sweep's resume and bad inputs."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from statistics import median_low

import pytest
from conftest import FAST_BENCH, assert_user_error, run_cli, run_cli_here

from edgekd.device.bench.options import BenchOptions
from edgekd.train.config import load_config
from edgekd.train.distill import run_experiment
from edgekd.core.errors import ConfigError
from edgekd.app.sweep import Sweep, SweepOptions, canonical, pareto_front, parse_students, pick, run_sweep

STUDENTS = ["cnn:width=4,depth=1", "cnn:width=8,depth=2", "mlp:hidden=16", "mlp:hidden=64"]
SHORT = dict(folds=1, teacher_epochs=5, student_epochs=30, student_fraction=0.3)
BUDGET = "[student]\nmin_accuracy_percent = 60.0\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "budget.toml").write_text(BUDGET)
    events = []
    # one repetition (a budget's default is 3: the resume test shows it) keeps the suite short
    doc = run_sweep(load_config(None, **SHORT), STUDENTS, root / "sweep", bench=BenchOptions(**FAST_BENCH), repeat=1,
                    budget=root / "budget.toml", reporter=lambda event, **info: events.append((event, info)))
    return root / "sweep", doc, events


def raw_candidates(folder) -> list[dict]:
    """(student, file, accuracy, p50) straight from each bundle's bench.json: the gate's p50 is the
    median_low over repetitions of the first setting."""
    out = []
    for bench in sorted(folder.glob("students/*/bundle/bench.json")):
        for m in json.loads(bench.read_text())["models"]:
            if m["role"] == "student":
                x = m["measurements"][0]
                p50 = median_low(x["repeats"]["p50"]) if x.get("repeats") else x["latency_ms"]["p50"]
                out.append({"student": bench.parent.parent.name, "file": m["file"], "accuracy": m["accuracy"],
                            "p50": p50, "bytes": m["bytes"]})
    return out


def test_the_pick_is_the_fastest_file_meeting_the_budget_and_on_the_front_of_the_raw_numbers(sweep):
    folder, doc, _ = sweep
    raw = raw_candidates(folder)
    assert len(raw) == 2 * len(STUDENTS)            # student.onnx and student.int8.tflite of each
    chosen = doc["candidates"][doc["pick"]["candidate"]]
    mine = next(r for r in raw if (r["student"], r["file"]) == (chosen["student"], chosen["file"]))
    front = [r for r in raw if not any(o["accuracy"] >= r["accuracy"] and o["p50"] <= r["p50"]
                                       and (o["accuracy"], o["p50"]) != (r["accuracy"], r["p50"]) for o in raw)]
    assert mine in front
    meeting = [r for r in raw if r["accuracy"] * 100 >= 60.0]
    assert mine in meeting and mine["p50"] == min(r["p50"] for r in meeting)
    failing = [c for c in doc["candidates"] if not c["meets_budget"]]
    assert all(c["accuracy"] * 100 < 60.0 and "min_accuracy_percent" in c["failed"][0] for c in failing)
    # the document's own latency front is the same set as the one computed here
    assert sorted((doc["candidates"][i]["student"], doc["candidates"][i]["file"]) for i in doc["fronts"]["latency"]) \
        == sorted((r["student"], r["file"]) for r in front)


def test_the_sweep_writes_its_table_plot_and_every_students_bundle(sweep):
    folder, doc, _ = sweep
    assert {s["spec"] for s in doc["students"]} == set(STUDENTS)
    assert sorted(p.name for p in folder.iterdir()) == ["plan.txt", "students", "sweep.json", "sweep.md", "sweep.png"]
    assert json.loads((folder / "sweep.json").read_text()) == doc
    assert (folder / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (folder / "sweep.md").read_text()
    assert table.count("← pick") == 1 and f"pick (fastest that meets the budget): {doc['pick']['student']}" in table
    for s in doc["students"]:
        bundle = folder / s["bundle"]
        assert {"student.onnx", "student.int8.tflite", "teacher.onnx", "bench.json"} <= {p.name for p in bundle.iterdir()}
        assert set(s["seconds"]) == {"distill", "export", "bench"}
    # an int8 file is on the size front at least once: it is what a sweep for the device is for
    assert any(doc["candidates"][i]["file"] == "student.int8.tflite" for i in doc["fronts"]["size"])


def test_the_teacher_is_trained_once_and_its_outputs_computed_once_per_split(sweep):
    folder, doc, _ = sweep
    logs = [(folder / s["run"] / "train.log").read_text() for s in doc["students"]]
    assert logs[0].count("/teacher: 5 epochs") == SHORT["folds"] + 1
    for log in logs[1:]:
        assert "/teacher: 5 epochs" not in log and log.count("/teacher: the sweep's shared teacher, trained once") == SHORT["folds"] + 1
        assert log.count("teacher outputs of the student samples from the sweep's cache") == SHORT["folds"] + 1
    weights = {hashlib.sha256((folder / s["run"] / "teacher" / "model.safetensors").read_bytes()).hexdigest()
               for s in doc["students"]}
    assert len(weights) == 1
    assert len({s["test"]["teacher"] for s in doc["students"]}) == 1


def test_a_student_of_the_sweep_is_the_student_a_plain_distill_trains(sweep, tmp_path):
    """The shared teacher and its cached outputs change nothing: the last student (whose teacher and
    outputs came from the cache) scores exactly as in a distill run of its own."""
    folder, doc, _ = sweep
    last = doc["students"][-1]
    alone = run_experiment(load_config(None, **SHORT, student=last["spec"], out=str(tmp_path / "alone")))
    assert alone["test"] == last["test"]
    assert alone["cv"]["student"] == last["cv"]["student"]


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_without_retraining_and_a_finished_one_is_judged_again(tmp_path):
    cfg = load_config(None, folds=1, teacher_epochs=2, student_epochs=3)
    students, events = STUDENTS[:2], []

    def stop_after_the_first_bench(event, **info):
        events.append((event, info))
        if event == "step" and info["step"] == "bench":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, students, tmp_path / "sw", bench=BenchOptions(**FAST_BENCH), reporter=stop_after_the_first_bench)
    assert (tmp_path / "sw" / "plan.txt").is_file() and not (tmp_path / "sw" / "sweep.json").exists()
    with pytest.raises(ConfigError, match="an interrupted sweep exists"):
        run_sweep(cfg, students, tmp_path / "sw", bench=BenchOptions(**FAST_BENCH))
    with pytest.raises(ConfigError, match="used a different configuration"):
        run_sweep(cfg, students[::-1], tmp_path / "sw", bench=BenchOptions(**FAST_BENCH), resume=True)

    def steps(**options) -> tuple[dict, list]:
        events.clear()
        doc = run_sweep(cfg, students, tmp_path / "sw", bench=BenchOptions(**FAST_BENCH), resume=True,
                        reporter=lambda event, **info: events.append((event, info)), **options)
        return doc, [(info["name"][:1], info["step"], info["seconds"] is None) for event, info in events
                     if event == "step"]

    doc, done = steps()
    assert done == [("1", "distill", True), ("2", "distill", True), ("1", "export", True), ("1", "bench", True),
                    ("2", "export", False), ("2", "bench", False)]
    assert [s["spec"] for s in doc["students"]] == students and set(doc["students"][0]["seconds"]) == {
        "distill", "export", "bench"}
    best = max(c["accuracy"] for c in doc["candidates"])       # no budget: the fastest within 1 point of the best
    near = [c for c in doc["candidates"] if best - c["accuracy"] <= 0.01 + 1e-9]
    assert doc["budget"] is False and doc["pick"]["rule"] == "within_1_point"
    assert doc["candidates"][doc["pick"]["candidate"]]["p50_ms"] == min(c["p50_ms"] for c in near)
    assert not (tmp_path / "sw" / "teacher").exists()
    (tmp_path / "budget.toml").write_text("[student]\nmin_accuracy_percent = 1\n")
    with pytest.raises(ConfigError, match="'bench.repeat = 1' then, 'bench.repeat = 3' now"):
        steps(budget=tmp_path / "budget.toml")         # a budget's default is 3 repetitions
    doc, done = steps(budget=tmp_path / "budget.toml", pick="smallest", repeat=1)   # judged again: nothing re-run
    assert all(seconds_none for _, _, seconds_none in done) and doc["pick"]["by"] == "smallest"
    smallest = min(doc["candidates"], key=lambda c: c["bytes"])
    assert doc["candidates"][doc["pick"]["candidate"]] == smallest


def test_fronts_and_pick_golden():
    points = [(0.90, 5.0), (0.95, 5.0), (0.80, 1.0), (0.80, 2.0), (0.99, 9.0), (0.99, 9.0)]
    assert pareto_front(points) == [1, 2, 4, 5]      # equal points do not dominate each other
    cands = [{"accuracy": a, "p50_ms": c, "bytes": b, "peak_memory_mib": 1.0, "meets_budget": ok}
             for (a, c), b, ok in zip(points, [9, 8, 1, 2, 7, 6], [True, True, False, True, True, True])]
    assert pick(cands, "fastest").index == 3         # index 2 is faster but fails the budget
    cands[3]["meets_budget"] = False
    assert pick(cands, "fastest").index == 1         # same p50 as index 0: the more accurate
    assert pick(cands, "smallest").index == 5        # 6 bytes: the smaller 2 and 3 fail the budget
    assert pick([{**c, "meets_budget": False} for c in cands], "fastest").index is None
    # no budget: bench's rule, the fastest within 1 point of the best (0.99: indices 4 and 5, as fast; 5 smaller)
    free = [{**c, "meets_budget": None} for c in cands]
    assert (pick(free, "fastest").index, pick(free, "fastest").rule) == (5, "within_1_point")
    assert pick(free, "fastest").excluded[0] == (0, "90.00%, 9.00 points below the best (99.00%)")


def test_students_are_checked_before_anything_trains(tmp_path):
    assert canonical("cnn:depth=2,width=8") == canonical("cnn:width=8,depth=2") == canonical("cnn:width=8")
    with pytest.raises(ConfigError, match="at least one student"):
        parse_students(" ; ")
    with pytest.raises(ConfigError, match=r"student 'cnn:depth=2,width=8' is given twice \(as 'cnn:width=8'\)"):
        parse_students("cnn:width=8;cnn:depth=2,width=8")
    cfg = replace(load_config(None, folds=1), out=str(tmp_path / "x"))
    (tmp_path / "b.toml").write_text('["student.tflite"]\nmax_bytes = 10\n')
    with pytest.raises(ConfigError, match='no such model'):
        run_sweep(cfg, ["cnn:width=4"], tmp_path / "x", budget=tmp_path / "b.toml")
    for budget, error in (("[teacher]\nmin_accuracy_percent = 50\n", "sets no limit for a student file"),
                          ("[student]\nmax_bytes = 1\n[baseline]\nmax_size_increase_percent = 1\n", r"\[baseline\]")):
        (tmp_path / "t.toml").write_text(budget)
        with pytest.raises(ConfigError, match=error):
            run_sweep(cfg, ["cnn:width=4"], tmp_path / "x", budget=tmp_path / "t.toml")
    assert not list(tmp_path.glob("*x*"))


def test_a_sweep_is_prepared_from_its_options_object(tmp_path):
    """SweepOptions carries every setting of Sweep.prepare; run_sweep's keywords go over it."""
    cfg = replace(load_config(None, folds=1), out=str(tmp_path / "x"))
    options = SweepOptions(bench=BenchOptions(**FAST_BENCH), repeat=2, pick="smallest")
    sweep = Sweep.prepare(cfg, ["cnn:width=4"], tmp_path / "sw", options)
    try:
        assert (sweep.plan.bench["threads"], sweep.plan.bench["repeat"], sweep.pick) == ([1], 2, "smallest")
        assert sweep.plan.students == ("cnn:width=4",)
    finally:
        if sweep.lock is not None:
            sweep.lock.release()
    with pytest.raises(ConfigError, match="largest"):
        run_sweep(cfg, ["cnn:width=4"], tmp_path / "sw2", options, pick="largest")


@pytest.mark.parametrize("args, fragment", [
    (["--students", ";"], "a sweep needs at least one student"),
    (["--students", "mlp:hidden=16;mlp:hidden=16,depth=1"], "is given twice"),
    (["--students", "cnnn:width=4"], "did you mean 'cnn'"),
    (["--students", "cnn:width=4", "--pick", "cheapest"], "unknown pick 'cheapest'"),
    (["--students", "cnn:width=4", "--remote", "-oProxyCommand=x"], "is not [user@]host[:DIR]"),
])
def test_bad_sweeps_are_one_line_errors(args, fragment, tmp_path):
    result = run_cli_here("sweep", *args, "--out", tmp_path / "sw")
    assert_user_error(result, fragment)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_the_command_prints_the_table_and_refuses_to_overwrite(tmp_path):
    base = ["sweep", "--students", "mlp:hidden=8;mlp:hidden=32", "--folds", "1", "--teacher-epochs", "2",
            "--student-epochs", "3", "--threads", "1", "--min-seconds", "0", "--out", tmp_path / "sw"]
    table = run_cli(*base)
    assert table.returncode == 0, table.stderr
    words = " ".join(table.stdout.split())         # the console wraps long lines
    assert "2-mlp-hidden-32" in words and "pick (fastest within 1 point of the best accuracy)" in words
    assert "pass --budget FILE" in words
    assert "[2/2] mlp:hidden=32: export and bench" in table.stderr
    doc = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert doc["schema"] == "edgekd.sweep" and len(doc["candidates"]) == 4
    assert_user_error(run_cli_here(*base), "sweep folder")


def test_force_starts_over_only_a_sweep_folder_or_an_empty_one(tmp_path):
    """--force once deleted whatever folder --out named (issue 25 item 6)."""
    from edgekd.app.sweep.folder import open_folder
    from edgekd.app.sweep.plan import Plan

    mine = tmp_path / "mine"
    (mine / "photos").mkdir(parents=True)
    (mine / "photos" / "a.png").write_bytes(b"not really a png")
    (mine / "plan.txt").write_text("my plan for the week\n")         # a sweep's file name, not its plan
    before = sorted(mine.rglob("*"))
    result = run_cli_here("sweep", "--students", "mlp:hidden=8", "--folds", "1", "--out", mine, "--force")
    assert_user_error(result, f"'{mine}' is not an edgekd sweep folder")
    assert sorted(mine.rglob("*")) == before and (mine / "photos" / "a.png").read_bytes() == b"not really a png"
    record = Plan(("mlp:hidden=8",), load_config(None), {}, None).record()
    earlier, empty, locks = tmp_path / "earlier", tmp_path / "empty", []
    open_folder(earlier, False, False, record, locks)       # an (interrupted) earlier sweep, as a sweep starts one
    locks.pop().release()
    (earlier / "students").mkdir()
    empty.mkdir()
    for folder in (earlier, empty):
        open_folder(folder, False, True, record, locks)
        locks.pop().release()
        assert os.listdir(folder) == ["plan.txt"]

