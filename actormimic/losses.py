"""Policy-distillation losses: student logits (B, K) against teacher Q-values (B, K) of one game.

Every kind is computed per row and reduced over rows the same way ("mean" or "sum"), except
"seed-cc", which reproduces the seed paper's own reduction (see ``_seed_cc_rows``).  The
teacher target is softmax(teacher_q / T), optionally smoothed toward the uniform policy
((1 - s) target + s / K); with ``temperature_on="both"`` the student logits are divided by T as
well (the seed paper's code), with "teacher" only the teacher is (Actor-Mimic).
Teacher Q-values and expert features are treated as constants (detached).  Diagnostics are
detached 0-dim tensors (no host synchronisation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from actormimic.cc import log_partition_and_mean

__all__ = ["LOSS_KINDS", "distillation_loss", "distillation_losses", "feature_regression_loss"]

LOSS_KINDS = ("ce", "cc", "kl", "mse", "seed-cc")
TEMPERATURE_ON = ("teacher", "both")
REDUCTIONS = ("mean", "sum")

Rows = tuple[Tensor, dict[str, Tensor]]


def _ce_rows(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy of probability targets, per row."""
    return -(target * F.log_softmax(logits, -1)).sum(-1)


def _ce(logits: Tensor, target: Tensor, teacher_q: Tensor) -> Rows:
    """Cross-entropy to the teacher's soft policy."""
    return _ce_rows(logits, target), {}


def _kl(logits: Tensor, target: Tensor, teacher_q: Tensor) -> Rows:
    """KL(teacher || student) = CE - H(teacher), with 0 log 0 = 0."""
    return _ce_rows(logits, target) + torch.xlogy(target, target).sum(-1), {}


def _mse(logits: Tensor, target: Tensor, teacher_q: Tensor) -> Rows:
    """Mean over actions of the squared error between student outputs and teacher Q-values (no temperature)."""
    return (logits - teacher_q).square().mean(-1), {}


def _cc(logits: Tensor, target: Tensor, teacher_q: Tensor) -> Rows:
    """CC negative log-likelihood A(eta) - <eta, target> = CE - log C(softmax(eta))."""
    eta = _max_shifted(logits)
    return _cc_rows(logits, eta, target, *log_partition_and_mean(eta))


def _max_shifted(logits: Tensor) -> Tensor:
    """Logits minus their (constant) row max: A is evaluated at nodes <= 0."""
    return logits - logits.detach().amax(-1, keepdim=True)


def _cc_rows(logits: Tensor, eta: Tensor, target: Tensor, a: Tensor, mean: Tensor) -> Rows:
    """CC NLL rows and diagnostics from the normaliser A(eta) and mean of the max-shifted logits eta."""
    with torch.no_grad():
        diag = {
            "cc/logit_spread": (eta.amax(-1) - eta.amin(-1)).mean(),
            "cc/mean_target_l1": (mean - target).abs().sum(-1).mean(),
            "cc/softmax_target_l1": (eta.softmax(-1) - target).abs().sum(-1).mean(),
            "cc/log_normalizer": (a + logits.amax(-1)).mean(),
        }
    return a - (eta * target).sum(-1), diag


def _seed_log_sum(eta: Tensor) -> Tensor:
    """Seed closed form, input dtype: log sum_k softmax_k / prod_{i!=k}(e_k - e_i) - (K-1) log std, e = eta/std."""
    k = eta.shape[-1]
    std = eta.detach().std(-1, correction=0, keepdim=True)
    scaled = eta / std
    diffs = scaled.unsqueeze(-1) - scaled.unsqueeze(-2) + torch.eye(k, dtype=eta.dtype, device=eta.device)
    total = (eta.softmax(-1) / diffs.prod(-1)).sum(-1)
    return torch.log(total) - (k - 1) * torch.log(std[..., 0])


