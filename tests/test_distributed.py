"""``edgekd distill`` under torchrun: 2 CPU processes (gloo, DDP) reach the accuracies of one
process with the same config, and rank 0 alone writes files and prints."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.train.config import load_config
from edgekd.train.distill.experiment import run_experiment

from conftest import CONVERGING, assert_user_error, run_cli_here

GUARD = Path(__file__).with_name("rank_guard.py")
ROLES = ("teacher", "student", "simple")


def torchrun(root: Path, *args) -> subprocess.CompletedProcess:
    """``edgekd ARGS`` on 2 local CPU ranks, each rank's output in its own log file, through
    the guard that fails a rank other than 0 which writes under ``root``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "--log-dir", str(root / "logs"), "--redirects", "3", str(GUARD), str(root), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def rank_output(root: Path, rank: int) -> str:
    files = sorted((root / "logs").glob(f"*/attempt_0/{rank}/std*.log"))
    assert len(files) == 2, files
    return "".join(f.read_text() for f in files)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, converged_cpu_run):
    root = tmp_path_factory.mktemp("torchrun")
    single = converged_cpu_run
    # CONVERGING: parity is then a statement about the distributed step; what remains different
    # is BatchNorm statistics taken per rank (a batch of 64, not 128)
    options = [f"--{key.replace('_', '-')}={value}" for key, value in CONVERGING.items()]
    result = torchrun(root, "distill", *options, "--out", root / "ddp")
    assert result.returncode == 0, (result.stderr[-3000:], *(rank_output(root, r)[-2000:] for r in (0, 1)))
    return root, single, json.loads((root / "ddp" / "cv.json").read_text())


def test_torchrun_matches_one_process(runs):
    root, single, ddp = runs
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert "torchrun: 2 ranks, gloo backend" in (root / "ddp" / "train.log").read_text()
    for role in ROLES:
        assert abs(ddp["test"][role] - single["test"][role]) <= 0.015, (role, ddp["test"], single["test"])
    assert min(ddp["test"].values()) > 0.9        # the models learned, so the comparison means something
    # an epoch still covers the whole training part (the ranks' slices add up to every batch)
    assert ddp["folds"][0]["student"]["history"][-1]["train_accuracy"] > 0.9


# Without BatchNorm nothing is per rank: the distributed step is the one-process step, up to the
# order of float additions (measured: losses within 3e-7), so the whole training history must
# agree, not only the end result.
EXACT = dict(data="digits", teacher="mlp:hidden=64", student="mlp:hidden=16", folds=2, teacher_epochs=3,
             student_epochs=5, batch_size=100, seed=0)


def test_torchrun_without_batchnorm_repeats_one_process_step_for_step(tmp_path):
    single = run_experiment(load_config(None, **EXACT, out=str(tmp_path / "single")))
    options = [f"--{key.replace('_', '-')}={value}" for key, value in EXACT.items()]
    result = torchrun(tmp_path, "distill", *options, "--out", tmp_path / "ddp")
    assert result.returncode == 0, (result.stderr[-3000:], *(rank_output(tmp_path, r)[-2000:] for r in (0, 1)))
    ddp = json.loads((tmp_path / "ddp" / "cv.json").read_text())
    for split_single, split_ddp in zip((*single["folds"], single["final"]), (*ddp["folds"], ddp["final"])):
        for role in ROLES:
            one, two = split_single[role]["history"], split_ddp[role]["history"]
            assert len(one) == len(two) > 0
            for a, b in zip(one, two):
                assert b["loss"] == pytest.approx(a["loss"], rel=1e-5), (role, a, b)
                assert abs(b["train_accuracy"] - a["train_accuracy"]) <= 0.002, (role, a, b)
    assert ddp["test"] == pytest.approx(single["test"], abs=1 / 360)   # one sample of 360 at most


def test_samples_per_second_per_role_in_cv_json_and_train_log(runs):
    root, single, ddp = runs
    for summary in (single, ddp):
        assert set(summary["samples_per_second"]) == set(ROLES)
        speeds = [split[role]["samples_per_second"] for split in (*summary["folds"], summary["final"])
                  for role in ROLES]
        assert all(speed > 0 for speed in speeds)
        assert summary["samples_per_second"]["student"] == pytest.approx(
            sum(s["student"]["samples_per_second"] for s in (*summary["folds"], summary["final"])) / 3)
    log = (root / "ddp" / "train.log").read_text()
    assert "training throughput (samples/s, mean over splits): teacher" in log
    assert "fold1/student: 40 epochs in" in log and "teacher logits of" in log


def test_only_rank_zero_writes_and_prints(runs):
    root, _, _ = runs
    assert rank_output(root, 1) == ""                          # the guard also found no write by rank 1
    assert "held-out acc" in rank_output(root, 0)
    log = (root / "ddp" / "train.log").read_text().splitlines()
    assert sum(" final: teacher 0." in line for line in log) == 1     # one writer: no line twice
    assert sorted(p.name for p in root.iterdir()) == ["ddp", "logs"]   # no stray staging folders


