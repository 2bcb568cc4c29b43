"""The distill experiment end to end: run folder, protocol, determinism, resume, brought teachers, bad inputs."""
import json
import shutil
import tomllib
from dataclasses import fields

import numpy as np
import pytest
import torch

from edgekd.train.modelfile import load_model
from edgekd.train.config import DistillConfig, load_config
from edgekd.train.data import load_dataset
from edgekd.core.preprocess import standardize
from edgekd.train.data.split import holdout
from edgekd.train.distill.experiment import run_experiment

from conftest import CONVERGING, TINY, assert_user_error, run_cli, run_cli_here

FAST = dict(TINY, teacher="mlp:hidden=16", student="mlp:hidden=8", folds=2, teacher_epochs=2, student_epochs=3)


def test_run_folder_layout(demo_run):
    for name in ("config.toml", "eval.npz", "calibration.npz", "cv.json", "report.md", "curves.png", "train.log"):
        assert (demo_run / name).is_file(), name
    for role in ("teacher", "student", "simple"):
        model, spec = load_model(demo_run / role)
        assert spec["role"] == role and spec["input"]["shape"] == [1, 8, 8] and len(spec["labels"]) == 10
        assert spec["preprocessing"]["type"] == "standardize" and 0 <= spec["metrics"]["test_accuracy"] <= 1
    assert not (demo_run / "state").exists()
    assert not list(demo_run.parent.glob(".*partial*")) and not list(demo_run.parent.glob(".*tmp*"))


def test_cv_json_reports_every_fold_and_the_trio(demo_run):
    cv = json.loads((demo_run / "cv.json").read_text())
    assert len(cv["folds"]) == TINY["folds"]
    for role in ("teacher", "student", "simple"):
        accuracies = [fold[role]["accuracy"] for fold in cv["folds"]]
        assert cv["cv"][role]["mean"] == pytest.approx(np.mean(accuracies))
        assert cv["cv"][role]["std"] == pytest.approx(np.std(accuracies, ddof=1))
        assert cv["models"][role]["parameters"] > 0 and cv["models"][role]["macs"] > 0
    assert cv["models"]["teacher"]["parameters"] > 10 * cv["models"]["student"]["parameters"]
    fold = cv["folds"][0]
    # student and simple see the same, smaller subset (stratified: within a sample per class); the
    # teacher the whole training part
    assert abs(fold["student_samples"] - TINY["student_fraction"] * fold["train_samples"]) <= cv["data"]["classes"]
    assert fold["student_samples"] < fold["train_samples"]
    assert cv["folds"][0]["student"]["history"][-1]["epoch"] == TINY["student_epochs"]
    # every trained model is scored after each epoch (curves.png draws these) on a fixed subsample of at
    # most trio.CURVE_ROWS rows of the split's validation part (the final split: the held-out test split)
    epochs = {"teacher": TINY["teacher_epochs"], "student": TINY["student_epochs"], "simple": TINY["student_epochs"]}
    for split in (*cv["folds"], cv["final"]):
        for role, count in epochs.items():
            accuracies = [record["val_accuracy"] for record in split[role]["history"]]
            assert len(accuracies) == count and all(0 <= a <= 1 for a in accuracies), (split["split"], role)
    assert cv["final"]["teacher"]["history"][-1]["val_accuracy"] == pytest.approx(cv["test"]["teacher"])


def test_eval_split_is_the_held_out_test_split(demo_run):
    """eval.npz is exactly the stratified held-out split, preprocessed with training statistics;
    the calibration pool comes from training data only."""
    _, spec = load_model(demo_run / "student")
    data = load_dataset("digits")
    train_x, train_y, test_x, test_y = holdout(data, 0.2, TINY["seed"])
    with np.load(demo_run / "eval.npz") as ev, np.load(demo_run / "calibration.npz") as cal:
        np.testing.assert_array_equal(ev["y"], test_y)
        np.testing.assert_allclose(ev["x"], standardize(spec["preprocessing"], test_x), rtol=1e-6)
        train_rows = {row.tobytes() for row in standardize(spec["preprocessing"], train_x)}
        assert all(row.tobytes() in train_rows for row in cal["x"])
    mean = np.asarray(spec["preprocessing"]["mean"])
    assert mean == pytest.approx([train_x.mean()], rel=1e-5)       # statistics of the training part only


