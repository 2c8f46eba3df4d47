"""Tests for actormimic.stats: normalization, bootstrap intervals, IQM, aggregates, probability of improvement."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from actormimic.stats import (
    HUMAN_SCORES,
    RANDOM_SCORES,
    _stratified_resample,
    aggregate,
    bootstrap_mean_ci,
    expert_normalized,
    human_normalized,
    interquartile_mean,
    probability_of_improvement,
    summarize_returns,
)

GAMES = {
    "Atlantis", "Boxing", "Breakout", "CrazyClimber", "Enduro", "Pong",
    "Seaquest", "SpaceInvaders", "Freeway", "Qbert", "BeamRider", "Asterix",
}  # fmt: skip


def test_tables_cover_exactly_the_games() -> None:
    assert set(RANDOM_SCORES) == GAMES
    assert set(HUMAN_SCORES) == {"agent57", "nature"}
    assert all(set(table) == GAMES for table in HUMAN_SCORES.values())
    pong = (RANDOM_SCORES["Pong"], HUMAN_SCORES["agent57"]["Pong"], HUMAN_SCORES["nature"]["Pong"])
    assert pong == (-20.7, 14.6, 9.3)
    assert (RANDOM_SCORES["BeamRider"], HUMAN_SCORES["agent57"]["BeamRider"]) == (363.9, 16926.5)
    assert HUMAN_SCORES["nature"]["Enduro"] == 309.6


def test_human_normalized_hand_values() -> None:
    assert human_normalized("Pong", -20.7) == pytest.approx(0.0)
    assert human_normalized("Pong", 14.6) == pytest.approx(1.0)
    assert human_normalized("Pong", 0.0) == pytest.approx(20.7 / 35.3)
    assert human_normalized("Pong", 9.3, table="nature") == pytest.approx(1.0)
    assert human_normalized("Breakout", 59.3) == pytest.approx(2.0)  # (59.3 - 1.7) / (30.5 - 1.7)
    assert human_normalized("Boxing", 12.1, table="nature") == pytest.approx(12.0 / 4.2)
    assert human_normalized("Seaquest", 68.4 + 0.5 * (20181.8 - 68.4), table="nature") == pytest.approx(0.5)


def test_human_normalized_without_reference() -> None:
    assert human_normalized("MinAtar/Breakout", 10.0) is None
    with pytest.raises(ValueError, match="unknown human score table"):
        human_normalized("Pong", 0.0, table="atari100k")


def test_expert_normalized_hand_values() -> None:
    assert expert_normalized(5.0, 9.0, 1.0) == pytest.approx(0.5)
    assert expert_normalized(-3.0, 9.0, 1.0) == pytest.approx(-0.5)
    assert expert_normalized(9.0, 9.0, 1.0) == pytest.approx(1.0)
    assert expert_normalized(5.0, 1.0, 1.0) is None
    assert expert_normalized(5.0, 0.5, 1.0) is None
    assert expert_normalized(5.0, None, 1.0) is None
    assert expert_normalized(5.0, 9.0, None) is None
    assert expert_normalized(None, 9.0, 1.0) is None


def test_summarize_returns() -> None:
    summary = summarize_returns([1.0, 2.0, 3.0, 4.0, 5.0])
    assert summary["mean"] == 3.0 and summary["n"] == 5
    assert summary["std"] == pytest.approx(np.sqrt(2.0))
    lo, hi = summary["ci95"]
    assert 1.0 <= lo < 3.0 < hi <= 5.0
    assert summarize_returns([1.0, 2.0, 3.0, 4.0, 5.0]) == summary
    assert summarize_returns([7.0])["ci95"] == [7.0, 7.0]
    for bad in ([], [1.0, float("nan")], [[1.0]]):
        with pytest.raises(ValueError):
            summarize_returns(bad)


def test_bootstrap_coverage_of_known_mean() -> None:
    rng = np.random.default_rng(123)
    covered = 0
    for rep in range(200):
        sample = rng.normal(loc=2.0, scale=3.0, size=30)
        lo, hi = summarize_returns(sample, n_boot=500, seed=rep)["ci95"]
        covered += lo <= 2.0 <= hi
    assert 0.90 <= covered / 200 <= 0.99


def test_bootstrap_mean_ci_columns() -> None:
    values = np.column_stack([np.zeros(10), np.arange(10.0)])
    lo, hi = bootstrap_mean_ci(values, n_boot=300)
    assert lo.shape == hi.shape == (2,)
    assert lo[0] == hi[0] == 0.0
    assert lo[1] < 4.5 < hi[1]


def test_interquartile_mean_hand_values() -> None:
    assert interquartile_mean([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert interquartile_mean([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)
    assert interquartile_mean([0, 0, 0, 0, 100]) == pytest.approx(0.0)
    assert interquartile_mean([-100, 1, 2, 3, 100, 1000, 6, 7]) == pytest.approx((2 + 3 + 6 + 7) / 4)
    assert interquartile_mean([[1, 2], [3, 1000]]) == pytest.approx(2.5)
    assert interquartile_mean([5.0]) == 5.0
    with pytest.raises(ValueError):
        interquartile_mean([])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40))
def test_interquartile_mean_matches_scipy_trim_mean(values: list[float]) -> None:
    assert interquartile_mean(values) == pytest.approx(scipy.stats.trim_mean(values, 0.25), rel=1e-9, abs=1e-6)


def test_aggregate_point_values() -> None:
    matrix = np.array([[0.0, 1.0, 10.0, 2.0], [2.0, 3.0, 20.0, 4.0]])
    result = aggregate(matrix, n_boot=200)
    assert result["mean"]["value"] == pytest.approx(matrix.mean())
    assert result["median"]["value"] == pytest.approx(np.median([1.0, 2.0, 15.0, 3.0]))
    assert result["iqm"]["value"] == pytest.approx(np.mean([2.0, 2.0, 3.0, 4.0]))
    for metric in result.values():
        assert metric["ci95"][0] <= metric["value"] <= metric["ci95"][1]
    assert aggregate(matrix, n_boot=200) == result


def test_aggregate_resamples_within_games() -> None:
    # Every row has mean 0.5: resampling whole runs would give a zero-width interval.
    wide = aggregate([[0.0, 1.0], [1.0, 0.0]], n_boot=500)["mean"]
    assert wide["ci95"][0] < 0.5 < wide["ci95"][1]
    # Games with zero variance across runs keep their value in every resample.
    constant = aggregate([[5.0, 7.0], [5.0, 7.0], [5.0, 7.0]], n_boot=200)
    assert constant["mean"] == {"value": 6.0, "ci95": [6.0, 6.0]}
    assert constant["iqm"]["ci95"] == [6.0, 6.0]


def test_stratified_resample_stays_within_each_game() -> None:
    runs, games = 6, 3
    matrix = np.array([[100.0 * g + r for g in range(games)] for r in range(runs)])
    resampled = _stratified_resample(matrix, np.random.default_rng(0), 50)
    assert resampled.shape == (50, runs, games)
    for g in range(games):
        assert set(resampled[:, :, g].ravel()) <= set(matrix[:, g])
    run_index = resampled % 100
    assert np.any(run_index[:, :, 0] != run_index[:, :, 1])  # games draw runs independently


def test_aggregate_rejects_bad_input() -> None:
    for bad in ([[1.0, float("nan")]], [1.0, 2.0], np.zeros((0, 3))):
        with pytest.raises(ValueError):
            aggregate(bad)
    with pytest.raises(ValueError, match="confidence"):
        aggregate([[1.0]], confidence=1.5)


def test_probability_of_improvement_extremes() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(5, 4))
    assert probability_of_improvement(y + 100.0, y, n_boot=200) == {"value": 1.0, "ci95": [1.0, 1.0]}
    assert probability_of_improvement(y - 100.0, y, n_boot=200) == {"value": 0.0, "ci95": [0.0, 0.0]}
    same = probability_of_improvement(y, y, n_boot=200)
    assert same["value"] == pytest.approx(0.5)
    assert same["ci95"][0] <= 0.5 <= same["ci95"][1]


def test_probability_of_improvement_counts_ties_half() -> None:
    # Pairs (1,2) (1,3) (2,2) (2,3): only the tie scores, 1/2 of 4 pairs.
    assert probability_of_improvement([[1.0], [2.0]], [[2.0], [3.0]], n_boot=10)["value"] == pytest.approx(0.125)
    assert probability_of_improvement([[1.0, 0.0]], [[0.0, 0.0]], n_boot=10)["value"] == pytest.approx(0.75)


def test_probability_of_improvement_matches_mann_whitney() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=(7, 3)).astype(float)
    y = rng.integers(0, 5, size=(4, 3)).astype(float)
    expected = np.mean([scipy.stats.mannwhitneyu(x[:, g], y[:, g]).statistic / (7 * 4) for g in range(3)])
    result = probability_of_improvement(x, y, n_boot=300)
    assert result["value"] == pytest.approx(expected)
    assert result["ci95"][0] <= result["value"] <= result["ci95"][1]
    with pytest.raises(ValueError, match="same number of games"):
        probability_of_improvement(x, y[:, :2])


def test_median_is_the_median_of_per_game_run_means() -> None:
    result = aggregate(np.array([[0.0, 0.0, 10.0], [2.0, 4.0, 10.0]]), n_boot=10)
    assert result["median"]["value"] == 2.0  # per-game means [1, 2, 10]; the pooled median would be 3
    assert result["mean"]["value"] == np.mean([1.0, 2.0, 10.0])
