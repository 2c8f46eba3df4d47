"""Continuous-categorical (CC) distribution with a stable, host-sync-free log-normaliser.

For logits eta in R^K the CC density on the simplex (w.r.t. Lebesgue measure on the first
K-1 coordinates) is p(x | eta) = exp(<eta, x> - A(eta)), where exp(A(eta)) is the divided
difference of exp at the nodes eta_1..eta_K (Hermite-Genocchi).  The textbook closed form
sum_k exp(eta_k) / prod_{i!=k}(eta_k - eta_i) cancels catastrophically when logits are close
(the distillation regime) and divides by zero on ties, so it is not used here.

Algorithm (``_log_dd_exp``): the divided differences of exp at nodes z are the entries of
exp(Z) for the lower-bidiagonal Z = diag(z) + E (ones on the subdiagonal); the wanted value
is the corner exp(Z)[K-1, 0].  We shift the nodes by their max (z <= 0, exact shift
invariance A(eta + c) = A(eta) + c), pick per row the smallest s with spread / 2**s <= 8,
and use exp(Z) = D exp(W)**(2**s) D^-1 with W = diag(z / 2**s) + E and D = diag(2**(-s*i))
(the power-of-two similarity keeps the table entries O(1) instead of overflowing).  exp(W) is
evaluated as exp(-8) * Taylor(W + 8 I): the shifted matrix is entrywise non-negative, so the
Taylor series (degree K-1+51, Paterson-Stockmeyer with batched matmuls) and every squaring
only ever add non-negative numbers -- no cancellation anywhere, ties and clusters are not
special cases.  Rows are masked with torch.where so every row does the same fixed number of
operations (11 squarings cover spreads up to 8 * 2**11 = 16384): on accelerators and under
torch.compile there are no data-dependent Python branches and no .item(), so it can be
captured in a CUDA graph; only for CPU tensors in eager mode the squaring loop stops at the
largest s the batch needs (reading a CPU scalar is not a device sync; results are
bit-identical to the fixed loop).  Nodes further than 16384 below
the max are evaluated at distance 16384 and moved out with the asymptotic expansion
log f = c - log d - mu/d + O(1/d^2) (mu read off the clamped node's gradient; error
O((K/16384)^2), and it keeps the output finite for any finite input).  The gradient
(the CC mean) is computed in the same forward pass by the hand-written adjoint of the same
non-negative recurrences (all adjoint quantities are non-negative too), inside a custom
autograd.Function, so the mean comes for free for diagnostics and backward is one multiply.
Everything is computed in float64 and cast back to the input dtype.

Why this route (measured against mpmath references, see tests/test_cc.py and
scripts/bench_cc.py): on the worst family (K up to 64, spreads up to 1e4, offsets so that
A ~ 0) the absolute error of A was <= 3e-14 with the 8/11 split, against 2e-13..5e-13 for a
1/14 or 4/12 split (every squaring doubles the rounding error, so fewer squarings with a
longer all-positive Taylor series is both more accurate and no slower), while the closed
form fails outright and torch.linalg.matrix_exp is wrong for K >= 20 with close logits.
A contour-integral evaluation was rejected because its terms are complex and oscillating,
so relative accuracy is not guaranteed when the result is tiny (large spreads, large K).
Cost: O(B K^3 (2 sqrt(K + 51) + 11)) flops in float64 for forward and mean together.

Sampling is exact by sequential inversion: P(x_K > t) = (1-t)**(K-1) exp(t eta_K +
A((1-t) eta) - A(eta)) is solved for t by safeguarded Newton in log(1-t), then the remaining
coordinates are CC((1-t) eta_{1:K-1}) scaled by 1-t.  rsample differentiates through the
solved quantiles by the implicit function theorem (exact reparameterisation gradients).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.distributions import Distribution, constraints
from torch.distributions.utils import lazy_property

__all__ = [
    "ContinuousCategorical",
    "cc_mean",
    "log_partition",
    "log_partition_and_mean",
]

_THETA = 8.0  # scaled nodes lie in [-THETA, 0]
_SQUARINGS = 11  # spreads up to THETA * 2**SQUARINGS are handled exactly
_ZCAP = _THETA * 2.0**_SQUARINGS
_LN2 = math.log(2.0)
_NEWTON_STEPS = 20  # safeguarded Newton steps per sampled coordinate
_SHORTEN_ON_CPU = True  # CPU eager: stop squaring at the batch's largest need


def _tail_terms(theta: float, tol: float = 2.0**-56) -> int:
    """Taylor terms past order n that make every table entry's relative tail < tol."""
    n = 0
    while theta ** (n + 1) * math.exp(theta) / math.factorial(n + 1) > tol:
        n += 1
    return n


