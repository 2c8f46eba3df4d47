"""Tests for actormimic.reports and the score_table / learning_curves / compare scripts on synthetic runs."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from actormimic.evaluation import aggregate_games
from actormimic.reports import (
    compare_groups,
    game_result,
    load_runs,
    markdown_scores_table,
    mean_curve,
    read_eval_curves,
    run_method,
    save_figure,
    score_table,
    to_csv,
    to_markdown,
)
from actormimic.stats import human_normalized

REPO = Path(__file__).resolve().parents[1]
GAMES = ("Pong", "Breakout", "MinAtar/Breakout")
EXPERT = {"Pong": 20.0, "Breakout": 300.0, "MinAtar/Breakout": 40.0}
RANDOM = {"Pong": None, "Breakout": None, "MinAtar/Breakout": 0.5}


def write_eval(
    folder: Path,
    method: str,
    seed: int,
    returns: dict[str, list[float]],
    protocol: str = "nature",
    kind: str = "student",
    **settings: object,
) -> dict:
    """Write a synthetic eval.json into folder and return its content (`settings` go into its protocol)."""
    result = {
        "protocol": {"name": protocol, "noop_max": 30, "sticky_action_prob": 0.0, **settings},
        "checkpoint": str(folder / "final.pt"),
        "kind": kind,
        "method": method,
        "seed": seed,
        "games": {g: game_result(g, r, RANDOM[g], EXPERT[g], n_boot=100) for g, r in returns.items()},
        "aggregate": {},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval.json").write_text(json.dumps(result))
    return result


def write_curves(folder: Path, games: tuple[str, ...], scale: float, steps: range) -> None:
    """Write eval/<safe_game>/score scalars with SummaryWriter into folder."""
    writer = SummaryWriter(log_dir=str(folder))
    for game in games:
        for step in steps:
            writer.add_scalar(f"eval/{game.replace('/', '-')}/score", scale * step / 1000.0, step)
    writer.close()


def student_returns(level: float, seed: int) -> dict[str, list[float]]:
    """Synthetic returns at a fraction `level` of the expert, with seed-dependent noise."""
    rng = np.random.default_rng(seed)
    return {
        "Pong": list(-20.7 + level * 40.7 + rng.normal(0, 1, 5)),
        "Breakout": list(1.7 + level * 298.3 + rng.normal(0, 5, 5)),
        "MinAtar/Breakout": list(0.5 + level * 39.5 + rng.normal(0, 1, 5)),
    }


def make_runs(tmp_path: Path) -> Path:
    """Three seeds each of ce and cc distill runs (with TB logs) and one expert folder with per-game subfolders."""
    for seed in range(3):
        for method, level in (("ce", 0.6), ("cc", 0.8)):
            run = tmp_path / f"{method}_s{seed}"
            write_eval(run, method, seed, student_returns(level, seed))
            write_curves(run / "tb", GAMES, level + 0.1 * seed, range(0, 5001, 1000 + 250 * seed))
    for game in GAMES:
        safe = game.replace("/", "-")
        write_eval(tmp_path / "experts" / safe, "expert", 0, {game: [EXPERT[game]] * 3}, kind="expert")
        write_curves(tmp_path / "experts" / safe / "tb", (game,), 1.0, range(0, 5001, 1000))
    return tmp_path


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    """Synthetic run folders under tmp_path."""
    return make_runs(tmp_path)


def test_game_result_and_eval_json_round_trip(tmp_path: Path) -> None:
    written = write_eval(tmp_path / "run", "cc", 7, {"Pong": [1.0, 3.0], "MinAtar/Breakout": [2.0, 4.0]})
    (loaded,) = load_runs([tmp_path])
    assert loaded == {**written, "path": str(tmp_path / "run" / "eval.json")}
    pong = loaded["games"]["Pong"]
    assert pong["mean"] == 2.0 and pong["std"] == 1.0 and pong["random"] == -20.7
    assert pong["human_normalized"] == pytest.approx(22.7 / 35.3)
    assert pong["human_normalized_nature"] == pytest.approx(22.7 / 30.0)
    assert pong["expert_normalized"] == pytest.approx(22.7 / 40.7)
    minatar = loaded["games"]["MinAtar/Breakout"]
    assert minatar["human_normalized"] is None and minatar["expert_normalized"] == pytest.approx(2.5 / 39.5)


def test_load_runs_is_recursive_and_validates(runs_root: Path, tmp_path: Path) -> None:
    experts = load_runs([runs_root / "experts"])
    assert sorted(next(iter(r["games"])) for r in experts) == sorted(GAMES)
    assert len(load_runs([runs_root, runs_root / "experts"])) == 9  # no duplicates
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "eval.json").write_text(json.dumps({"protocol": {"name": "nature"}, "method": "ce", "seed": 0}))
    with pytest.raises(ValueError, match=r"bad/eval.json.*games"):
        load_runs([bad])
    with pytest.raises(FileNotFoundError):
        load_runs([tmp_path / "missing"])
    (tmp_path / "run.log").write_text("[distill-ce] step 1\n")
    with pytest.raises(ValueError, match=r"run.log: not an evaluation JSON file"):
        load_runs([tmp_path / "run.log"])
    (tmp_path / "linked").symlink_to(runs_root / "experts", target_is_directory=True)
    assert len(load_runs([tmp_path / "linked"])) == len(experts)  # symlinked folders are followed


def test_protocol_mixing_is_refused(tmp_path: Path) -> None:
    write_eval(tmp_path / "a", "ce", 0, {"Pong": [1.0]}, protocol="nature")
    write_eval(tmp_path / "b", "cc", 0, {"Pong": [2.0]}, protocol="machado")
    runs = load_runs([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ValueError, match=r"'nature'.*'machado'"):
        score_table(runs)
    with pytest.raises(ValueError, match=r"'nature'.*'machado'"):
        compare_groups(runs[:1], runs[1:], names=("ce", "cc"))


def test_same_protocol_name_with_other_settings_is_refused(tmp_path: Path) -> None:
    write_eval(tmp_path / "a", "ce", 0, {"Pong": [1.0]}, epsilon=0.05, episodes=30)
    write_eval(tmp_path / "b", "cc", 0, {"Pong": [2.0]}, epsilon=0.0, episodes=30)
    with pytest.raises(ValueError, match=r"epsilon=0.05 .*epsilon=0.0 "):
        score_table(load_runs([tmp_path / "a", tmp_path / "b"]))
    write_eval(tmp_path / "c", "cc", 0, {"Pong": [2.0]}, epsilon=0.05, episodes=200)
    table = score_table(load_runs([tmp_path / "a", tmp_path / "c"]))
    assert "nature (episodes=30-200, epsilon=0.05" in to_markdown(table)
    write_eval(tmp_path / "0-old", "ce", 1, {"Pong": [1.0]}, episodes=30)  # an older file without epsilon, first
    with pytest.raises(ValueError, match=r"epsilon=0.05 .*epsilon=0.0 "):
        score_table(load_runs([tmp_path / "0-old", tmp_path / "a", tmp_path / "b"]))


def test_duplicate_game_for_one_seed_is_refused(tmp_path: Path) -> None:
    write_eval(tmp_path / "a", "ce", 0, {"Pong": [1.0]})
    write_eval(tmp_path / "b", "ce", 0, {"Pong": [2.0]})
    with pytest.raises(ValueError, match="evaluated twice"):
        score_table(load_runs([tmp_path]))


def test_score_table_values(runs_root: Path) -> None:
    table = score_table(load_runs([runs_root]), n_boot=200)
    assert table["protocol"]["name"] == "nature"
    assert list(table["methods"]) == ["cc", "ce", "expert"]
    cc = table["methods"]["cc"]
    assert cc["seeds"] == [0, 1, 2]
    pong = cc["games"]["Pong"]
    seed_means = [np.mean(student_returns(0.8, s)["Pong"]) for s in range(3)]
    assert pong["mean"] == pytest.approx(np.mean(seed_means))
    assert pong["n_seeds"] == 3 and pong["n_episodes"] == 15
    assert pong["ci95"][0] < pong["mean"] < pong["ci95"][1]
    assert pong["expert_normalized"] == pytest.approx((np.mean(seed_means) + 20.7) / 40.7)
    assert pong["human_normalized"] == pytest.approx((np.mean(seed_means) + 20.7) / 35.3)
    assert cc["games"]["MinAtar/Breakout"]["human_normalized"] is None
    expert_agg = cc["aggregate"]["expert_normalized"]
    assert expert_agg["games"] == sorted(GAMES) and expert_agg["n_runs"] == 3
    assert expert_agg["iqm"]["value"] == pytest.approx(0.8, abs=0.05)
    assert cc["aggregate"]["human_normalized"]["games"] == ["Breakout", "Pong"]
    experts = table["methods"]["expert"]
    assert all(row["expert_normalized"] == pytest.approx(1.0) for row in experts["games"].values())
    assert experts["aggregate"]["expert_normalized"]["mean"] == {"value": 1.0, "ci95": [1.0, 1.0]}
    assert json.loads(json.dumps(table)) == table


def test_markdown_and_csv_name_the_protocol(runs_root: Path) -> None:
    table = score_table(load_runs([runs_root]), n_boot=100)
    markdown = to_markdown(table)
    assert "protocol: nature (sticky=0.0, no-ops=30)" in markdown
    assert "| Pong | cc | 3 | 15 |" in markdown and "| cc | expert-normalized | 3 | 3 |" in markdown
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert len(rows) == 9
    assert {row["protocol"] for row in rows} == {"nature (sticky=0.0, no-ops=30)"}
    minatar = next(r for r in rows if r["method"] == "ce" and r["game"] == "MinAtar/Breakout")
    assert minatar["human_normalized"] == "" and float(minatar["expert_normalized"]) > 0


def test_score_table_averages_fidelity_over_seeds(runs_root: Path) -> None:
    runs = load_runs([runs_root])
    assert "Agreement" not in to_markdown(score_table(runs, n_boot=50))
    for run in runs:
        if run["method"] == "cc":
            run["games"]["Pong"]["fidelity"] = {"agreement": 0.8 + 0.05 * run["seed"], "regret": 0.01, "states": 9}
            if run["seed"] != 2:  # seed 2 of cc lacks it for MinAtar/Breakout: no mean over a subset of seeds
                run["games"]["MinAtar/Breakout"]["fidelity"] = {"agreement": 0.5, "regret": 0.2, "states": 9}
    table = score_table(runs, n_boot=50)
    cc = table["methods"]["cc"]["games"]
    assert cc["Pong"]["agreement"] == pytest.approx(0.85) and cc["Pong"]["regret"] == pytest.approx(0.01)
    assert cc["MinAtar/Breakout"]["agreement"] is None and table["methods"]["ce"]["games"]["Pong"]["regret"] is None
    markdown = to_markdown(table)
    assert "| Human-norm | Agreement | Regret |" in markdown and "| 0.850 | 0.0100 |" in markdown
    rows = {(r["method"], r["game"]): r for r in csv.DictReader(io.StringIO(to_csv(table)))}
    assert float(rows["cc", "Pong"]["agreement"]) == pytest.approx(0.85) and rows["ce", "Pong"]["agreement"] == ""


def test_markdown_scores_table(runs_root: Path) -> None:
    (run,) = load_runs([runs_root / "cc_s1"])
    text = markdown_scores_table(run)
    lines = text.splitlines()
    assert lines[0].startswith("### cc (student, seed 1)") and "protocol: nature" in lines[0]
    assert lines[2] == "| Game | mean ± std | 95% CI | human-norm (agent57) | expert-norm |"
    pong = run["games"]["Pong"]
    assert f"| Pong | {pong['mean']:.2f} ± {pong['std']:.2f} |" in text
    for table in ("agent57", "nature"):  # `actormimic evaluate --human-table`
        human = human_normalized("Pong", pong["mean"], table)
        assert f"| {human:.3f} |" in markdown_scores_table({**run, "human_table": table})
        assert aggregate_games({"Pong": pong}, table)["human_normalized"]["mean"]["value"] == pytest.approx(human)
    assert human_normalized("Pong", pong["mean"], "agent57") != pytest.approx(human_normalized("Pong", pong["mean"],
                                                                                              "nature"))
    assert "| MinAtar/Breakout |" in text and "| – |" in text and "agreement" not in text
    run["games"]["Pong"]["fidelity"] = {"agreement": 0.875, "regret": 0.0123, "states": 4096}
    text = markdown_scores_table(run)
    assert "| expert-norm | agreement | regret |" in text and "| 0.875 | 0.0123 |" in text
    assert "| MinAtar/Breakout |" in text and text.count("| – | – |") >= 1


def test_compare_groups(runs_root: Path) -> None:
    runs_cc = load_runs([runs_root / f"cc_s{s}" for s in range(3)])
    runs_ce = load_runs([runs_root / f"ce_s{s}" for s in range(3)])
    result = compare_groups(runs_cc, runs_ce, names=("CC", "CE"), n_boot=200)
    assert result["games"] == sorted(GAMES)
    assert result["groups"]["CC"]["runs"] == ["cc/seed0", "cc/seed1", "cc/seed2"]
    assert result["groups"]["CC"]["iqm"]["value"] > result["groups"]["CE"]["iqm"]["value"]
    assert result["probability_of_improvement"]["value"] == 1.0
    human = compare_groups(runs_cc, runs_ce, names=("CC", "CE"), normalization="human_normalized", n_boot=50)
    assert human["games"] == ["Breakout", "Pong"]
    with pytest.raises(ValueError, match="unknown normalization"):
        compare_groups(runs_cc, runs_ce, normalization="raw")


def test_read_eval_curves(runs_root: Path) -> None:
    curves = read_eval_curves(runs_root / "cc_s1")
    assert sorted(curves) == sorted(g.replace("/", "-") for g in GAMES)
    steps, scores = curves["MinAtar-Breakout"]
    np.testing.assert_array_equal(steps, [0, 1250, 2500, 3750, 5000])
    np.testing.assert_allclose(scores, 0.9 * steps / 1000.0, rtol=1e-6)
    experts = read_eval_curves(runs_root / "experts")
    assert sorted(experts) == sorted(curves)
    assert run_method(runs_root / "experts") == "expert"


def test_mean_curve_interpolates_to_common_steps() -> None:
    a = (np.array([0, 10, 20]), np.array([0.0, 10.0, 20.0]))
    b = (np.array([5, 15, 25]), np.array([10.0, 20.0, 30.0]))
    steps, mean, lo, hi = mean_curve([a, b], n_boot=100)
    np.testing.assert_array_equal(steps, [5, 10, 15, 20])
    np.testing.assert_allclose(mean, [7.5, 12.5, 17.5, 22.5])
    assert np.all(lo <= mean) and np.all(mean <= hi)
    with pytest.raises(ValueError, match="share no step range"):
        mean_curve([a, (np.array([30, 40]), np.array([1.0, 2.0]))])


def run_script(name: str, *args: str) -> str:
    """Run scripts/<name>.py and return its stdout."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / f"{name}.py"), *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def test_scripts_end_to_end(runs_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    printed = run_script("score_table", str(runs_root), "--out", str(out / "scores"), "--n-boot", "100")
    assert "protocol: nature" in printed and str(out / "scores.md") in printed
    assert json.loads((out / "scores.json").read_text())["methods"]["cc"]["seeds"] == [0, 1, 2]
    assert (out / "scores.csv").read_text().startswith("protocol,")
    assert (out / "scores.md").read_text().startswith("## Scores — protocol: nature")

    cc = [str(runs_root / f"cc_s{s}") for s in range(3)]
    ce = [str(runs_root / f"ce_s{s}") for s in range(3)]
    printed = run_script("learning_curves", *cc, *ce, str(runs_root / "experts"), "--out", str(out / "curves.png"))
    assert "Pong: cc (3 runs), ce (3 runs), expert (1 runs)" in printed
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")

    printed = run_script("compare", "--a", *cc, "--b", *ce, "--names", "CC", "CE", "--out", str(out / "cmp"))
    assert "P(CC > CE) = 1.000" in printed
    result = json.loads((out / "cmp.json").read_text())
    assert set(result["groups"]) == {"CC", "CE"} and result["normalization"] == "expert_normalized"
    assert (out / "cmp.png").read_bytes().startswith(b"\x89PNG")


