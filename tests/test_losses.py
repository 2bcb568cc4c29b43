"""Golden values for kd_loss against an independent numpy computation."""
import numpy as np
import pytest
import torch

from edgekd.distill.losses import kd_loss


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference(s, t, y, T, alpha):
    """alpha·CE + (1−alpha)·T²·mean_over_batch(Σ p_t·log(p_t/p_s)), in float64 numpy."""
    ce = -np.mean(np.log(softmax(s)[np.arange(len(y)), y]))
    p_t, p_s = softmax(t / T), softmax(s / T)
    kl = np.sum(p_t * (np.log(p_t) - np.log(p_s))) / len(y)
    return alpha * ce + (1 - alpha) * T * T * kl


@pytest.fixture
def logits():
    rng = np.random.default_rng(7)
    return rng.normal(size=(5, 4)) * 3, rng.normal(size=(5, 4)) * 3, np.array([0, 3, 1, 1, 2])


@pytest.mark.parametrize("T,alpha", [(1.0, 0.0), (1.0, 1.0), (2.0, 0.1), (4.0, 0.5), (1.0, 0.3), (8.0, 0.0)])
def test_matches_independent_computation(logits, T, alpha):
    s, t, y = logits
    got = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), T, alpha).item()
    assert got == pytest.approx(reference(s, t, y, T, alpha), rel=1e-9, abs=1e-12)


def test_golden_value():
    s = torch.tensor([[2.0, 0.5, -1.0]])
    t = torch.tensor([[1.0, 1.0, 0.0]])
    y = torch.tensor([0])
    # CE of [2, 0.5, -1] at class 0 = -log(e²/(e²+e^0.5+e^-1)) = 0.2413113
    assert kd_loss(s, t, y, 2.0, 0.1).item() == pytest.approx(reference(s.numpy(), t.numpy(), y.numpy(), 2.0, 0.1), rel=1e-6)
    assert kd_loss(s, t, y, 1.0, 1.0).item() == pytest.approx(0.2413113, rel=1e-6)


def test_alpha_one_is_plain_cross_entropy(logits):
    s, t, y = map(torch.tensor, logits)
    assert kd_loss(s, t, y, 3.0, 1.0).item() == pytest.approx(torch.nn.functional.cross_entropy(s, y).item())


def test_identical_logits_have_no_soft_loss(logits):
    s, _, y = map(torch.tensor, logits)
    assert kd_loss(s, s.clone(), y, 2.0, 0.0).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("T", [1.0, 2.0, 5.0])
def test_soft_gradient_is_T_times_probability_difference(logits, T):
    """With the T² factor, d loss / d s = T·(softmax(s/T) − softmax(t/T)) / batch (Hinton et al. §2)."""
    s, t, y = logits
    student = torch.tensor(s, requires_grad=True)
    kd_loss(student, torch.tensor(t), torch.tensor(y), T, 0.0).backward()
    expected = T * (softmax(s / T) - softmax(t / T)) / len(y)
    np.testing.assert_allclose(student.grad.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_T_squared_keeps_gradient_scale_at_high_temperature():
    """Zero-mean logits: the soft gradient ≈ (s − t)/(K·batch), independent of T, for T ≫ logits."""
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    s, t = s - s.mean(1, keepdims=True), t - t.mean(1, keepdims=True)
    grads = []
    for T in (50.0, 100.0):
        student = torch.tensor(s, requires_grad=True)
        kd_loss(student, torch.tensor(t), torch.tensor([0, 1, 2]), T, 0.0).backward()
        grads.append(student.grad.numpy())
    # without the T² factor the two would differ by 4x; with it they agree to O(1/T)
    np.testing.assert_allclose(grads[0], grads[1], atol=3e-4)
    np.testing.assert_allclose(grads[1], (s - t) / (6 * 3), atol=3e-4)


@pytest.mark.parametrize("T,alpha", [(0.0, 0.5), (-1.0, 0.5), (1.0, -0.1), (1.0, 1.5)])
def test_rejects_bad_hyperparameters(logits, T, alpha):
    s, t, y = map(torch.tensor, logits)
    with pytest.raises(ValueError):
        kd_loss(s, t, y, T, alpha)
