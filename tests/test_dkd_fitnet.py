"""Golden values for the decoupled (DKD) and feature (FitNet) losses: against independent float64
numpy computations, DKD also against the authors' published formula on hand-worked logits."""
import math

import numpy as np
import pytest
import torch

from oracles import kd_loss

from edgekd.train.config import load_config
from edgekd.train.distill.losses import DKD, FitNet, LossInputs, build_loss, decoupled_parts, parse_loss
from edgekd.train.distill.inference import teacher_outputs
from edgekd.train.distill.train import FitSettings, KDTarget, fit
from edgekd.core.errors import ConfigError
from edgekd.train.models import build


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def dkd_reference(s, t, y, alpha, beta, T):
    """mdistiller's dkd_loss (the authors' code) transcribed to float64 numpy: the binary
    (target, rest) probabilities by masked sums, the non-target part by the −1000·mask trick."""
    gt = np.zeros_like(s)
    gt[np.arange(len(y)), y] = 1
    p_s, p_t = softmax(s / T), softmax(t / T)
    b_s = np.stack([(p_s * gt).sum(1), (p_s * (1 - gt)).sum(1)], 1)
    b_t = np.stack([(p_t * gt).sum(1), (p_t * (1 - gt)).sum(1)], 1)
    tckd = np.sum(b_t * (np.log(b_t) - np.log(b_s))) * T ** 2 / len(y)
    log_q_t, log_q_s = log_softmax(t / T - 1000 * gt), log_softmax(s / T - 1000 * gt)
    nckd = np.sum(np.exp(log_q_t) * (log_q_t - log_q_s)) * T ** 2 / len(y)
    return alpha * tckd + beta * nckd


@pytest.fixture
def logits():
    rng = np.random.default_rng(11)
    return rng.normal(size=(6, 5)) * 3, rng.normal(size=(6, 5)) * 3, np.array([0, 4, 1, 1, 2, 3])


@pytest.mark.parametrize("alpha,beta,T", [(1.0, 8.0, 4.0), (1.0, 1.0, 1.0), (0.5, 2.0, 2.0), (0.0, 8.0, 4.0)])
def test_dkd_matches_the_authors_code_in_numpy(logits, alpha, beta, T):
    s, t, y = logits
    loss = build_loss("dkd", alpha=alpha, beta=beta, temperature=T, warmup=0, ce_weight=0.0)
    got = loss(LossInputs(torch.tensor(s), {"logits": torch.tensor(t)}, torch.tensor(y))).item()
    assert got == pytest.approx(dkd_reference(s, t, y, alpha, beta, T), rel=1e-9)


