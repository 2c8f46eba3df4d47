"""Score normalization, bootstrap intervals and rliable-style aggregate metrics (numpy only).

Definitions
-----------
* Human-normalized score: ``(score - random) / (human - random)`` with the per-game random and
  human reference scores below (0 = random play, 1 = human level).
* Expert-normalized score: ``(score - random) / (expert - random)`` where ``expert`` is the
  mean evaluation score of the game's DQN expert (0 = random play, 1 = expert level).
* Interquartile mean (IQM): mean of the values left after sorting and dropping ``floor(n / 4)``
  values from each end (identical to ``scipy.stats.trim_mean(x, 0.25)``).
* Percentile bootstrap: resample with replacement, recompute the statistic, and report the
  ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled statistics.
  Every bootstrap uses ``numpy.random.default_rng(seed)``, so results are deterministic.
* Stratified bootstrap (Agarwal et al., 2021, "Deep RL at the Edge of the Statistical
  Precipice"): for a ``(runs, games)`` score matrix, resample runs with replacement
  independently within each game, then recompute the aggregate over all games.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

# Random-policy scores (Mnih et al., 2015 / Badia et al., 2020).
RANDOM_SCORES: dict[str, float] = {
    "Atlantis": 12850.0,
    "Boxing": 0.1,
    "Breakout": 1.7,
    "CrazyClimber": 10780.5,
    "Enduro": 0.0,
    "Pong": -20.7,
    "Seaquest": 68.4,
    "SpaceInvaders": 148.0,
    "Freeway": 0.0,
    "Qbert": 163.9,
    "BeamRider": 363.9,
    "Asterix": 210.0,
}

# Human scores: "agent57" is the table used by Agent57 and rliable, "nature" by Mnih et al. (2015).
HUMAN_SCORES: dict[str, dict[str, float]] = {
    "agent57": {
        "Atlantis": 29028.1,
        "Boxing": 12.1,
        "Breakout": 30.5,
        "CrazyClimber": 35829.4,
        "Enduro": 860.5,
        "Pong": 14.6,
        "Seaquest": 42054.7,
        "SpaceInvaders": 1668.7,
        "Freeway": 29.6,
        "Qbert": 13455.0,
        "BeamRider": 16926.5,
        "Asterix": 8503.3,
    },
    "nature": {
        "Atlantis": 29028.1,
        "Boxing": 4.3,
        "Breakout": 31.8,
        "CrazyClimber": 35410.5,
        "Enduro": 309.6,
        "Pong": 9.3,
        "Seaquest": 20181.8,
        "SpaceInvaders": 1652.3,
        "Freeway": 29.6,
        "Qbert": 13455.0,
        "BeamRider": 5774.7,
        "Asterix": 8503.3,
    },
}

# Upper bound on the number of array elements one vectorized bootstrap chunk may allocate.
_CHUNK_ELEMENTS = 4_000_000


def human_normalized(game: str, score: float, table: str = "agent57") -> float | None:
    """Return (score - random) / (human - random) for an Atari game, or None if the game has no reference."""
    if table not in HUMAN_SCORES:
        raise ValueError(f"unknown human score table {table!r}; choose from {sorted(HUMAN_SCORES)}")
    if game not in HUMAN_SCORES[table] or game not in RANDOM_SCORES:
        return None
    random = RANDOM_SCORES[game]
    return float((score - random) / (HUMAN_SCORES[table][game] - random))


def expert_normalized(
    score: float | None, expert_score: float | None, random_score: float | None
) -> float | None:
    """Return (score - random) / (expert - random), or None if an input is missing or expert <= random."""
    if score is None or expert_score is None or random_score is None or expert_score <= random_score:
        return None
    return float((score - random_score) / (expert_score - random_score))


def _quantiles(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the percentile-interval bounds of bootstrap samples along axis 0."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha], axis=0)
    return lo, hi


def _chunks(n_boot: int, elements_per_sample: int) -> Iterator[int]:
    """Yield chunk sizes summing to n_boot, keeping each chunk's allocation bounded."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    size = max(1, _CHUNK_ELEMENTS // max(1, elements_per_sample))
    for start in range(0, n_boot, size):
        yield min(size, n_boot - start)