def test_config_toml_reruns_the_experiment(demo_run):
    cfg = load_config(demo_run / "config.toml")
    assert cfg == DistillConfig(**{**DistillConfig().__dict__, **TINY, "out": str(demo_run)})
    assert tomllib.loads((demo_run / "config.toml").read_text())["teacher"] == TINY["teacher"]


@pytest.mark.slow
def test_same_seed_same_numbers_and_resume_is_exact(tmp_path):
    cfg = load_config(None, **FAST, out=str(tmp_path / "a"))
    first = run_experiment(cfg)

    class Interrupt(Exception):
        pass

    def stop_in_second_fold(event, **info):
        if event == "epoch" and info["split"] == "fold2" and info["role"] == "student" and info["record"]["epoch"] == 2:
            raise Interrupt

    interrupted = load_config(None, **FAST, out=str(tmp_path / "b"))
    with pytest.raises(Interrupt):
        run_experiment(interrupted, reporter=stop_in_second_fold)
    assert not (tmp_path / "b").exists() and (tmp_path / ".b.partial").is_dir()

    result = run_cli_here("distill", "--config", tmp_path / ".b.partial" / "config.toml", "--resume", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "resumed from a finished stage" in (tmp_path / "b" / "train.log").read_text()
    assert "no interrupted run" not in (tmp_path / "b" / "train.log").read_text()
    resumed = json.loads((tmp_path / "b" / "cv.json").read_text())
    for role in ("teacher", "student", "simple"):
        assert resumed["test"][role] == first["test"][role]
        assert [f[role]["accuracy"] for f in resumed["folds"]] == [f[role]["accuracy"] for f in first["folds"]]
    a, _ = load_model(tmp_path / "a" / "student")
    b, _ = load_model(tmp_path / "b" / "student")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


@pytest.mark.slow
def test_augment_runs_the_teacher_on_every_student_step(tmp_path):
    """--augment shifts each batch, so cached logits would be wrong: the teacher runs every step.
    (``augment=True``, a config of an earlier edgekd, still means shifts.)"""
    import math

    from edgekd.train.models.zoo import MLP

    teacher_calls = 0

    def count(module, _inputs, _output):
        nonlocal teacher_calls
        # FAST's teacher, in eval mode: not its own training, but what the student learns from
        teacher_calls += isinstance(module, MLP) and module.net[1].out_features == 16 and not module.training

    hook = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        summary = run_experiment(load_config(None, **FAST, augment=True, out=str(tmp_path / "run")))
    finally:
        hook.remove()
    splits = [*summary["folds"], summary["final"]]
    student_steps = sum(math.ceil(s["student_samples"] / FAST["batch_size"]) for s in splits) * FAST["student_epochs"]
    assert teacher_calls >= student_steps
    assert "teacher logits of" not in (tmp_path / "run" / "train.log").read_text()     # nothing cached
    assert tomllib.loads((tmp_path / "run" / "config.toml").read_text())["augment"] == "shift"
    assert summary["config"]["augment"] == "shift"                                        # cv.json too
    assert summary["test"]["student"] > 0.3            # it still learns (10 classes: chance is 0.1)


@pytest.mark.slow
def test_cli_prints_the_table(tmp_path):
    """Also: --resume with nothing to resume starts afresh and says so. A real process: the one distill
    here run as a user runs it (the other CLI cases go through the same entry point in this process)."""
    args = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    result = run_cli("distill", *args, "--out", tmp_path / "run", "--resume")
    assert result.returncode == 0, result.stderr
    assert "held-out acc" in result.stdout and "distillation gain" in result.stdout
    assert (tmp_path / "run" / "cv.json").is_file()
    assert "--resume: no interrupted run at" in (tmp_path / "run" / "train.log").read_text()
    assert "note: --resume: no interrupted run at" in result.stderr


def test_force_replaces_the_whole_run_and_json_prints_cv_json(tmp_path, demo_run):
    """... but only a run folder: --force once replaced whatever folder --out named (issue 25 item 6)."""
    args = [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
    run = tmp_path / "run"
    run.mkdir()
    (run / "stray.txt").write_text("from before")
    assert_user_error(run_cli_here("distill", *args, "--out", run), "already exists")
    assert_user_error(run_cli_here("distill", *args, "--out", run, "--force"), "is not an edgekd run folder")
    assert sorted(p.name for p in run.iterdir()) == ["stray.txt"]
    shutil.copytree(demo_run, run, dirs_exist_ok=True)      # an earlier run, the stray file in it
    result = run_cli_here("distill", *args, "--out", run, "--force", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((run / "cv.json").read_text())
    assert not (run / "stray.txt").exists() and (run / "student" / "model.safetensors").is_file()


def test_teacher_from_run_folder_is_not_retrained(demo_run, tmp_path):
    summary = run_experiment(load_config(None, **{**FAST, "student": TINY["student"]},
                                         teacher_from=str(demo_run), out=str(tmp_path / "r")))
    assert all(fold["teacher"]["trained"] is False for fold in summary["folds"])
    assert (tmp_path / "r" / "teacher" / "model.safetensors").read_bytes() == \
        (demo_run / "teacher" / "model.safetensors").read_bytes()
    original = json.loads((demo_run / "cv.json").read_text())
    assert summary["test"]["teacher"] == pytest.approx(original["test"]["teacher"])
    _, spec = load_model(tmp_path / "r" / "student")
    assert spec["preprocessing"] == json.loads((demo_run / "teacher" / "model.json").read_text())["preprocessing"]


@pytest.mark.parametrize("option", [("--seed", "1", "--seed 0"), ("--test-fraction", "0.3", "--test-fraction 0.2")])
def test_teacher_from_a_run_with_another_held_out_split_is_refused(demo_run, tmp_path, option):
    flag, value, fix = option
    result = run_cli_here("distill", "--teacher-from", demo_run, flag, value, "--out", tmp_path / "run")
    assert_user_error(result, "has seen some of this run's test samples")
    assert f"hint: use {fix}" in result.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind,batch", [("onnx", None), ("onnx", 1), ("onnx", 3), ("pt2", None)],
                         ids=["onnx", "onnx-batch1", "onnx-batch3", "pt2"])
def test_teacher_from_onnx_or_pt2(demo_run, tmp_path, kind, batch):
    """A fixed batch (torch.onnx.export's default is the example's) runs in batches of that size,
    the last one padded; every brought teacher predicts as the original."""
    teacher, _ = load_model(demo_run / "teacher")
    example = (torch.zeros(batch or 2, 1, 8, 8),)
    dynamic = None if batch else ({0: torch.export.Dim("batch")},)
    path = tmp_path / f"teacher.{kind}"
    if kind == "onnx":
        torch.onnx.export(teacher, example, str(path), dynamo=True, external_data=False, dynamic_shapes=dynamic)
    else:
        torch.export.save(torch.export.export(teacher, example, dynamic_shapes=dynamic), str(path))
    summary = run_experiment(load_config(None, **FAST, teacher_from=str(path), out=str(tmp_path / "r")))
    assert summary["folds"][0]["teacher"]["trained"] is False
    assert summary["test"]["teacher"] > 0.5            # the brought teacher really predicts
    original = json.loads((demo_run / "cv.json").read_text())
    assert summary["test"]["teacher"] == pytest.approx(original["test"]["teacher"])
    assert json.loads((tmp_path / "r" / "teacher" / "model.json").read_text())["format"] == kind
    assert (tmp_path / "r" / "teacher" / f"model.{kind}").is_file()


def _few_per_class(tmp_path):
    x = np.random.default_rng(0).random((43, 4))
    np.savez(tmp_path / "few.npz", x=x, y=np.array([0] * 20 + [1] * 20 + [2] * 3))
    return f"npz:{tmp_path}/few.npz"


def _made_files(tmp_path, args: list[str]) -> list[str]:
    """The upper-case stand-ins below, replaced by files made for the test."""
    np.savez(tmp_path / "tab.npz", x=np.zeros((40, 5)), y=np.arange(40) % 2)
    np.savez(tmp_path / "one.npz", x=np.zeros((40, 5)), y=np.zeros(40, int))
    (tmp_path / "wd.toml").write_text("weight_decay = -0.1\n")        # no command-line option: a config key only
    made = {"TABULAR": f"npz:{tmp_path}/tab.npz", "ONE-CLASS": f"npz:{tmp_path}/one.npz",
            "NEGATIVE-WEIGHT-DECAY": str(tmp_path / "wd.toml")}
    return [made.get(arg, arg) for arg in args]


@pytest.mark.parametrize("args,fragment", [
    (["--data", "digitz"], "did you mean 'digits'"),
    (["--student", "cnnn:width=4"], "did you mean 'cnn'"),
    (["--teacher", "cnn:width=x"], "must be an integer"),
    (["--data", "npz:/no/such.npz"], "not found"),
    (["--temperature", "0"], "temperature must be a finite number > 0"),
    (["--temperature", "inf"], "temperature must be a finite number > 0"),
    (["--lr", "inf"], "learning rate must be a finite number > 0"),
    (["--lr", "nan"], "learning rate must be a finite number > 0"),
    (["--config", "NEGATIVE-WEIGHT-DECAY"], "weight decay must be a finite number >= 0"),
    (["--folds", "0"], "folds must be at least 1"),
    (["--batch-size", "0"], "batch size must be at least 1"),
    (["--seed", "-1"], "seed must be in [0, 4294967295]"),
    (["--data", "ONE-CLASS"], "a classifier needs at least 2"),
    (["--data", "TABULAR", "--augment"], "--augment shift augments images"),
    (["--alpha", "1.5"], "alpha must be in [0, 1]"),
    (["--student-fraction", "0"], "student fraction must be in (0, 1]"),
    (["--student-fraction", "1.2"], "student fraction must be in (0, 1]"),
    (["--teacher-from", "/no/such/run"], "not found"),
    (["--student", "cnn", "--data", "TABULAR"], "needs image input"),
    (["--student", "mlp:foo=3"], "known: depth, dropout, hidden"),
    (["--student", "mlp:hiden=3"], "did you mean 'hidden'"),
    (["--data", "digits:foo"], "takes no argument"),
    (["--label-column", "y"], "--label-column does not apply to data source 'digits'"),
    (["--test-fraction", "0.001"], "use --test-fraction 0.006 or more"),
    (["--test-fraction", "0.999"], "use --test-fraction 0.994 or less"),
])
def test_bad_options_fail_cleanly(tmp_path, args, fragment):
    args = _made_files(tmp_path, args)
    result = run_cli_here("distill", *args, "--out", tmp_path / "run", "--quiet")
    assert_user_error(result, fragment)
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))