def test_dkd_on_hand_worked_logits_follows_the_papers_formula():
    """Two samples, three classes, T = 1, worked by hand with the paper's eq. 1-6: b = (p_t, 1 − p_t),
    p̂ the distribution over the other classes; TCKD = KL(b_T ‖ b_S), NCKD = KL(p̂_T ‖ p̂_S)."""
    s = [[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    t = [[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    y = [0, 1]
    tckd = nckd = 0.0
    for s_row, t_row, target in zip(s, t, y):
        p_s = [math.exp(v) / sum(math.exp(u) for u in s_row) for v in s_row]
        p_t = [math.exp(v) / sum(math.exp(u) for u in t_row) for v in t_row]
        b_s, b_t = (p_s[target], 1 - p_s[target]), (p_t[target], 1 - p_t[target])
        tckd += sum(bt * math.log(bt / bs) for bt, bs in zip(b_t, b_s)) / 2
        others = [i for i in range(3) if i != target]
        q_s = [p_s[i] / b_s[1] for i in others]
        q_t = [p_t[i] / b_t[1] for i in others]
        nckd += sum(qt * math.log(qt / qs) for qt, qs in zip(q_t, q_s)) / 2
    # by hand: sample 1: b_T = (0.9094, 0.0906), b_S = (0.6652, 0.3348): TCKD 0.1659; p̂_T = (1/2, 1/2),
    # p̂_S = (0.7311, 0.2689): NCKD 0.1202. Sample 2: b_T = (0.7870, 0.2130), b_S = (1/3, 2/3): TCKD 0.4331;
    # p̂_T = p̂_S = (1/2, 1/2): NCKD 0. Batch means: 0.2995 and 0.0601.
    assert tckd == pytest.approx(0.2995, abs=2e-4) and nckd == pytest.approx(0.0601, abs=2e-4)
    got = decoupled_parts(torch.tensor(s), torch.tensor(t), torch.tensor(y), 1.0)
    assert [v.item() for v in got] == pytest.approx([tckd, nckd], rel=1e-6)


def test_kd_is_tckd_plus_one_minus_p_target_times_nckd(logits):
    """The paper's eq. 7, per sample: KL of the full distributions = TCKD + (1 − p_t^T)·NCKD."""
    s, t, y = map(torch.tensor, logits)
    T = 2.0
    for i in range(len(y)):
        row = slice(i, i + 1)
        tckd, nckd = decoupled_parts(s[row], t[row], y[row], T)
        p_target = torch.softmax(t[row] / T, 1)[0, y[i]]
        assert kd_loss(s[row], t[row], y[row], T, 0.0).item() == pytest.approx((tckd + (1 - p_target) * nckd).item(),
                                                                              rel=1e-9)


def test_dkd_warms_up_linearly_then_holds(logits):
    s, t, y = map(torch.tensor, logits)
    loss = build_loss("dkd", warmup=4, ce_weight=0.0)
    full = build_loss("dkd", warmup=0, ce_weight=0.0)(LossInputs(s, {"logits": t}, y)).item()
    seen = []
    for epoch in range(6):
        loss.start_epoch(epoch, 6)
        seen.append(loss(LossInputs(s, {"logits": t}, y)).item() / full)
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_dkd_gradients_stay_finite_for_a_confident_teacher():
    s = torch.tensor([[1.0, 0.0, -1.0]], requires_grad=True)
    loss = build_loss("dkd", warmup=0)(LossInputs(s, {"logits": torch.tensor([[60.0, 0.0, -60.0]])}, torch.tensor([0])))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


def test_fitnet_matches_numpy_conv_batchnorm_and_pooling():
    """1×1 conv + BatchNorm (batch statistics, as in training) of the student's map, pooled from
    4×4 to the teacher's 2×2, against float64 numpy."""
    rng = np.random.default_rng(3)
    f_s, f_t = rng.normal(size=(3, 2, 4, 4)), rng.normal(size=(3, 5, 2, 2))
    student_logits, y = rng.normal(size=(3, 4)), np.array([0, 3, 2])
    loss = FitNet(feat_weight=7.0, ce_weight=0.5).double()
    loss.adapter = torch.nn.Sequential(torch.nn.Conv2d(2, 5, 1, bias=False), torch.nn.BatchNorm2d(5)).double()
    weight = loss.adapter[0].weight.detach().numpy()[:, :, 0, 0]
    got = loss(LossInputs(torch.tensor(student_logits), {"features": torch.tensor(f_t)}, torch.tensor(y),
                          student_features=torch.tensor(f_s))).item()
    pooled = f_s.reshape(3, 2, 2, 2, 2, 2).mean(axis=(3, 5))
    mapped = np.einsum("oc,nchw->nohw", weight, pooled)
    mean, var = mapped.mean(axis=(0, 2, 3), keepdims=True), mapped.var(axis=(0, 2, 3), keepdims=True)
    normed = (mapped - mean) / np.sqrt(var + 1e-5)
    ce = -np.mean(np.log(softmax(student_logits)[np.arange(3), y]))
    assert got == pytest.approx(0.5 * ce + 7.0 * np.mean((normed - f_t) ** 2), rel=1e-9)


@pytest.mark.parametrize("student,teacher", [("cnn:width=4", "resnet:depth=8"), ("mlp:hidden=8", "cnn:width=16"),
                                             ("mobilenetv3:variant=small,width=0.25", "mlp:hidden=8")])
def test_fitnet_fits_an_adapter_between_any_two_zoo_families(student, teacher):
    x = torch.randn(4, 1, 16, 16)
    s, t = build(student, (1, 16, 16), 3), build(teacher, (1, 16, 16), 3)
    loss = build_loss("fitnet")
    loss.fit_to(s, t, x[:2])
    value = loss(LossInputs(s(x), teacher_outputs(t, x, loss.needs), torch.tensor([0, 1, 2, 0]),
                            student_features=s.forward_features(x)))
    value.backward()
    assert torch.isfinite(value) and all(p.grad is not None for p in loss.adapter.parameters())


@pytest.mark.slow
def test_fitnet_trains_its_adapter_and_the_student_learns():
    """A real fit: the adapter's weights move, and the feature term falls."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(96, 1, 8, 8, generator=generator)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    torch.manual_seed(0)
    teacher, student = build("cnn:width=8", (1, 8, 8), 2).eval(), build("cnn:width=4", (1, 8, 8), 2)
    loss = build_loss("fitnet", ce_weight=0.0)
    loss.fit_to(student, teacher, x[:2])
    before = loss.adapter[0].weight.detach().clone()
    target = KDTarget(loss, teacher_outputs(teacher, x, loss.needs))
    result = fit(student, x, y, FitSettings(epochs=20, batch_size=32, lr=0.02, weight_decay=0.0, seed=0), kd=target)
    assert not torch.equal(before, loss.adapter[0].weight)
    assert result.history[-1]["loss"] < 0.5 * result.history[0]["loss"]


def test_a_model_without_forward_features_is_one_error():
    with pytest.raises(ConfigError) as info:
        build_loss("fitnet").fit_to(torch.nn.Linear(4, 2), torch.nn.Linear(4, 2), torch.zeros(2, 4))
    assert "has no forward_features" in info.value.message and "--loss dkd or --loss kd" in info.value.hint


@pytest.mark.parametrize("spec,fragment", [("dkdd", "did you mean 'dkd'?"), ("dkd:betta=2", "did you mean 'beta'?"),
                                           ("dkd:beta=x", "a finite number"), ("dkd:warmup=-1", ">= 0"),
                                           ("kd:alpha=2", "in [0, 1]"), ("fitnet:100", "key=value"),
                                           ("dkd,betta=2", "did you mean 'beta'?"), ("fitnet,100", "example: dkd:beta=8")])
def test_bad_loss_specs_name_the_problem(spec, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, loss=spec)
    assert fragment in f"{info.value.message} {info.value.hint}"


def test_loss_options_and_the_runs_temperature_and_alpha():
    assert parse_loss("dkd: beta=2,warmup=5") == parse_loss("dkd, beta=2,warmup=5") == (DKD, {"beta": 2.0, "warmup": 5})
    kd = load_config(None, temperature=3.0, alpha=0.4).distillation_loss()
    assert (kd.temperature, kd.alpha) == (3.0, 0.4)
    dkd = load_config(None, loss="dkd:alpha=0.5", temperature=2.0, alpha=0.9).distillation_loss()
    assert (dkd.alpha, dkd.beta, dkd.temperature) == (0.5, 8.0, 2.0)      # dkd's alpha is its own (TCKD's weight)
    assert load_config(None, loss="kd:temperature=6", temperature=2.0).distillation_loss().temperature == 6.0


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["dkd:warmup=1", "fitnet"])
def test_each_loss_runs_a_whole_experiment(tmp_path, loss):
    """prepare → every split's trio (the adapter fitted to its student and teacher) → the run folder."""
    from edgekd.train.distill import run_experiment

    cfg = load_config(None, loss=loss, teacher="cnn:width=8", student="cnn:width=4", folds=2, teacher_epochs=1,
                      student_epochs=2, out=str(tmp_path / "run"))
    doc = run_experiment(cfg)
    assert doc["config"]["loss"] == loss and 0.0 <= doc["test"]["student"] <= 1.0
    kind = "features" if loss == "fitnet" else "logits"
    assert f"teacher {kind} of" in (tmp_path / "run" / "train.log").read_text()
    assert f"loss {loss}" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.slow
def test_a_compiled_step_with_fitnet_trains_as_the_eager_one():
    """--compile with a feature loss: the student's forward_features/forward_head and the adapter in one
    compiled step give the eager step's losses (up to float reordering: fp32, as bf16 rounds differently
    wherever the compiler fuses)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=generator)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    histories = []
    for compiled in (False, True):
        torch.manual_seed(0)
        teacher, student = build("cnn:width=8", (1, 8, 8), 2).eval(), build("cnn:width=4", (1, 8, 8), 2)
        loss = build_loss("fitnet")
        loss.fit_to(student, teacher, x[:2])
        settings = FitSettings(epochs=2, batch_size=32, lr=0.05, weight_decay=0.0, seed=0, optimizer="sgd",
                               compile=compiled, precision="fp32")
        result = fit(student, x, y, settings, kd=KDTarget(loss, teacher_outputs(teacher, x, loss.needs)))
        histories.append([h["loss"] for h in result.history])
    assert histories[1] == pytest.approx(histories[0], rel=1e-4)
