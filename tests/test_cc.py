"""Tests for actormimic.cc against high-precision mpmath references (two independent methods)."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import lru_cache

import mpmath as mp
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from actormimic import cc
from actormimic.cc import ContinuousCategorical, cc_mean, log_partition, log_partition_and_mean

KS = (2, 3, 5, 18, 64)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Single-threaded torch: much faster than oversubscribed threads on a shared 2-core box."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------- mpmath references


def dd_newton(nodes: Sequence[float], dps: int) -> mp.mpf:
    """Divided difference of exp by Newton's table on sorted nodes; equal end nodes use exp(a)/n!."""
    with mp.workdps(dps):
        x = sorted(mp.mpf(a) for a in nodes)
        col = [mp.exp(a) for a in x]
        for level in range(1, len(x)):
            col = [
                mp.exp(x[i]) / mp.factorial(level)
                if x[i] == x[i + level]
                else (col[i + 1] - col[i]) / (x[i + level] - x[i])
                for i in range(len(x) - level)
            ]
        return +col[0]


def dd_residue(nodes: Sequence[float], dps: int) -> mp.mpf:
    """Divided difference of exp as the sum of residues of e^s / prod (s - a)^m, exact multiplicities."""
    with mp.workdps(dps):
        mult = Counter(mp.mpf(a) for a in nodes)
        total = mp.mpf(0)
        for a, m in mult.items():
            series = [mp.exp(a) / mp.factorial(r) for r in range(m)]  # Taylor coefficients of e^(a+h)
            for b, mb in mult.items():
                if b != a:  # times (a - b + h)^(-mb), expanded in h
                    fac = [mp.binomial(-mb, r) * (a - b) ** (-mb - r) for r in range(m)]
                    series = [sum(series[i] * fac[r - i] for i in range(r + 1)) for r in range(m)]
            total += series[m - 1]
        return +total


def _digits_needed(nodes: Sequence[float]) -> int:
    """Rough count of decimal digits lost to cancellation (from gaps below 1), plus a margin."""
    loss = max(sum(-math.log10(abs(a - b)) for b in nodes if 0 < abs(a - b) < 1) for a in nodes)
    return 40 + int(loss + math.lgamma(len(nodes)) / math.log(10))


@lru_cache(maxsize=None)
def ref_log_dd(nodes: tuple[float, ...]) -> mp.mpf:
    """log of the divided difference of exp (the CC log-normaliser), Newton and residues cross-checked."""
    dps = _digits_needed(nodes)
    while True:  # Newton at dps and 2*dps must agree, else double the precision
        a, b = dd_newton(nodes, dps), dd_newton(nodes, 2 * dps)
        with mp.workdps(2 * dps):
            if a > 0 and abs(a - b) <= abs(b) * mp.mpf(10) ** -40:
                break
        dps *= 2
    c = dd_residue(nodes, 2 * dps)
    with mp.workdps(2 * dps):
        assert abs(c - b) <= abs(b) * mp.mpf(10) ** -35, "the two mpmath references disagree"
        return mp.log(b)


def ref_mean(nodes: tuple[float, ...], which: Sequence[int] | None = None) -> list[float]:
    """CC mean components dA/deta_k = f[eta, eta_k] / f[eta] (node k doubled)."""
    base = ref_log_dd(nodes)
    idx = range(len(nodes)) if which is None else which
    return [float(mp.exp(ref_log_dd((*nodes, nodes[k])) - base)) for k in idx]


def ref_second_moment(nodes: tuple[float, ...]) -> list[float]:
    """E[x_k^2] = 2 f[eta, eta_k, eta_k] / f[eta] (node k tripled)."""
    base = ref_log_dd(nodes)
    return [float(2 * mp.exp(ref_log_dd((*nodes, nodes[k], nodes[k])) - base)) for k in range(len(nodes))]


def test_references_agree_with_known_values() -> None:
    """The references reproduce the uniform and K=2 closed forms."""
    assert float(ref_log_dd((0.0,) * 5)) == pytest.approx(-math.log(24), rel=1e-15)
    assert float(ref_log_dd((0.0, 1e-3))) == pytest.approx(math.log(math.expm1(1e-3) / 1e-3), rel=1e-15)
    assert float(dd_residue([1.0, 2.0, 2.0], 50)) == pytest.approx(float(dd_newton([1.0, 2.0, 2.0], 50)), rel=1e-15)


# ---------------------------------------------------------------- test inputs