def test_every_config_field_is_an_option_of_distill_and_sweep_unset_until_given():
    """The options are made from DistillConfig's fields: one each (sweep: not student, its own out),
    None until given so that a --config file's value stands, the default shown from the field."""
    from edgekd.app.cli.distill import distill
    from edgekd.app.cli.options import field_help
    from edgekd.app.cli.sweep import sweep_command

    names = {f.name for f in fields(DistillConfig)}
    given = distill.make_context("distill", ["--student-epochs", "7", "--augment"]).params
    assert names <= set(given) and (given["student_epochs"], given["augment"]) == (7, "shift")
    assert all(given[name] is None for name in names - {"student_epochs", "augment"})
    assert "student" not in sweep_command.make_context("sweep", ["--students", "cnn"]).params
    epochs = next(f for f in fields(DistillConfig) if f.name == "student_epochs")
    assert field_help(epochs).endswith(f"[default: {DistillConfig.student_epochs}]")


def test_class_with_too_few_samples_for_the_folds(tmp_path):
    result = run_cli_here("distill", "--data", _few_per_class(tmp_path), "--student", "mlp", "--teacher", "mlp",
                     "--out", tmp_path / "run")
    assert_user_error(result, "too few samples per class")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("out,fragment", [
    ("file/run", "'file' is not a folder"),
    (".", "has no name of its own"),
    ("..", "has no name of its own"),
])
def test_impossible_out_path(tmp_path, out, fragment):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "file").write_text("")
    for force in ([], ["--force"]):
        assert_user_error(run_cli_here("distill", "--out", out, *force, "--quiet", cwd=tmp_path / "work"), fragment)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file", "work"]


