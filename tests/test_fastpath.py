"""The training step's fast paths (``edgekd.train.distill.fastpath``): the precision and memory format
``auto`` chooses per model, bf16 asked for where the CPU has none, the loss kept in fp32, and the
accuracy and records of a whole run in bf16 against fp32."""
import pytest
import torch

from conftest import CONVERGING, assert_user_error, run_cli_here
from edgekd.core.errors import ConfigError
from edgekd.train.config import load_config
from edgekd.train.distill import run_experiment
from edgekd.train.distill.fastpath import StepMode, native_bf16, step_mode
from edgekd.train.distill.losses import build_loss
from edgekd.train.distill.train import HardLabels, Trainee
from edgekd.train.models import MODELS, build

NATIVE = native_bf16("cpu")
needs_bf16 = pytest.mark.skipif(NATIVE is None, reason="this CPU has no native bf16 (AMX or AVX512-BF16)")


@pytest.fixture
def no_bf16(monkeypatch):
    """A CPU without native bf16: the two instruction-set probes that ``native_bf16`` reads, answering no."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)


@pytest.mark.parametrize("name", MODELS.names())
def test_auto_takes_bf16_for_dense_convolutions_only_and_channels_last_for_any(name):
    model = build(name, (1, 28, 28) if name != "mlp" else (1, 8, 8), 10)
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = bool(convolutions) and all(m.groups == 1 for m in convolutions)
    mode = step_mode(model, "cpu")
    assert mode.precision == ("bf16" if dense and NATIVE else "fp32"), mode.why
    assert mode.channels_last == bool(convolutions)
    assert mode.why.startswith("auto: ")


def test_the_reason_names_what_decided():
    student = build("mobilenetv3:variant=small,width=0.25", (1, 28, 28), 10)
    assert "11 of 52 convolutions are grouped or depthwise" in step_mode(student, "cpu").why or NATIVE is None
    assert step_mode(build("mlp", (1, 8, 8), 10), "cpu").why.startswith("auto: ")
    forced = step_mode(student, "cpu", "fp32", "contiguous")
    assert forced == StepMode("fp32", False, "--precision fp32")


def test_bf16_on_a_cpu_without_it_is_a_config_error_and_auto_falls_back_to_fp32(no_bf16):
    teacher = build("resnet:depth=8", (1, 28, 28), 10)
    with pytest.raises(ConfigError, match="this CPU has no native bf16") as caught:
        step_mode(teacher, "cpu", "bf16")
    assert "--precision auto" in caught.value.hint
    assert step_mode(teacher, "cpu") == StepMode("fp32", True, "auto: the CPU has no native bf16")


def test_distill_with_bf16_on_a_cpu_without_it_is_one_error_line_before_any_folder(tmp_path, no_bf16):
    result = run_cli_here("distill", "--precision", "bf16", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert_user_error(result, "this CPU has no native bf16")
    assert not list(tmp_path.iterdir())          # no run folder, no staging folder: nothing to --force away


@needs_bf16
def test_the_model_runs_in_bf16_and_the_loss_in_fp32():
    model = build("cnn:width=8,depth=2", (1, 8, 8), 3)
    seen = []
    model.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    kd = build_loss("kd", temperature=4.0, alpha=0.5)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    for loss in (kd, HardLabels()):
        trainee = Trainee(model, loss, mode=StepMode("bf16", True, "test"))
        teacher = {"logits": torch.randn(4, 3)} if loss is kd else {}
        logits, value, _ = trainee(StepMode("bf16", True).layout(x), teacher, y)
        assert seen.pop() == torch.bfloat16 and logits.dtype == value.dtype == torch.float32


def test_a_checkpoint_with_a_step_mode_edgekd_never_writes_is_damage(tmp_path):
    from edgekd.train.distill.checkpoints import EpochCheckpoint

    (tmp_path / "epoch.safetensors").write_bytes(b"")       # mode() reads epoch.json where load() would look
    (tmp_path / "epoch.json").write_text('{"epoch": 1, "history": [], "param_groups": [], '
                                         '"mode": {"precision": "int4", "memory_format": "contiguous", "why": ""}}')
    with pytest.raises(ConfigError, match="damaged: its step mode"):
        EpochCheckpoint(tmp_path).mode("cpu")


def test_a_bf16_checkpoint_does_not_resume_on_a_cpu_without_bf16(tmp_path, no_bf16):
    from edgekd.train.distill.checkpoints import EpochCheckpoint

    (tmp_path / "epoch.safetensors").write_bytes(b"")       # mode() reads epoch.json where load() would look
    (tmp_path / "epoch.json").write_text('{"epoch": 1, "history": [], "param_groups": [], '
                                         '"mode": {"precision": "bf16", "memory_format": "channels_last", "why": "x"}}')
    with pytest.raises(ConfigError, match="trained in bf16, which this machine has no native support for"):
        EpochCheckpoint(tmp_path).mode("cpu")


@needs_bf16
@pytest.mark.slow
def test_bf16_trains_the_demo_cnns_to_fp32s_accuracy_and_each_run_records_its_precision(tmp_path, converged_cpu_run):
    """The CONVERGING run (auto: bf16 here, its models' convolutions being dense) against the same run
    forced to fp32: every role's cross-validated accuracy (two folds, 1,437 rows) within a point, its test
    accuracy (360 rows, where a point is 3.6 images) within two; cv.json and train.log say which ran.
    Measured: cv within 0.3 points for every role."""
    out = tmp_path / "fp32"
    fp32 = run_experiment(load_config(None, **CONVERGING, device="cpu", precision="fp32", out=str(out)))
    bf16 = converged_cpu_run
    for role in ("teacher", "student", "simple"):
        assert abs(bf16["cv"][role]["mean"] - fp32["cv"][role]["mean"]) <= 0.01, (role, bf16["cv"], fp32["cv"])
        assert abs(bf16["test"][role] - fp32["test"][role]) <= 0.02, (role, bf16["test"], fp32["test"])
        assert (bf16["final"][role]["precision"], fp32["final"][role]["precision"]) == ("bf16", "fp32")
        assert bf16["final"][role]["memory_format"] == "channels_last"
    log = (out / "train.log").read_text()
    assert "final/student: " in log and "fp32 (--precision fp32), channels_last" in log
    assert 'precision = "fp32"' in (out / "config.toml").read_text()


@needs_bf16
def test_a_live_teacher_runs_in_its_own_precision_not_the_students():
    from edgekd.train.distill.distributed import SINGLE
    from edgekd.train.distill.epoch import EpochLoop
    from edgekd.train.distill.train import FitSettings, KDTarget

    teacher = build("cnn:width=8,depth=2", (1, 8, 8), 3)      # dense: bf16 here
    student = build("mobilenetv3:variant=small,width=0.25", (1, 8, 8), 3)
    settings = FitSettings(1, 4, 0.1, 0.0, 0)
    loop = EpochLoop(student, torch.optim.SGD(student.parameters(), lr=0.1), settings,
                     KDTarget(build_loss("kd"), teacher=teacher), SINGLE, step_mode(student, "cpu"))
    assert (loop.mode.precision, loop.teacher_mode.precision) == ("fp32", "bf16")