_TAIL = _tail_terms(_THETA)
_is_compiling = getattr(torch.compiler, "is_compiling", None) or torch._dynamo.is_compiling  # torch < 2.3


@lru_cache(maxsize=None)
def _plan(k: int, device: torch.device) -> tuple[int, int, Tensor, Tensor, Tensor]:
    """Paterson-Stockmeyer split (p, q), coefficients 1/m! as (q, p), identity, subdiagonal."""
    degree = k - 1 + _TAIL
    p = max(2, math.isqrt(degree + 1))
    q = -(-(degree + 1) // p)
    coef = [[1.0 / math.factorial(i * p + r) if i * p + r <= degree else 0.0 for r in range(p)] for i in range(q)]
    eye = torch.eye(k, dtype=torch.float64, device=device)
    sub = torch.diag(torch.ones(k - 1, dtype=torch.float64, device=device), -1)
    return p, q, torch.tensor(coef, dtype=torch.float64, device=device), eye, sub


def _squaring_steps(s: Tensor) -> int:
    """Loop length: fixed on accelerators / when compiling (graph-capturable), else the batch's largest s."""
    if s.device.type != "cpu" or _is_compiling() or not _SHORTEN_ON_CPU or s.numel() == 0:
        return _SQUARINGS
    return int(s.max())  # reading a CPU scalar is not a device synchronisation


def _log_dd_exp(z: Tensor, last: Tensor) -> tuple[Tensor, Tensor]:
    """log of the divided difference of exp at nodes z[b, :last[b] + 1] (B, K) and its gradient (zero past
    last[b]); needs max 0 and min >= -ZCAP.  The prefix's value is the corner exp(Z)[last, 0] of the full
    bidiagonal Z: the leading block of the exponential of a lower-triangular matrix is the exponential of
    its leading block, so rows of different lengths share one padded computation."""
    b, k = z.shape
    p, q, coef, eye, sub = _plan(k, z.device)
    s = torch.frexp(z.amin(-1).neg() / _THETA).exponent.clamp(0, _SQUARINGS)
    steps = _squaring_steps(s)
    scale = torch.exp2(-s.to(torch.float64))
    v = torch.addcmul(torch.full_like(z, _THETA), z, scale[:, None])  # nodes in [0, THETA]
    vmat = torch.diag_embed(v) + sub
    powers = [vmat]  # powers[r] = V^(r+1)
    for _ in range(p - 1):
        powers.append(torch.bmm(powers[-1], vmat))
    basis = torch.stack([eye.expand(b, k, k), *powers[: p - 1]])  # V^0..V^(p-1)
    blocks = (coef @ basis.reshape(p, -1)).reshape(q, b, k, k)
    top = powers[p - 1]
    horner = [blocks[q - 1]]  # horner[t] = X_(q-1-t), X_i = C_i + V^p X_(i+1)
    for i in range(q - 2, -1, -1):
        horner.append(torch.baddbmm(blocks[i], top, horner[-1]))
    active = (s[:, None] > torch.arange(steps, device=s.device))[:, :, None, None]  # (B, steps, 1, 1)
    squares = [horner[-1] * math.exp(-_THETA)]
    for j in range(steps):
        m = squares[-1]
        squares.append(torch.where(active[:, j], torch.bmm(m, m), m))
    rows = torch.arange(b, device=z.device)
    corner = squares[-1][rows, last, 0]
    mant, expo = torch.frexp(corner)
    logf = torch.log(mant) + (expo - s * last).to(torch.float64) * _LN2

    # Adjoint sweep of d log(corner), kept transposed (h = gradient^T) so every bmm reads
    # contiguous operands; every quantity is non-negative.
    h = torch.zeros_like(squares[0])
    h[rows, 0, last] = 1.0 / corner
    for j in range(steps - 1, -1, -1):
        m = squares[j]
        h = torch.where(active[:, j], torch.baddbmm(torch.bmm(m, h), h, m), h)
    h = h * math.exp(-_THETA)
    block_grads = [h]  # block_grads[i] = (dL/dC_i)^T, equal to (dL/dX_i)^T
    top_grad = torch.zeros_like(h)
    for i in range(q - 1):
        top_grad = torch.baddbmm(top_grad, horner[q - 2 - i], h)
        h = torch.bmm(h, top)
        block_grads.append(h)
    basis_grad = (coef.t() @ torch.stack(block_grads).reshape(q, -1)).reshape(p, b, k, k)
    power_grads = [top_grad]  # (dL/dV^r)^T for r = p, p-1, ..., 2 through V^r = V^(r-1) V
    for r in range(p - 1, 1, -1):
        power_grads.append(torch.baddbmm(basis_grad[r], vmat, power_grads[-1]))
    acc = torch.baddbmm(basis_grad[1], vmat, power_grads[-1])  # (dL/dV)^T
    # d/dv_i: diagonal of dL/dV plus sum_r diag((V^(r-1))^T dL/dV^r)
    pairs = basis[1:].transpose(-1, -2) * torch.stack(power_grads[::-1])
    gv = acc.diagonal(dim1=-2, dim2=-1) + pairs.sum((0, -1))
    return logf, gv * scale[:, None]


def _chunk_rows(k: int, device: torch.device) -> int:
    """Rows per chunk: keeps each (rows, K, K) float64 matrix ~1 MiB on CPU (cache), ~16 MiB elsewhere."""
    return max(1, (2**17 if device.type == "cpu" else 2**21) // (k * k))


def _log_partition_and_mean_impl(logits: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """A(eta) and its gradient for (..., K) logits (row prefixes of `lengths`), in float64, cast back."""
    shape, k = logits.shape, logits.shape[-1]
    x = logits.detach().reshape(-1, k).to(torch.float64)
    if lengths is None:
        last = torch.full(x.shape[:1], k - 1, device=x.device)
        valid = torch.ones_like(x, dtype=torch.bool)
    else:
        last = lengths.reshape(-1).to(x.device, torch.int64) - 1
        valid = torch.arange(k, device=x.device) <= last[:, None]
        x = torch.where(valid, x, -math.inf)
    m = x.amax(-1, keepdim=True)
    half_gap = 0.5 * m - 0.5 * x  # (max - x) / 2 without overflow
    far = valid & (half_gap > 0.5 * _ZCAP)
    z = torch.where(far, -_ZCAP, torch.where(valid, x - m, 0.0))  # padding sits at the max: no effect on spread
    chunk = _chunk_rows(k, z.device)
    parts = [_log_dd_exp(*c) for c in zip(z.split(chunk), last.split(chunk))] if z.shape[0] else [_log_dd_exp(z, last)]
    logf, grad = (torch.cat(t) for t in zip(*parts)) if len(parts) > 1 else parts[0]
    grad = torch.where(valid, grad, 0.0)
    # Far nodes (distance d > ZCAP) were evaluated at d = ZCAP; move them out with the expansion
    # log f = const - log d - mu / d + O(1/d^2), mu read off the clamped node's gradient.
    inv_d = 0.5 / half_gap
    mu = (1.0 / _ZCAP - grad) * _ZCAP**2
    shift = math.log(_ZCAP) - (torch.log(half_gap) + _LN2) + mu * (1.0 / _ZCAP - inv_d)
    a = m[:, 0] + logf + torch.where(far, shift, 0.0).sum(-1)
    grad = torch.where(far, inv_d * (1.0 - mu * inv_d), grad)
    # Restore sum(mean) = 1 (shift invariance): hand the residual to the near nodes in proportion.
    near = torch.where(far, 0.0, grad)
    grad = grad + near * ((1.0 - grad.sum(-1, keepdim=True)) / near.sum(-1, keepdim=True))
    return a.reshape(shape[:-1]).to(logits.dtype), grad.reshape(shape).to(logits.dtype)


class _LogPartition(torch.autograd.Function):
    """A(eta) with the CC mean returned alongside and used as the gradient."""

    @staticmethod
    def forward(ctx, logits: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        a, mean = _log_partition_and_mean_impl(logits, lengths)
        ctx.save_for_backward(mean)
        ctx.mark_non_differentiable(mean)
        return a, mean

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_a: Tensor, grad_mean: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (mean,) = ctx.saved_tensors
        return grad_a.unsqueeze(-1) * mean, None


def log_partition_and_mean(logits: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """A(eta) (differentiable, gradient = CC mean) and the CC mean (detached) for (..., K) logits.

    With `lengths` (shape logits.shape[:-1], integers in 1..K) each row is the CC over its first
    lengths[...] logits: the rest is padding, ignored, with zero mean and zero gradient.  Rows of
    several games with different action counts then cost one call (a few hundred small kernels)
    instead of one call per game.
    """
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError("logits must have shape (..., K) with K >= 1")
    if lengths is not None and lengths.shape != logits.shape[:-1]:
        raise ValueError(f"lengths must have shape {tuple(logits.shape[:-1])}, got {tuple(lengths.shape)}")
    return _LogPartition.apply(logits, lengths)


def log_partition(logits: Tensor) -> Tensor:
    """CC log-normaliser A(eta) = log of the divided difference of exp at the logits, shape (...)."""
    return log_partition_and_mean(logits)[0]


def _augmented_log_ratio(logits: Tensor, repeats: int) -> Tensor:
    """A(eta with eta_k repeated `repeats` more times) - A(eta) for every k, shape (..., K)."""
    eta = logits - logits.detach().amax(-1, keepdim=True)
    k = eta.shape[-1]
    rows = eta.unsqueeze(-2).expand(*eta.shape[:-1], k, k)
    extra = eta.unsqueeze(-1).expand(*eta.shape, repeats)
    return log_partition(torch.cat([rows, extra], -1)) - log_partition(eta).unsqueeze(-1)


def cc_mean(logits: Tensor) -> Tensor:
    """CC mean E[x] = grad A(eta); differentiable (via K+1-node normalisers) when grad is needed."""
    if torch.is_grad_enabled() and logits.requires_grad:
        return _augmented_log_ratio(logits, 1).exp()
    return log_partition_and_mean(logits)[1]


class ContinuousCategorical(Distribution):
    """Continuous-categorical distribution on the simplex, parameterised by logits (..., K)."""

    arg_constraints = {"logits": constraints.real_vector}
    support = constraints.simplex
    has_rsample = True

    def __init__(self, logits: Tensor, validate_args: bool | None = None) -> None:
        """Store logits; batch_shape = logits.shape[:-1], event_shape = (K,)."""
        if logits.dim() < 1 or logits.shape[-1] < 2:
            raise ValueError("logits must have shape (..., K) with K >= 2")
        self.logits = logits
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape: torch.Size, _instance: ContinuousCategorical | None = None) -> ContinuousCategorical:
        """Expand the batch shape without copying the logits."""
        new = self._get_checked_instance(ContinuousCategorical, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        super(ContinuousCategorical, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @lazy_property
    def log_normalizer(self) -> Tensor:
        """A(eta), shape batch_shape."""
        return log_partition(self.logits)

    @property
    def mean(self) -> Tensor:
        """E[x] = grad A(eta)."""
        return cc_mean(self.logits)

    @property
    def mode(self) -> Tensor:
        """The vertex of the largest logit (the density is log-linear)."""
        return torch.nn.functional.one_hot(self.logits.argmax(-1), self.logits.shape[-1]).to(self.logits.dtype)

    @property
    def variance(self) -> Tensor:
        """Var(x_k) = 2 f[eta, eta_k, eta_k] / f[eta] - E[x_k]^2 (f = divided difference of exp)."""
        second = math.log(2.0) + _augmented_log_ratio(self.logits, 2)
        return (second.exp() - self.mean.square()).clamp(min=0.0)

    def entropy(self) -> Tensor:
        """H = A(eta) - <eta, E[x]> (computed on max-shifted logits)."""
        eta = self.logits - self.logits.detach().amax(-1, keepdim=True)
        return log_partition(eta) - (eta * cc_mean(eta)).sum(-1)

    def log_prob(self, value: Tensor) -> Tensor:
        """log density <eta, x> - A(eta) w.r.t. Lebesgue measure on the first K-1 coordinates."""
        if self._validate_args:
            self._validate_sample(value)
        eta = self.logits - self.logits.detach().amax(-1, keepdim=True)
        return (value * eta).sum(-1) - log_partition(eta)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Exact sample by sequential inversion; differentiable by implicit reparameterisation."""
        shape = self._extended_shape(sample_shape)
        k = shape[-1]
        eta = self.logits.expand(shape).reshape(-1, k).to(torch.float64)
        u = 1.0 - torch.rand(eta.shape[0], k - 1, dtype=torch.float64, device=eta.device)  # in (0, 1]
        return _sample(eta, u).reshape(shape).to(self.logits.dtype)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:  # noqa: B008
        """Exact sample without gradients."""
        with torch.no_grad():
            return self.rsample(sample_shape)


def _solve_last(lam: Tensor, log_u: Tensor) -> tuple[Tensor, Tensor]:
    """Solve log P(x_n > t) = log_u for u* = log(1-t) by bracketed Newton; returns (u*, dH/du at u*)."""
    n = lam.shape[-1]
    a0, _ = _log_partition_and_mean_impl(lam, None)
    lo = (log_u + a0 + math.lgamma(n) - lam.amax(-1).clamp(min=0.0)) / (n - 1) - 1.0
    hi = torch.zeros_like(lo)
    u = torch.maximum(log_u / (n - 1), lo)
    slope = torch.ones_like(u)
    for _ in range(_NEWTON_STEPS):
        scaled = u.exp().unsqueeze(-1) * lam
        a, mean = _log_partition_and_mean_impl(scaled, None)
        h = (n - 1) * u + a - a0 - log_u
        slope = ((n - 1) + (scaled * mean).sum(-1)).clamp(min=1e-300)
        lo = torch.where(h < 0, u, lo)
        hi = torch.where(h < 0, hi, u)
        step = u - h / slope
        u = torch.where((step >= lo) & (step <= hi), step, 0.5 * (lo + hi))
    return u, slope


def _sample(eta: Tensor, uniforms: Tensor) -> Tensor:
    """Sample CC(eta) rows (B, K) from uniforms (B, K-1) by inverting the last coordinate's CDF."""
    k = eta.shape[-1]
    rest = eta
    mass = torch.ones_like(eta[:, 0])
    coords = []
    for step in range(k - 1):
        lam = rest - rest[:, -1:]
        log_u = torch.log(uniforms[:, step])
        with torch.no_grad():
            u_star, slope = _solve_last(lam.detach(), log_u)
        t = -torch.expm1(u_star)
        one_minus_t = u_star.exp()
        if torch.is_grad_enabled() and lam.requires_grad:
            # implicit function theorem: dt = -dG/G_t with G(t, lam) = log P(x_n > t) - log_u
            n = lam.shape[-1]
            g = (n - 1) * u_star + log_partition(one_minus_t.unsqueeze(-1) * lam) - log_partition(lam)
            delta = (g - g.detach()) * one_minus_t / slope
            t, one_minus_t = t + delta, one_minus_t - delta
        coords.append(mass * t)
        mass = mass * one_minus_t
        rest = lam[:, :-1] * one_minus_t.unsqueeze(-1)
    coords.append(mass)
    return torch.stack(coords[::-1], -1)