def test_the_guard_catches_a_writing_rank(tmp_path):
    """The guard above is not vacuous: a process posing as rank 1 that writes a run folder fails it."""
    result = subprocess.run([sys.executable, str(GUARD), str(tmp_path), "distill", "--teacher", "mlp:hidden=8",
                             "--student", "mlp:hidden=8", "--folds", "2", "--teacher-epochs", "1",
                             "--student-epochs", "1", "--out", str(tmp_path / "run"), "--quiet"],
                            capture_output=True, text=True, env={**os.environ, "RANK": "1"},
                            timeout=300)
    assert result.returncode == 3 and f"rank 1 wrote under {tmp_path}" in result.stderr, result.stderr


def test_nccl_backend_without_gpu_fails_cleanly(tmp_path):
    result = run_cli_here("distill", "--backend", "nccl", "--device", "cpu", "--out", tmp_path / "run")
    assert_user_error(result, "nccl backend needs CUDA")
    assert not list(tmp_path.iterdir())


def test_an_error_rank_zero_finds_is_printed_once(tmp_path):
    """An existing --out is rank 0's finding (it alone looks at the run folder); the other rank
    gets it too and exits 2 as well, without a second copy of the message."""
    (tmp_path / "run").mkdir()
    result = torchrun(tmp_path, "distill", "--out", tmp_path / "run")
    assert result.returncode != 0
    assert "error: run folder" in rank_output(tmp_path, 0) and "already exists" in rank_output(tmp_path, 0)
    assert rank_output(tmp_path, 1) == ""
    assert "exitcode  : 2" in result.stderr + result.stdout        # both ranks: the user-error code


def test_torchrun_resumes_a_run_interrupted_in_one_process(tmp_path):
    """Rank 0 reads the finished stages and the epoch checkpoint; the other rank gets their
    state from it (and still writes nothing)."""
    fast = dict(data="digits", teacher="mlp:hidden=16", student="mlp:hidden=8", folds=2, teacher_epochs=2,
                student_epochs=3, batch_size=64, seed=0)

    class Interrupt(Exception):
        pass

    def stop_in_second_fold(event, **info):
        if event == "epoch" and info["split"] == "fold2" and info["role"] == "student" and info["record"]["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_experiment(load_config(None, **fast, out=str(tmp_path / "run")), reporter=stop_in_second_fold)
    result = torchrun(tmp_path, "distill", "--config", tmp_path / ".run.partial" / "config.toml", "--resume")
    assert result.returncode == 0, (result.stderr[-3000:], rank_output(tmp_path, 1))
    assert rank_output(tmp_path, 1) == ""
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("resumed from a finished stage") == 4          # fold1's trio and fold2's teacher
    cv = json.loads((tmp_path / "run" / "cv.json").read_text())
    assert cv["world_size"] == 2
    assert [r["epoch"] for r in cv["folds"][1]["student"]["history"]] == [1, 2, 3]   # epochs 1-2 from the checkpoint


def test_a_sweep_under_torchrun_trains_on_both_ranks_and_rank_0_alone_writes(tmp_path):
    result = torchrun(tmp_path, "sweep", "--students", "mlp:hidden=8;mlp:hidden=16", "--folds", "1",
                      "--teacher-epochs", "2", "--student-epochs", "3", "--threads", "1", "--min-seconds", "0",
                      "--out", tmp_path / "sw", "--json")
    assert result.returncode == 0, (result.stderr[-3000:], *(rank_output(tmp_path, r)[-2000:] for r in (0, 1)))
    doc = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [s["spec"] for s in doc["students"]] == ["mlp:hidden=8", "mlp:hidden=16"]
    logs = [(tmp_path / "sw" / s["run"] / "train.log").read_text() for s in doc["students"]]
    assert all("torchrun: 2 ranks, gloo backend" in log for log in logs)
    assert logs[1].count("/teacher: the sweep's shared teacher, trained once") == 2
    assert json.loads(rank_output(tmp_path, 0)[rank_output(tmp_path, 0).index("{"):])["pick"]["by"] == "fastest"
    assert "{" not in rank_output(tmp_path, 1)        # rank 1 printed nothing


def test_torchrun_with_a_transfer_set_repeats_one_process_step_for_step(tmp_path):
    """Both the labelled and the unlabelled batch are cut over the ranks: without BatchNorm the
    two-rank run is the one-process run, the transfer set (``rest``, ratio 3) included."""
    options = {**EXACT, "student_fraction": 0.3, "unlabelled": "rest", "unlabelled_ratio": 3}
    single = run_experiment(load_config(None, **options, out=str(tmp_path / "single")))
    result = torchrun(tmp_path, "distill", *[f"--{k.replace('_', '-')}={v}" for k, v in options.items()],
                      "--out", tmp_path / "ddp")
    assert result.returncode == 0, (result.stderr[-3000:], *(rank_output(tmp_path, r)[-2000:] for r in (0, 1)))
    ddp = json.loads((tmp_path / "ddp" / "cv.json").read_text())
    for split_single, split_ddp in zip((*single["folds"], single["final"]), (*ddp["folds"], ddp["final"])):
        assert split_ddp["unlabelled_samples"] == split_single["unlabelled_samples"] > 0
        one, two = split_single["student"]["history"], split_ddp["student"]["history"]
        assert [b["loss"] for b in two] == pytest.approx([a["loss"] for a in one], rel=1e-5)