def cases(k: int) -> list[tuple[str, tuple[float, ...]]]:
    """Named hard inputs: ties, all-equal, spreads 1e-12..1e4, offsets +-1e4, dominant coordinates, A ~ 0."""
    rng = random.Random(1000 + k)
    out = [("zeros", (0.0,) * k), ("equal+1e4", (1e4,) * k)]
    out.append(("ties", tuple(float(rng.randint(-2, 2)) for _ in range(k))))
    out.append(("ties-1e-12", tuple(1e-12 * rng.randint(0, 2) for _ in range(k))))
    for spread in (1e-12, 1e-6, 1e-2, 1.0, 30.0, 1e3, 1e4):
        base = [rng.random() * spread for _ in range(k)]
        for offset in (0.0, 1e4, -1e4):
            out.append((f"spread{spread:g}{offset:+g}", tuple(b + offset for b in base)))
    out.append(("dominant", (1e4,) + (0.0,) * (k - 1)))
    out.append(("dominant-noisy", (50.0,) + tuple(rng.random() for _ in range(k - 1))))
    out.append(("one-low", (-1e4,) + (0.0,) * (k - 1)))
    wide = (0.0,) + tuple(-1e4 * rng.random() for _ in range(k - 1))
    a0 = float(ref_log_dd(wide))
    out.append(("wide-A~0", tuple(w - a0 for w in wide)))
    return out


def _ids(k: int) -> list[str]:
    """pytest ids for cases(k)."""
    return [name for name, _ in cases(k)]


# ---------------------------------------------------------------- accuracy


@pytest.mark.parametrize("k", KS)
def test_log_partition_float64_accuracy(k: int) -> None:
    """Relative error |dA| / max(1, |A|) <= 1e-12 on every hard input."""
    named = cases(k)
    got = log_partition(torch.tensor([c for _, c in named], dtype=torch.float64))
    for (name, nodes), a in zip(named, got.tolist()):
        ref = float(ref_log_dd(nodes))
        assert abs(a - ref) / max(1.0, abs(ref)) <= 1e-12, (name, a, ref)


