"""Tests for actormimic.losses: every kind against an independent formula, diagnostics, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from actormimic.cc import ContinuousCategorical, log_partition
from actormimic.losses import LOSS_KINDS, distillation_loss, distillation_losses, feature_regression_loss


def _batch(b: int = 16, k: int = 6, scale: float = 3.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Student logits (requires grad) and teacher Q-values."""
    gen = torch.Generator().manual_seed(seed)
    student = (torch.randn(b, k, generator=gen) * scale).requires_grad_(True)
    return student, torch.randn(b, k, generator=gen) * scale


def test_loss_kinds() -> None:
    """The public list of kinds."""
    assert LOSS_KINDS == ("ce", "cc", "kl", "mse", "seed-cc")


@pytest.mark.parametrize("temperature_on", ["teacher", "both"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ce_matches_torch_cross_entropy(temperature_on: str, reduction: str) -> None:
    """ce == F.cross_entropy with probability targets softmax(Q/T); student divided by T only for 'both'."""
    student, q = _batch()
    t = 0.7
    loss, diag = distillation_loss("ce", student, q, temperature=t, temperature_on=temperature_on, reduction=reduction)
    logits = student / t if temperature_on == "both" else student
    expected = F.cross_entropy(logits, (q / t).softmax(-1), reduction=reduction)
    assert torch.allclose(loss, expected, rtol=1e-6)
    assert torch.equal(diag["loss"], loss.detach())


def test_kl_is_ce_minus_target_entropy() -> None:
    """kl = ce - H(target) and equals F.kl_div(batchmean); zero when the student equals the teacher."""
    student, q = _batch()
    kl, _ = distillation_loss("kl", student, q, temperature=2.0)
    ce, _ = distillation_loss("ce", student, q, temperature=2.0)
    target = (q / 2.0).softmax(-1)
    entropy = -(target * target.log()).sum(-1).mean()
    assert torch.allclose(kl, ce - entropy, rtol=1e-5)
    assert torch.allclose(kl, F.kl_div(student.log_softmax(-1), target, reduction="batchmean"), rtol=1e-5)
    same, _ = distillation_loss("kl", q / 2.0, q, temperature=2.0)
    assert abs(same.item()) < 1e-6


def test_cc_is_negative_log_prob_and_ce_minus_log_c() -> None:
    """cc = -CC(logits).log_prob(target) = CE - log C, with log C = logsumexp(eta) - A(eta)."""
    student, q = _batch(b=32, k=18)
    student64, q64 = student.detach().double(), q.double()
    loss, diag = distillation_loss("cc", student64, q64, temperature=1.5)
    target = (q64 / 1.5).softmax(-1)
    nll = -ContinuousCategorical(student64).log_prob(target)
    assert torch.allclose(loss, nll.mean(), rtol=1e-12)
    ce, _ = distillation_loss("ce", student64, q64, temperature=1.5)
    log_c = (student64.logsumexp(-1) - log_partition(student64)).mean()
    assert torch.allclose(loss, ce - log_c, rtol=1e-12)
    assert torch.allclose(diag["cc/log_normalizer"], log_partition(student64).mean())
    spread = (student64.amax(-1) - student64.amin(-1)).mean()
    assert torch.allclose(diag["cc/logit_spread"], spread)


def test_target_smoothing_matches_torch_label_smoothing_and_cc_log_prob() -> None:
    """ce with smoothing s == F.cross_entropy(label_smoothing=s); cc scores the smoothed target as a CC density."""
    student, q = _batch(b=24, k=6)
    ce, _ = distillation_loss("ce", student, q, temperature=0.5, smoothing=0.1)
    expected = F.cross_entropy(student, (q / 0.5).softmax(-1), label_smoothing=0.1)
    assert torch.allclose(ce, expected, rtol=1e-6)
    student64, q64 = student.detach().double(), q.double()
    cc, _ = distillation_loss("cc", student64, q64, temperature=0.5, smoothing=0.1)
    smoothed = 0.9 * (q64 / 0.5).softmax(-1) + 0.1 / 6
    assert torch.allclose(cc, -ContinuousCategorical(student64).log_prob(smoothed).mean(), rtol=1e-12)
    several = distillation_losses("cc", {"a": student64[:10], "b": student64[10:, :4]},
                                  {"a": q64[:10], "b": q64[10:, :4]}, temperature=0.5, smoothing=0.1)
    alone, _ = distillation_loss("cc", student64[10:, :4], q64[10:, :4], temperature=0.5, smoothing=0.1)
    assert torch.allclose(several["b"][0], alone, rtol=1e-12)
    assert torch.equal(distillation_loss("mse", student, q, smoothing=0.3)[0], distillation_loss("mse", student, q)[0])


def test_cc_gradient_is_mean_minus_target_and_diagnostics() -> None:
    """d cc / d logits = (CC mean - target) / B; the l1 diagnostics match that mean."""
    student, q = _batch(b=8, k=5)
    loss, diag = distillation_loss("cc", student, q)
    loss.backward()
    target = q.softmax(-1)
    mean = ContinuousCategorical(student.detach()).mean
    assert torch.allclose(student.grad, (mean - target) / 8, atol=1e-6)
    assert torch.allclose(diag["cc/mean_target_l1"], (mean - target).abs().sum(-1).mean(), atol=1e-6)
    softmax_l1 = (student.detach().softmax(-1) - target).abs().sum(-1).mean()
    assert torch.allclose(diag["cc/softmax_target_l1"], softmax_l1, atol=1e-6)


def test_cc_handles_exact_zero_targets_and_ties() -> None:
    """A target with exact zeros (closed simplex) and tied student logits give a finite loss and gradient."""
    student = torch.zeros(4, 6, requires_grad=True)
    q = torch.tensor([[0.0, -1e4, 0.0, 0.0, 0.0, 0.0]]).expand(4, 6)
    loss, _ = distillation_loss("cc", student, q)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
    assert loss.item() == pytest.approx(-math.log(math.factorial(5)), rel=1e-6)  # A(0) - <0, target>


def test_mse_matches_torch_and_ignores_temperature() -> None:
    """mse = F.mse_loss(student, Q) (mean over actions and rows), whatever the temperature."""
    student, q = _batch()
    loss, _ = distillation_loss("mse", student, q, temperature=3.0, temperature_on="both")
    assert torch.allclose(loss, F.mse_loss(student, q))
    total, _ = distillation_loss("mse", student, q, reduction="sum")
    assert torch.allclose(total, F.mse_loss(student, q, reduction="none").mean(-1).sum())


def test_seed_cc_matches_cc_on_well_separated_logits() -> None:
    """Well-separated logits: no fallback and the float32 closed form agrees with cc (summed over rows)."""
    k, b = 6, 10
    gen = torch.Generator().manual_seed(5)
    student = (torch.arange(k, dtype=torch.float32) * 1.5 + 0.2 * torch.rand(b, k, generator=gen)).requires_grad_(True)
    q = torch.randn(b, k, generator=gen)
    seed, diag = distillation_loss("seed-cc", student, q, temperature_on="both", temperature=1.0)
    cc, _ = distillation_loss("cc", student, q, reduction="sum")
    assert diag["cc/fallback_fraction"].item() == 0.0
    assert seed.item() == pytest.approx(cc.item(), rel=1e-3)
    (g_seed,) = torch.autograd.grad(seed, student)
    (g_cc,) = torch.autograd.grad(cc, student)
    assert torch.allclose(g_seed, g_cc, atol=1e-2)


def test_seed_cc_falls_back_on_close_logits() -> None:
    """Tied rows fall back to CE (mean over fallback rows), others stay CC (sum); no NaN leaks into grads."""
    k = 5
    separated = torch.arange(k, dtype=torch.float32) * 2.0
    student = torch.stack([separated, torch.zeros(k), separated + 1.0, torch.full((k,), 3.0)]).requires_grad_(True)
    q = torch.randn(4, k, generator=torch.Generator().manual_seed(1))
    loss, diag = distillation_loss("seed-cc", student, q)
    assert diag["cc/fallback_fraction"].item() == 0.5
    target = q.softmax(-1)
    ce_rows = F.cross_entropy(student, target, reduction="none")
    cc_rows = -ContinuousCategorical(student.detach().double()).log_prob(target.double()).float()
    expected = cc_rows[[0, 2]].sum() + ce_rows[[1, 3]].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-3)
    loss.backward()
    assert torch.isfinite(student.grad).all()
    all_tied, diag = distillation_loss("seed-cc", torch.zeros(3, k), q[:3])
    assert diag["cc/fallback_fraction"].item() == 1.0
    assert all_tied.item() == pytest.approx(F.cross_entropy(torch.zeros(3, k), target[:3]).item(), rel=1e-6)


def test_seed_cc_breaks_where_cc_does_not() -> None:
    """Close but distinct logits (the distillation regime): the float32 closed form is far off or falls back."""
    student = 1e-3 * torch.randn(64, 18, generator=torch.Generator().manual_seed(2))
    q = torch.randn(64, 18, generator=torch.Generator().manual_seed(3))
    seed, diag = distillation_loss("seed-cc", student, q)
    cc, _ = distillation_loss("cc", student, q, reduction="sum")
    assert diag["cc/fallback_fraction"].item() > 0.5 or abs(seed.item() - cc.item()) > 1.0


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_diagnostics_are_detached_scalars(kind: str) -> None:
    """Every kind returns a differentiable 0-dim loss and 0-dim detached diagnostics including 'loss'."""
    student, q = _batch()
    loss, diag = distillation_loss(kind, student, q)
    assert loss.dim() == 0 and loss.requires_grad
    assert "loss" in diag
    for value in diag.values():
        assert isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad
    loss.backward()
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_several_games_at_once_equal_one_call_per_game(kind: str) -> None:
    """distillation_losses (one padded normaliser call for cc) = distillation_loss per game, values and grads."""
    gen = torch.Generator().manual_seed(4)
    sizes = {"Pong": (5, 6), "Breakout": (7, 4), "Boxing": (3, 18)}
    logits = {g: (torch.randn(*shape, generator=gen) * 3).requires_grad_(True) for g, shape in sizes.items()}
    q = {g: torch.randn(*shape, generator=gen) for g, shape in sizes.items()}
    together = distillation_losses(kind, logits, q, temperature=0.5, temperature_on="both")
    grads = torch.autograd.grad(sum(loss for loss, _ in together.values()), list(logits.values()))
    for (game, x), grad in zip(logits.items(), grads):
        alone, diag = distillation_loss(kind, x, q[game], temperature=0.5, temperature_on="both")
        (grad_alone,) = torch.autograd.grad(alone, x)
        torch.testing.assert_close(together[game][0], alone, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, grad_alone, rtol=1e-5, atol=1e-6)
        assert together[game][1].keys() == diag.keys()
        for name in diag:
            torch.testing.assert_close(together[game][1][name], diag[name], rtol=1e-5, atol=1e-6)


def test_teacher_gets_no_gradient() -> None:
    """Teacher Q-values are constants."""
    student, q = _batch()
    q.requires_grad_(True)
    loss, _ = distillation_loss("cc", student, q)
    loss.backward()
    assert q.grad is None


def test_invalid_arguments() -> None:
    """Unknown kind names the allowed values; bad temperature_on, reduction, temperature, shapes raise."""
    student, q = _batch()
    with pytest.raises(ValueError, match="ce, cc, kl, mse, seed-cc"):
        distillation_loss("hinge", student, q)
    with pytest.raises(ValueError):
        distillation_loss("ce", student, q, temperature_on="student")
    with pytest.raises(ValueError):
        distillation_loss("ce", student, q, reduction="none")
    with pytest.raises(ValueError):
        distillation_loss("ce", student, q, temperature=0.0)
    with pytest.raises(ValueError):
        distillation_loss("ce", student, q[:, :3])
    with pytest.raises(ValueError, match="smoothing"):
        distillation_loss("ce", student, q, smoothing=1.0)


def test_feature_regression_loss() -> None:
    """beta * MSE(linear_map(student features), expert features); expert features get no gradient."""
    torch.manual_seed(0)
    lin = nn.Linear(7, 5)
    student, expert = torch.randn(4, 7, requires_grad=True), torch.randn(4, 5, requires_grad=True)
    loss = feature_regression_loss(student, expert, lin, beta=0.25)
    assert torch.allclose(loss, 0.25 * ((lin(student) - expert) ** 2).mean())
    loss.backward()
    assert expert.grad is None and student.grad is not None and lin.weight.grad is not None
