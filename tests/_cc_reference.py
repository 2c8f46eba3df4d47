"""High-precision mpmath references for the CC log-normaliser (two independent methods)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import mpmath as mp


def dd_newton(nodes: Sequence[float], dps: int) -> mp.mpf:
    """Divided difference of exp by Newton's table on sorted nodes; equal end nodes use exp(a)/n!."""
    with mp.workdps(dps):
        x = sorted(mp.mpf(a) for a in nodes)
        col = [mp.exp(a) for a in x]
        for level in range(1, len(x)):
            col = [
                mp.exp(x[i]) / mp.factorial(level) if x[i] == x[i + level] else (col[i + 1] - col[i]) / (x[i + level] - x[i])
                for i in range(len(x) - level)
            ]
        return +col[0]


def dd_residue(nodes: Sequence[float], dps: int) -> mp.mpf:
    """Divided difference of exp as the sum of residues of e^s / prod (s - a)^m, exact multiplicities."""
    with mp.workdps(dps):
        mult = Counter(mp.mpf(a) for a in nodes)
        total = mp.mpf(0)
        for a, m in mult.items():
            series = [mp.exp(a) / mp.factorial(r) for r in range(m)]  # Taylor of e^(a+h)
            for b, mb in mult.items():
                if b != a:  # times (a - b + h)^(-mb), expanded in h
                    fac = [mp.binomial(-mb, r) * (a - b) ** (-mb - r) for r in range(m)]
                    series = [sum(series[i] * fac[r - i] for i in range(r + 1)) for r in range(m)]
            total += series[m - 1]
        return +total


def _digits_needed(nodes: Sequence[float]) -> int:
    """Rough count of decimal digits the closed form loses to cancellation, plus a margin."""
    distinct = sorted(set(nodes))
    if len(distinct) < 2:
        return 40
    lo = min(nodes)
    worst = max(
        (a - lo) / math.log(10) - sum(math.log10(abs(a - b)) * nodes.count(b) for b in distinct if b != a) for a in distinct
    )
    floor = -math.lgamma(len(nodes)) / math.log(10)
    return 40 + max(0, int(worst - floor))


def ref_log_dd(nodes: Sequence[float]) -> mp.mpf:
    """log of the divided difference of exp (= CC log-normaliser), two methods cross-checked."""
    nodes = [float(a) for a in nodes]
    dps = _digits_needed(nodes)
    while True:
        a, b = dd_newton(nodes, dps), dd_newton(nodes, 2 * dps)
        with mp.workdps(2 * dps):
            if a > 0 and abs(a - b) <= abs(b) * mp.mpf(10) ** -40:
                break
        dps *= 2
    c = dd_residue(nodes, 2 * dps)
    with mp.workdps(2 * dps):
        assert abs(c - b) <= abs(b) * mp.mpf(10) ** -35, "mpmath references disagree"
        return mp.log(b)


def ref_mean(nodes: Sequence[float]) -> list[float]:
    """CC mean: dA/deta_k = f[eta, eta_k] / f[eta] (node k doubled)."""
    base = ref_log_dd(nodes)
    return [float(mp.exp(ref_log_dd([*nodes, nodes[k]]) - base)) for k in range(len(nodes))]


def ref_second_moment(nodes: Sequence[float]) -> list[float]:
    """E[x_k^2] = 2 f[eta, eta_k, eta_k] / f[eta]."""
    base = ref_log_dd(nodes)
    return [float(2 * mp.exp(ref_log_dd([*nodes, nodes[k], nodes[k]]) - base)) for k in range(len(nodes))]