@pytest.mark.parametrize("change,fragment", [
    ({"input": {"layout": "NCHW"}}, "input has no 'shape'"),
    ({"input": {"shape": [1, 8, "8"]}}, "input.shape must be a list of whole numbers > 0"),
    ({"arch": 5}, "arch must be a model spec string"),
    ({"num_classes": "ten"}, "num_classes must be a whole number > 0, got 'ten'"),
    ({"arch": "mlp:foo=3"}, "unknown option of model 'mlp': 'foo'"),
])
def test_damaged_model_json_of_a_brought_teacher(demo_run, tmp_path, change, fragment):
    import shutil
    folder = tmp_path / "student"
    shutil.copytree(demo_run / "student", folder)
    spec = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**spec, **change}))
    assert_user_error(run_cli_here("distill", "--teacher-from", folder, "--out", tmp_path / "run"), fragment)
    assert not (tmp_path / "run").exists()


def test_corrupt_pt2_teacher_is_one_error_line(tmp_path):
    (tmp_path / "teacher.pt2").write_bytes(b"PK\x03\x04 not really a zip archive")
    result = run_cli_here("distill", "--teacher-from", tmp_path / "teacher.pt2", "--out", tmp_path / "run")
    assert_user_error(result, "cannot load .pt2 teacher")       # no torch warning lines before it