def _seed_cc_rows(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Seed paper's float32 CC NLL rows, the fallback mask, and the CE rows."""
    eta = logits.float()
    target = target.float()
    ce = _ce_rows(eta, target)
    with torch.no_grad():
        unstable = ~torch.isfinite(ce + _seed_log_sum(eta))
    # Recompute on harmless logits for unstable rows so no NaN leaks into the gradient.
    safe = torch.where(unstable.unsqueeze(-1), torch.arange(eta.shape[-1], dtype=eta.dtype, device=eta.device), eta)
    nll = torch.where(unstable, 0.0, ce + _seed_log_sum(safe))
    return nll, unstable, ce


def _seed_cc(logits: Tensor, target: Tensor, teacher_q: Tensor) -> Rows:
    """Seed paper's CC loss: float32 closed form with std rescale, CE fallback on unstable rows.

    A row falls back when its closed-form normaliser sum is not finite and positive (so that
    the NLL is not finite).  As in the seed code the CC rows are summed over the batch while
    the CE fallback rows are averaged (mean over fallback rows); this kind ignores
    ``reduction`` and returns a 0-dim loss directly.
    """
    nll, unstable, ce = _seed_cc_rows(logits, target)
    fb = unstable.to(ce.dtype)
    loss = nll.sum() + (ce * fb).sum() / fb.sum().clamp(min=1.0)
    spread = (logits.amax(-1) - logits.amin(-1)).mean()
    diag = {"cc/fallback_fraction": fb.mean().detach(), "cc/logit_spread": spread.detach()}
    return loss, diag


_KINDS: dict[str, Callable[[Tensor, Tensor, Tensor], Rows]] = {
    "ce": _ce,
    "cc": _cc,
    "kl": _kl,
    "mse": _mse,
    "seed-cc": _seed_cc,
}


def distillation_loss(
    kind: str,
    student_logits: Tensor,
    teacher_q: Tensor,
    temperature: float = 1.0,
    temperature_on: str = "teacher",
    reduction: str = "mean",
    smoothing: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Distillation loss of one kind in LOSS_KINDS and its diagnostics (detached 0-dim tensors)."""
    _check_args(kind, temperature, temperature_on, reduction, smoothing)
    logits, target = _prepare(kind, student_logits, teacher_q, temperature, temperature_on, smoothing)
    return _reduce(*_KINDS[kind](logits, target, teacher_q.detach()), reduction)


def _check_args(kind: str, temperature: float, temperature_on: str, reduction: str, smoothing: float) -> None:
    """Refuse an unknown kind, temperature placement or reduction, a non-positive temperature or a smoothing
    outside [0, 1)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown loss kind {kind!r}; allowed: {', '.join(LOSS_KINDS)}")
    if temperature_on not in TEMPERATURE_ON:
        raise ValueError(f"temperature_on must be one of {TEMPERATURE_ON}, got {temperature_on!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")


def _prepare(kind: str, student_logits: Tensor, teacher_q: Tensor, temperature: float,
             temperature_on: str, smoothing: float) -> tuple[Tensor, Tensor]:
    """Shape check; the student logits as the loss sees them and the (smoothed) teacher target softmax(Q/T)."""
    if student_logits.dim() != 2 or student_logits.shape != teacher_q.shape:
        shapes = f"{tuple(student_logits.shape)} and {tuple(teacher_q.shape)}"
        raise ValueError(f"expected matching (B, K) shapes, got {shapes}")
    target = (teacher_q.detach() / temperature).softmax(-1)
    if smoothing:
        target = (1.0 - smoothing) * target + smoothing / target.shape[-1]
    logits = student_logits / temperature if temperature_on == "both" and kind != "mse" else student_logits
    return logits, target


def _reduce(rows: Tensor, diag: dict[str, Tensor], reduction: str) -> tuple[Tensor, dict[str, Tensor]]:
    """Reduce per-row losses (a 0-dim loss passes through) and add it to the diagnostics."""
    loss = rows if rows.dim() == 0 else (rows.mean() if reduction == "mean" else rows.sum())
    diag["loss"] = loss.detach()
    return loss, diag


def distillation_losses(
    kind: str,
    student_logits: Mapping[str, Tensor],
    teacher_q: Mapping[str, Tensor],
    temperature: float = 1.0,
    temperature_on: str = "teacher",
    reduction: str = "mean",
    smoothing: float = 0.0,
) -> dict[str, tuple[Tensor, dict[str, Tensor]]]:
    """`distillation_loss` for several games at once ({game: (B_g, K_g)} logits and Q-values).

    Same values as one call per game; for "cc" the normalisers of all games' rows come from one
    padded `log_partition_and_mean` call, so the cost no longer grows with the number of games.
    """
    games = list(student_logits)
    if kind != "cc" or len(games) < 2:
        return {g: distillation_loss(kind, student_logits[g], teacher_q[g], temperature, temperature_on, reduction,
                                     smoothing) for g in games}
    _check_args(kind, temperature, temperature_on, reduction, smoothing)
    prepared = {g: _prepare(kind, student_logits[g], teacher_q[g], temperature, temperature_on, smoothing)
                for g in games}
    etas = [_max_shifted(prepared[g][0]) for g in games]
    width = max(eta.shape[1] for eta in etas)
    padded = torch.cat([F.pad(eta, (0, width - eta.shape[1])) for eta in etas])
    lengths = torch.cat([torch.full(eta.shape[:1], eta.shape[1], device=eta.device) for eta in etas])
    a, mean = log_partition_and_mean(padded, lengths)
    sizes = [eta.shape[0] for eta in etas]
    result = {}
    for g, eta, a_g, mean_g in zip(games, etas, a.split(sizes), mean.split(sizes)):
        logits, target = prepared[g]
        rows, diag = _cc_rows(logits, eta, target, a_g, mean_g[:, : eta.shape[1]])
        result[g] = _reduce(rows, diag, reduction)
    return result


def feature_regression_loss(
    student_features: Tensor, expert_features: Tensor, linear_map: nn.Linear, beta: float
) -> Tensor:
    """Actor-Mimic feature regression: beta * mean squared error of linear_map(student) vs expert features."""
    return beta * F.mse_loss(linear_map(student_features), expert_features.detach())