def test_scripts_refuse_bad_runs_with_exit_2(tmp_path: Path) -> None:
    write_eval(tmp_path / "a", "ce", 0, {"Pong": [1.0]}, protocol="nature")
    write_eval(tmp_path / "b", "cc", 0, {"Pong": [2.0]}, protocol="machado")
    for args in (["score_table", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "t")],
                 ["compare", "--a", str(tmp_path / "a"), "--b", str(tmp_path / "empty"), "--out", str(tmp_path / "c")]):
        done = subprocess.run([sys.executable, str(REPO / "scripts" / f"{args[0]}.py"), *args[1:]],
                              capture_output=True, text=True)
        assert done.returncode == 2 and "error:" in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("name", ["score_table", "learning_curves", "compare"])
def test_script_help(name: str) -> None:
    assert "usage:" in run_script(name, "--help")


def test_score_table_uses_the_requested_human_table(tmp_path: Path) -> None:
    write_eval(tmp_path / "a", "ce", 0, {"Pong": [-10.0, 0.0]})
    runs = load_runs([tmp_path])
    for table, human in (("agent57", 14.6), ("nature", 9.3)):
        pong = score_table(runs, human_table=table, n_boot=50)["methods"]["ce"]["games"]["Pong"]
        assert pong["human_normalized"] == pytest.approx((-5.0 + 20.7) / (human + 20.7))


def test_save_figure_writes_the_suffix_format_in_place(tmp_path: Path) -> None:
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / "a.pdf")
    save_figure(fig, tmp_path / "b")  # no suffix: png, at exactly that path
    assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
    assert (tmp_path / "b").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "b"]