def _finite_array(x: Sequence[float] | np.ndarray, ndim: int, name: str) -> np.ndarray:
    """Convert x to a non-empty float array of the given rank without NaN or inf, else ValueError."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def bootstrap_mean_ci(
    samples: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap interval of the mean over axis 0 of a (n,) or (n, k) array; returns (lo, hi)."""
    arr = np.asarray(samples, dtype=float)
    if arr.ndim not in (1, 2):
        raise ValueError(f"samples must be 1-D or 2-D, got shape {arr.shape}")
    arr2 = _finite_array(arr if arr.ndim == 2 else arr[:, None], 2, "samples")
    n = arr2.shape[0]
    rng = np.random.default_rng(seed)
    means = []
    for size in _chunks(n_boot, n * arr2.shape[1]):
        idx = rng.integers(0, n, size=(size, n))
        means.append(arr2[idx].mean(axis=1))
    lo, hi = _quantiles(np.concatenate(means), confidence)
    return lo.reshape(arr.shape[1:]), hi.reshape(arr.shape[1:])


def summarize_returns(returns: Sequence[float] | np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Return {"mean", "std" (population, ddof=0), "ci95" (percentile bootstrap of the mean), "n"}."""
    arr = _finite_array(returns, 1, "returns")
    lo, hi = bootstrap_mean_ci(arr, n_boot=n_boot, seed=seed)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "ci95": [float(lo), float(hi)], "n": int(arr.size)}


def _iqm_last_axis(x: np.ndarray) -> np.ndarray:
    """Interquartile mean along the last axis (drops floor(n/4) values from each end)."""
    n = x.shape[-1]
    cut = n // 4
    return np.sort(x, axis=-1)[..., cut : n - cut].mean(axis=-1)


def interquartile_mean(x: Sequence[float] | np.ndarray) -> float:
    """Mean of the flattened values after dropping floor(n/4) from each end of the sorted values."""
    arr = _finite_array(np.ravel(np.asarray(x, dtype=float)), 1, "x")
    return float(_iqm_last_axis(arr))


# Aggregates of a (..., runs, games) array, reduced over the last two axes.
_AGGREGATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": lambda m: m.mean(axis=(-2, -1)),
    "median": lambda m: np.median(m.mean(axis=-2), axis=-1),
    "iqm": lambda m: _iqm_last_axis(m.reshape(*m.shape[:-2], -1)),
}


def _stratified_resample(matrix: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Return (size, runs, games) resamples drawing runs with replacement independently per game."""
    runs, games = matrix.shape
    idx = rng.integers(0, runs, size=(size, runs, games))
    return matrix[idx, np.arange(games)]


def aggregate(
    score_matrix: Sequence[Sequence[float]] | np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, dict]:
    """Mean, median (of per-game run means) and IQM (over all runs x games) of a (runs, games) matrix.

    Each entry is {"value", "ci95": [lo, hi]}; "ci95" holds the stratified-bootstrap percentile
    interval at the requested ``confidence`` (95% by default).
    """
    matrix = _finite_array(score_matrix, 2, "score_matrix")
    rng = np.random.default_rng(seed)
    samples: dict[str, list[np.ndarray]] = {name: [] for name in _AGGREGATES}
    for size in _chunks(n_boot, matrix.size):
        resampled = _stratified_resample(matrix, rng, size)
        for name, fn in _AGGREGATES.items():
            samples[name].append(fn(resampled))
    result = {}
    for name, fn in _AGGREGATES.items():
        lo, hi = _quantiles(np.concatenate(samples[name]), confidence)
        result[name] = {"value": float(fn(matrix)), "ci95": [float(lo), float(hi)]}
    return result


def _probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 per game, averaged over games, for (..., runs, games) arrays."""
    diff = x[..., :, None, :] - y[..., None, :, :]
    per_game = (diff > 0).mean(axis=(-3, -2)) + 0.5 * (diff == 0).mean(axis=(-3, -2))
    return per_game.mean(axis=-1)


def probability_of_improvement(
    x: Sequence[Sequence[float]] | np.ndarray,
    y: Sequence[Sequence[float]] | np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Average over games of P(X > Y) (Mann-Whitney U / (n_x n_y), ties count 1/2), with a stratified-bootstrap CI.

    ``x`` is (runs_x, games) and ``y`` is (runs_y, games); both are resampled independently per game.
    """
    xa = _finite_array(x, 2, "x")
    ya = _finite_array(y, 2, "y")
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"x and y must have the same number of games, got {xa.shape[1]} and {ya.shape[1]}")
    rng = np.random.default_rng(seed)
    samples = []
    for size in _chunks(n_boot, xa.shape[0] * ya.shape[0] * xa.shape[1]):
        samples.append(
            _probability_of_improvement(_stratified_resample(xa, rng, size), _stratified_resample(ya, rng, size))
        )
    lo, hi = _quantiles(np.concatenate(samples), confidence)
    return {"value": float(_probability_of_improvement(xa, ya)), "ci95": [float(lo), float(hi)]}