def test_existing_run_folder_is_never_overwritten(demo_run):
    before = (demo_run / "cv.json").read_bytes()
    assert_user_error(run_cli_here("distill", "--out", demo_run, "--quiet"), "already exists")
    assert (demo_run / "cv.json").read_bytes() == before


def test_corrupt_safetensors_teacher(demo_run, tmp_path):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(demo_run / "teacher", broken / "teacher")
    (broken / "teacher" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    result = run_cli_here("distill", "--teacher-from", broken, "--out", tmp_path / "run")
    assert_user_error(result, "not a readable safetensors file")
    assert not (tmp_path / "run").exists()


def test_bad_config_file_key(tmp_path):
    (tmp_path / "c.toml").write_text('temprature = 2.0\n')
    assert_user_error(run_cli_here("distill", "--config", tmp_path / "c.toml"), "did you mean 'temperature'")


def test_config_file_with_a_table(tmp_path):
    (tmp_path / "c.toml").write_text('folds = 2\n[section]\ntemperature = 2.0\n')
    result = run_cli_here("distill", "--config", tmp_path / "c.toml")
    assert_user_error(result, "has a table [section], but a distill config has no tables")
    assert "known keys: alpha, augment" in result.stderr


def test_interrupted_run_needs_resume_or_force(tmp_path):
    (tmp_path / ".run.partial").mkdir()
    assert_user_error(run_cli_here("distill", "--out", tmp_path / "run"), "--resume")


def test_force_starts_over_only_an_interrupted_run_of_edgekd(tmp_path):
    """--force clears ``.NAME.partial`` when a run of edgekd left it (its config.toml first), and
    refuses a folder of the user's under that name, or a link there, leaving it whole."""
    from edgekd.train.distill.checks import staging_folder
    from edgekd.core.errors import EdgeKDError

    cfg, out = load_config(None), tmp_path / "run"
    stage = tmp_path / ".run.partial"
    stage.mkdir()
    (stage / "notes.txt").write_text("mine")
    with pytest.raises(EdgeKDError, match="not an edgekd interrupted run"):
        staging_folder(out, False, True, cfg, [])
    assert (stage / "notes.txt").read_text() == "mine"
    (stage / "config.toml").write_text(cfg.to_toml())          # what an interrupted run holds first
    locks: list = []
    assert staging_folder(out, False, True, cfg, locks) == stage and not stage.exists()
    locks.pop().release()


@pytest.mark.slow
def test_device_auto_picks_cuda_when_present(tmp_path):
    summary = run_experiment(load_config(None, **FAST, device="auto", out=str(tmp_path / "run")))
    if torch.cuda.is_available():
        assert summary["device"] == "cuda" and summary["final"]["student"]["precision"] in ("bf16", "fp16")
    else:
        assert summary["device"] == "cpu" and summary["final"]["student"]["precision"] == "fp32"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the fp16/bf16-on-GPU path")
def test_cuda_trains_in_mixed_precision_to_the_accuracy_of_the_cpu(tmp_path, converged_cpu_run):
    from edgekd.train.distill.fastpath import native_bf16

    gpu = run_experiment(load_config(None, **CONVERGING, device="cuda", out=str(tmp_path / "gpu")))
    cpu = converged_cpu_run
    expected = "bf16" if native_bf16("cuda") else "fp16"
    assert all(gpu["final"][role]["precision"] == expected for role in ("teacher", "student", "simple"))
    for role in ("teacher", "student", "simple"):
        assert abs(gpu["test"][role] - cpu["test"][role]) <= 0.02, (role, gpu["test"], cpu["test"])
    model, _ = load_model(tmp_path / "gpu" / "student")            # the run folder holds CPU weights
    assert next(model.parameters()).device.type == "cpu"


def _interrupted(out, **options) -> None:
    """FAST (with ``options``) run into ``out`` and stopped in fold2's student: a stage to resume."""
    class Interrupt(Exception):
        pass

    def stop(event, **info):
        if event == "epoch" and (info["split"], info["role"]) == ("fold2", "student"):
            raise Interrupt

    with pytest.raises(Interrupt):
        run_experiment(load_config(None, **{**FAST, **options}, out=str(out)), reporter=stop)


@pytest.mark.slow
def test_resume_takes_the_interrupted_runs_own_configuration(tmp_path):
    """`edgekd distill --resume --out RUN` (the README's form) failed with "used a different configuration":
    it compared the interrupted run with the defaults. It continues that run now, and an option given that
    differs is named."""
    _interrupted(tmp_path / "a", student_epochs=4)
    result = run_cli_here("distill", "--resume", "--out", tmp_path / "a", "--quiet")
    assert result.returncode == 0, result.stderr
    assert tomllib.loads((tmp_path / "a" / "config.toml").read_text())["student_epochs"] == 4
    assert "resumed from a finished stage" in (tmp_path / "a" / "train.log").read_text()
    _interrupted(tmp_path / "b", student_epochs=4)
    result = run_cli_here("distill", "--resume", "--out", tmp_path / "b", "--student-epochs", "5", "--alpha", "0.3")
    assert_user_error(result, "--student-epochs: 4 then, 5 now")
    assert f"--alpha: {DistillConfig().alpha} then, 0.3 now" in result.stderr and (tmp_path / ".b.partial").is_dir()


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume(tmp_path):
    """A real process and a real SIGINT: the stage stays, and the hint is the command that continues it."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in {**FAST, "student_epochs": 2000}.items()]
    # SIGINT as a terminal sends it: a test run in the background (make test &) would pass on its ignored
    # SIGINT, and Python then installs no KeyboardInterrupt handler at all
    proc = subprocess.Popen([sys.executable, "-m", "edgekd", "distill", *args, "--out", str(out), "--quiet"],
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / ".run.partial" / "state").is_dir() and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["error: interrupted",
                                           f"hint: continue it with: edgekd distill --resume --out {out}"]
    assert (tmp_path / ".run.partial" / "config.toml").is_file() and not out.exists()