@pytest.mark.parametrize("k", (2, 3, 5, 18))
def test_gradient_float64_accuracy(k: int) -> None:
    """|grad A - CC mean| <= 1e-10 for every component on every hard input."""
    named = cases(k)[:: 1 if k < 18 else 3]
    logits = torch.tensor([c for _, c in named], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(log_partition(logits).sum(), logits)
    for (name, nodes), g in zip(named, grad.tolist()):
        err = max(abs(x - y) for x, y in zip(g, ref_mean(nodes)))
        assert err <= 1e-10, (name, err)


def test_gradient_float64_accuracy_k64() -> None:
    """K=64: selected mean components (largest, smallest, first) within 1e-10, mean sums to 1."""
    named = [c for c in cases(64) if c[0] in ("spread1e-12+0", "spread1+0", "spread10000+0", "ties", "wide-A~0")]
    logits = torch.tensor([c for _, c in named], dtype=torch.float64)
    _, mean = log_partition_and_mean(logits)
    for (name, nodes), m in zip(named, mean):
        which = sorted({0, int(torch.tensor(nodes).argmax()), int(torch.tensor(nodes).argmin())})
        err = max(abs(m[j].item() - r) for j, r in zip(which, ref_mean(nodes, which)))
        assert err <= 1e-10, (name, err)
        assert abs(m.sum().item() - 1.0) <= 1e-13


@pytest.mark.parametrize("k", KS)
def test_log_partition_float32_accuracy(k: int) -> None:
    """float32 in, float32 out: relative error <= 1e-6 against the exact value for the float32 inputs."""
    named = cases(k)[:: 1 if k < 64 else 3]
    logits = torch.tensor([c for _, c in named], dtype=torch.float32)
    got = log_partition(logits)
    assert got.dtype == torch.float32
    for row, a in zip(logits.double().tolist(), got.tolist()):
        ref = float(ref_log_dd(tuple(row)))
        assert abs(a - ref) / max(1.0, abs(ref)) <= 1e-6, (row[:3], a, ref)


def test_matches_mpmath_on_random_small_problems() -> None:
    """Random K<=8 problems across scales, value and gradient."""
    gen = torch.Generator().manual_seed(7)
    for _ in range(12):
        k = int(torch.randint(2, 9, (1,), generator=gen))
        scale = 10.0 ** float(torch.empty(1).uniform_(-8, 3, generator=gen))
        logits = (torch.randn(k, generator=gen, dtype=torch.float64) * scale).requires_grad_(True)
        a = log_partition(logits)
        (g,) = torch.autograd.grad(a, logits)
        nodes = tuple(logits.tolist())
        assert abs(a.item() - float(ref_log_dd(nodes))) <= 1e-12 * max(1.0, abs(a.item()))
        assert max(abs(x - y) for x, y in zip(g.tolist(), ref_mean(nodes))) <= 1e-10


def test_far_nodes_stay_accurate_beyond_exact_range() -> None:
    """Spreads beyond 16384 use the asymptotic expansion in 1/(max - eta): A within 1e-7, mean within 3e-5."""
    rows = [(0.0, -1e5, 3.0), (0.0, -2e4, 3.0, 1.0), (0.0, -1e6, -1e6, 1.0), (5.0, -16385.0, -16383.0)]
    rows += [(0.0, 0.0, 0.0, 0.0, -d) for d in (16390.0, 3e4, 1e7, 1e16)]
    for nodes in rows:
        a, mean = log_partition_and_mean(torch.tensor(nodes, dtype=torch.float64))
        assert abs(a.item() - float(ref_log_dd(nodes))) <= 1e-7, nodes
        assert max(abs(x - y) for x, y in zip(mean.tolist(), ref_mean(nodes))) <= 3e-5, nodes


def test_ragged_rows_match_mpmath_and_ignore_padding() -> None:
    """`lengths`: each row is the CC of its prefix (checked against mpmath), whatever the padding holds."""
    gen = torch.Generator().manual_seed(11)
    lengths = torch.tensor([1, 2, 3, 5, 8, 8, 4, 6])
    logits = torch.randn(8, 8, dtype=torch.float64, generator=gen) * torch.tensor([[0.01], [1], [5], [40]]).repeat(2, 1)
    logits[6, 1] = -3e4  # a far node inside a prefix
    padded = logits.clone()
    padded[torch.arange(8) >= lengths[:, None]] = torch.tensor(float("inf")).double()
    padded[0, 1:] = -1e300  # any junk, at any distance
    a, mean = log_partition_and_mean(padded.requires_grad_(True), lengths)
    (grad,) = torch.autograd.grad(a.sum(), padded)
    for row, n in enumerate(lengths.tolist()):
        nodes = tuple(logits[row, :n].tolist())
        far = row == 6  # the asymptotic expansion beyond 16384: the same tolerances as for full rows
        assert abs(a[row].item() - float(ref_log_dd(nodes))) <= (1e-7 if far else 1e-12) * max(1.0, abs(a[row].item()))
        assert max(abs(x - y) for x, y in zip(mean[row, :n].tolist(), ref_mean(nodes))) <= (3e-5 if far else 1e-10)
        assert torch.all(mean[row, n:] == 0) and torch.all(grad[row, n:] == 0) and torch.isfinite(grad[row]).all()
    torch.testing.assert_close(grad, mean, rtol=0, atol=0)
    with pytest.raises(ValueError, match="lengths must have shape"):
        log_partition_and_mean(logits, lengths[:3])


def test_ragged_rows_equal_separate_calls() -> None:
    """One padded call for games of 3, 4 and 18 actions gives each game's separate result (to rounding)."""
    gen = torch.Generator().manual_seed(5)
    games = [torch.randn(6, k, dtype=torch.float64, generator=gen) * 3 for k in (3, 4, 18)]
    padded = torch.cat([torch.nn.functional.pad(g, (0, 18 - g.shape[1])) for g in games])
    lengths = torch.tensor([g.shape[1] for g in games]).repeat_interleave(6)
    a, mean = log_partition_and_mean(padded, lengths)
    for i, g in enumerate(games):
        a1, mean1 = log_partition_and_mean(g)
        torch.testing.assert_close(a[6 * i: 6 * i + 6], a1, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(mean[6 * i: 6 * i + 6, : g.shape[1]], mean1, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- identities and robustness


@pytest.mark.parametrize("k", range(2, 65, 7))
def test_uniform(k: int) -> None:
    """A(0) = -log((K-1)!), mean 1/K."""
    a, mean = log_partition_and_mean(torch.zeros(3, k, dtype=torch.float64))
    assert torch.allclose(a, torch.full_like(a, -math.lgamma(k)), rtol=1e-14, atol=0)
    assert torch.allclose(mean, torch.full_like(mean, 1.0 / k), rtol=1e-13, atol=0)


def test_shift_invariance() -> None:
    """A(eta + c) = A(eta) + c and the mean is unchanged (exactly representable shifts)."""
    eta = torch.randn(20, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).mul(8).round()
    a, mean = log_partition_and_mean(eta)
    for c in (-1024.0, 3.0, 4096.0):
        a2, mean2 = log_partition_and_mean(eta + c)
        assert torch.allclose(a2, a + c, rtol=1e-15, atol=1e-12)
        assert torch.allclose(mean2, mean, rtol=0, atol=1e-14)


def test_gradcheck_float64() -> None:
    """torch.autograd.gradcheck on random, tied and widely spread logits."""
    gen = torch.Generator().manual_seed(3)
    scales = torch.tensor([[1e-3], [1.0], [30.0], [300.0]], dtype=torch.float64)
    eta = torch.randn(4, 5, dtype=torch.float64, generator=gen) * scales
    eta[0, :2] = 0.25
    assert torch.autograd.gradcheck(log_partition, (eta.requires_grad_(True),))


def test_fixed_squaring_loop_matches_shortened(monkeypatch: pytest.MonkeyPatch) -> None:
    """The capturable fixed 11-squaring loop (used on accelerators) gives the same numbers as the CPU shortcut."""
    eta = torch.cat([torch.randn(8, 7, dtype=torch.float64) * s for s in (0.1, 3.0, 100.0, 3000.0)])
    a1, m1 = log_partition_and_mean(eta)
    monkeypatch.setattr(cc, "_SHORTEN_ON_CPU", False)
    a2, m2 = log_partition_and_mean(eta)
    assert torch.equal(a1, a2) and torch.equal(m1, m2)


def test_chunking_matches_single_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Row chunking is invisible in the results."""
    eta = torch.randn(300, 6, dtype=torch.float64) * 4
    a1, m1 = log_partition_and_mean(eta)
    monkeypatch.setattr(cc, "_chunk_rows", lambda k, device: 7)
    a2, m2 = log_partition_and_mean(eta)
    assert torch.equal(a1, a2) and torch.equal(m1, m2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=2, max_size=8))
def test_no_nan_or_inf_for_finite_input(values: list[float]) -> None:
    """Any finite float64 input gives a finite A and a finite mean on the simplex."""
    a, mean = log_partition_and_mean(torch.tensor(values, dtype=torch.float64))
    assert torch.isfinite(a).all() and torch.isfinite(mean).all()
    assert (mean >= 0).all() and abs(mean.sum().item() - 1.0) <= 1e-12


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=7),
    st.floats(-12, 3.5),
    st.sampled_from([0.0, 1.0, -37.5, 1e4, -1e4]),
)
def test_property_matches_reference(unit: list[float], log_scale: float, offset: float) -> None:
    """Random problems across scales (spread <= 2 * 10^3.5) and offsets match the mpmath reference."""
    nodes = tuple(offset + u * 10**log_scale for u in unit)
    a = log_partition(torch.tensor(nodes, dtype=torch.float64)).item()
    ref = float(ref_log_dd(nodes))
    assert abs(a - ref) <= 1e-12 * max(1.0, abs(ref))


def test_extreme_finite_inputs() -> None:
    """Huge magnitudes, huge spreads and subnormals stay finite, in float64 and float32."""
    rows = [[1.7e308, -1.7e308, 0.0], [-1.7e308] * 3, [1e30, -1e30, 1.0], [5e-324, 0.0, -5e-324], [0.0, 1e6, -1e6]]
    a, mean = log_partition_and_mean(torch.tensor(rows, dtype=torch.float64))
    assert torch.isfinite(a).all() and torch.isfinite(mean).all()
    assert a[0].item() == pytest.approx(1.7e308)
    a32, mean32 = log_partition_and_mean(torch.tensor([[3.4e38, -3.4e38, 0.0], [1e-45, 0.0, 0.0]], dtype=torch.float32))
    assert torch.isfinite(a32).all() and torch.isfinite(mean32).all()


def test_nan_propagates_rowwise() -> None:
    """NaN in a row gives NaN for that row only."""
    eta = torch.tensor([[0.0, float("nan"), 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    a, mean = log_partition_and_mean(eta)
    assert a[0].isnan() and mean[0].isnan().all()
    assert torch.isfinite(a[1]) and torch.isfinite(mean[1]).all()


def test_shapes_and_dtypes() -> None:
    """Arbitrary batch shapes, empty batches, K=1, float32 gradients."""
    eta = torch.randn(2, 3, 4, requires_grad=True)
    a = log_partition(eta)
    assert a.shape == (2, 3) and a.dtype == torch.float32
    a.sum().backward()
    assert eta.grad is not None and eta.grad.dtype == torch.float32
    assert torch.allclose(eta.grad.sum(-1), torch.ones(2, 3))
    assert log_partition(torch.zeros(0, 5)).shape == (0,)
    assert log_partition(torch.tensor([2.5], dtype=torch.float64)).item() == 2.5


def test_double_backward_is_refused() -> None:
    """The gradient is not differentiable again (documented): asking for it raises."""
    eta = torch.randn(3, requires_grad=True, dtype=torch.float64)
    (g,) = torch.autograd.grad(log_partition(eta), eta, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


# ---------------------------------------------------------------- distribution


def test_k2_matches_continuous_bernoulli() -> None:
    """K=2 is the continuous Bernoulli with logit eta_1 - eta_2 (|logit| <= 12, where torch's CB is itself accurate)."""
    lam = torch.cat([torch.linspace(-12, 12, 41), torch.tensor([0.0, 1e-3, -1e-3])]).double()
    cb = torch.distributions.ContinuousBernoulli(logits=lam)
    d = ContinuousCategorical(torch.stack([lam + 0.5, torch.full_like(lam, 0.5)], -1))
    x = torch.rand(lam.shape, dtype=torch.float64)
    assert torch.allclose(d.log_prob(torch.stack([x, 1 - x], -1)), cb.log_prob(x), atol=1e-10, rtol=1e-10)
    assert torch.allclose(d.mean[:, 0], cb.mean, atol=1e-10)
    assert torch.allclose(d.variance[:, 0], cb.variance, atol=1e-8)
    assert torch.allclose(d.entropy(), cb.entropy(), atol=1e-8)


def test_variance_matches_reference() -> None:
    """Var(x_k) against mpmath second moments."""
    for nodes in [(0.0, 1.0, -2.0, 0.5), (3.0, 3.0, 3.0), (10.0, 0.0, 0.0, -5.0, 1e-9)]:
        d = ContinuousCategorical(torch.tensor(nodes, dtype=torch.float64))
        mean = ref_mean(nodes)
        ref = [s - m * m for s, m in zip(ref_second_moment(nodes), mean)]
        assert max(abs(x - y) for x, y in zip(d.variance.tolist(), ref)) <= 1e-12


def test_distribution_api_and_validation() -> None:
    """Shapes, expand, support, log_prob normalisation (K=3 by quadrature), validation errors."""
    eta = torch.randn(4, 3, dtype=torch.float64)
    d = ContinuousCategorical(eta, validate_args=True)
    assert d.batch_shape == (4,) and d.event_shape == (3,)
    assert d.sample((5,)).shape == (5, 4, 3)
    e = d.expand((2, 4))
    assert e.batch_shape == (2, 4) and e.log_prob(e.sample()).shape == (2, 4)
    assert torch.allclose(d.mean.sum(-1), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(d.mode, torch.nn.functional.one_hot(eta.argmax(-1), 3).double())
    with pytest.raises(ValueError):
        ContinuousCategorical(torch.tensor([0.0, float("nan")]), validate_args=True)
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor([0.5, 0.6, 0.1], dtype=torch.float64))
    with pytest.raises(ValueError):
        ContinuousCategorical(torch.tensor([1.0]))
    # density integrates to one over the 2-simplex (first two coordinates)
    one = ContinuousCategorical(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    n = 400
    grid = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    x1, x2 = torch.meshgrid(grid, grid, indexing="ij")
    inside = x1 + x2 < 1
    pts = torch.stack([x1[inside], x2[inside], 1 - x1[inside] - x2[inside]], -1)
    assert one.log_prob(pts).exp().sum().item() / n**2 == pytest.approx(1.0, abs=5e-3)


def test_entropy_matches_monte_carlo() -> None:
    """Entropy equals -E[log p(x)] (fixed seed, MC error)."""
    torch.manual_seed(0)
    d = ContinuousCategorical(torch.tensor([2.0, -1.0, 0.0, 0.3], dtype=torch.float64))
    lp = d.log_prob(d.sample((4000,)))
    assert abs(d.entropy().item() + lp.mean().item()) <= 5 * lp.std().item() / math.sqrt(4000)


@pytest.mark.parametrize(
    "logits",
    [[0.0, 0.0, 0.0], [1.0, -2.0, 3.0, 0.5], [0.0, -1e4, 3.0], [20.0, 0.0, 0.0, 0.0], [2.0, 2.0 + 1e-9, -1.0]],
)
def test_sampler_moments_and_marginal(logits: list[float]) -> None:
    """Samples on the simplex; mean/variance within MC error; last coordinate passes a KS test."""
    torch.manual_seed(1)
    n = 4000
    d = ContinuousCategorical(torch.tensor(logits, dtype=torch.float64))
    x = d.sample((n,))
    assert (x >= 0).all() and torch.allclose(x.sum(-1), torch.ones(n, dtype=torch.float64), atol=1e-12)
    mean, var = d.mean, d.variance
    assert ((x.mean(0) - mean).abs() <= 5 * (var / n).sqrt() + 1e-12).all()
    fourth = ((x - mean) ** 4).mean(0)
    assert ((x.var(0) - var).abs() <= 6 * ((fourth - var**2).clamp(min=0) / n).sqrt() + 1e-12).all()
    eta = torch.tensor(logits, dtype=torch.float64)

    lam = eta - eta[-1]

    def cdf(t: Sequence[float]) -> object:
        """Exact CDF of the last coordinate: 1 - (1-t)^(K-1) exp(A((1-t) lam) - A(lam)), lam = eta - eta_K."""
        tt = torch.as_tensor(t, dtype=torch.float64).clamp(0, 1 - 1e-16)[:, None]
        log_survival = (len(lam) - 1) * torch.log1p(-tt[:, 0]) + log_partition((1 - tt) * lam) - log_partition(lam)
        return (-torch.expm1(log_survival)).numpy()

    assert scipy.stats.kstest(x[:, -1].numpy(), cdf).pvalue > 1e-3


def test_rsample_gradient_matches_covariance() -> None:
    """Implicit reparameterisation: d E[<w, x>] / d eta = Cov(x, <w, x>) = J_mean^T w (MC, fixed seed)."""
    torch.manual_seed(2)
    eta = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x = ContinuousCategorical(eta).rsample((6000,))
    (g,) = torch.autograd.grad((x @ w).mean(), eta)
    jac = torch.autograd.functional.jacobian(lambda e: cc_mean(e), eta.detach())
    expected = jac.t() @ w
    assert torch.allclose(g, expected, atol=0.03), (g, expected)
    assert abs(g.sum().item()) <= 1e-10  # shift invariance holds sample by sample


# ---------------------------------------------------------------- accelerators / compilation


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_capture_matches_eager() -> None:
    """Forward + backward captured in a CUDA graph reproduce the eager CPU results."""
    eta_cpu = torch.randn(64, 18, dtype=torch.float64) * torch.logspace(-6, 4, 64, dtype=torch.float64)[:, None]
    static = eta_cpu.cuda().float().requires_grad_(True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            static.grad = None
            log_partition(static).sum().backward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    static.grad = None
    with torch.cuda.graph(graph):
        out = log_partition(static)
        out.sum().backward()
    graph.replay()
    torch.cuda.synchronize()
    a, mean = log_partition_and_mean(eta_cpu.float().double())
    assert torch.allclose(out.double().cpu(), a, rtol=1e-6, atol=1e-6)
    assert torch.allclose(static.grad.double().cpu(), mean, atol=1e-6)


@pytest.mark.slow
def test_torch_compile_matches_eager() -> None:
    """torch.compile of a loss using log_partition gives the eager value and gradient."""
    eta = (torch.randn(32, 6, dtype=torch.float64) * 5).requires_grad_(True)
    fn = torch.compile(lambda e: log_partition(e).sum())
    (g1,) = torch.autograd.grad(fn(eta), eta)
    (g2,) = torch.autograd.grad(log_partition(eta).sum(), eta)
    assert torch.allclose(g1, g2, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("k", (18, 64))
def test_gradient_float64_accuracy_all_cases_slow(k: int) -> None:
    """Every component, every hard case (slow for K=64)."""
    named = cases(k)
    _, mean = log_partition_and_mean(torch.tensor([c for _, c in named], dtype=torch.float64))
    for (name, nodes), m in zip(named, mean.tolist()):
        assert max(abs(x - y) for x, y in zip(m, ref_mean(nodes))) <= 1e-10, name
