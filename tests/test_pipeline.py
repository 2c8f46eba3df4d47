"""End-to-end smoke tests of the CLI on MinAtar: experts -> students -> evaluation, resume, bad input."""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from actormimic.cli import main
from actormimic.config import ExpertsConfig, load_config
from actormimic.evaluation import get_protocol
from actormimic.reports import read_eval_curves
from actormimic.runtime import RunError
from actormimic.train_experts import _init_torso
from agents.checkpoint import load_checkpoint, save_checkpoint
from agents.networks import QNetwork

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
TINY_DISTILL = ["--set", "preset=minatar", "--steps", "1200", "--set", "learning_starts=400", "--set", "num_envs=4",
                "--set", "replay_capacity=2000", "--set", "eval.interval=600", "--set", "eval.episodes=2",
                "--set", "eval.final_episodes=3", "--set", "eval.num_envs=2", "--set", "batch_size=16"]


def load_script(name: str) -> types.ModuleType:
    """Import scripts/NAME.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.fixture(scope="module")
def experts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny MinAtar experts trained through the CLI."""
    out = tmp_path_factory.mktemp("experts")
    code = main(["train-experts", "--config", SMOKE, "--games", "MinAtar/Breakout", "MinAtar/SpaceInvaders",
                 "--steps", "1600", "--parallel", "2", "--out", str(out), "--overwrite"])
    assert code == 0
    return out


def test_train_experts_writes_checkpoints_eval_and_tensorboard(experts: Path) -> None:
    for game in ("MinAtar-Breakout", "MinAtar-SpaceInvaders"):
        folder = experts / game
        last = load_checkpoint(folder / "expert.pt", kind="expert")
        best = load_checkpoint(folder / "expert-best.pt", kind="expert")
        assert last["label"] == "last" and best["label"] == "best"
        assert best["counters"]["step"] == best["step"] and {"python", "numpy", "torch"} <= set(best["rng"])
        assert last["counters"]["finished"] and last["counters"]["step"] >= 1600
        assert last["preset"]["name"] == "minatar" and last["action_ids"]
        result = json.loads((folder / "eval.json").read_text())
        entry = result["games"][game.replace("-", "/")]
        assert result["protocol"]["name"] == "minatar" and result["kind"] == "expert"
        assert len(entry["returns"]) == 30 and entry["expert_normalized"] == 1.0
        assert game in read_eval_curves(folder)
        # expert-best.pt is the final evaluation's choice between the best periodic network and the last one
        choice = result["final_choice"]
        means = {name: c["mean"] for name, c in choice["candidates"].items()}
        assert choice["chosen"] == max(means, key=means.get)
        if len(means) == 1:  # one candidate: its selection episodes are its reported score
            assert entry["mean"] == means["best"] and choice["report_seed"] == choice["selection_seed"]
        else:  # two: the kept one is scored again on other episodes
            assert choice["report_seed"] != choice["selection_seed"]
        assert best["step"] == choice["candidates"][choice["chosen"]]["step"]
        if choice["chosen"] == "last":
            assert all(torch.equal(best["model"][k], v) for k, v in last["model"].items())
    assert (experts / "config.yaml").exists()


@pytest.mark.parametrize(("last_step", "last_action", "kept"), [(900, 2, "last"), (900, 0, "best"), (500, 2, "best")])
def test_final_eval_keeps_the_higher_scoring_of_best_and_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              last_step: int, last_action: int, kept: str) -> None:
    """Both networks are scored with the same episodes and seed and the better one ends up in expert-best.pt,
    scored again on another seed for eval.json; a last network that is the best periodic one (same step) is
    scored once."""
    import actormimic.train_experts as train_experts

    config = load_config(ExpertsConfig, SMOKE, ["eval.final_episodes=4"])
    network = QNetwork("minatar", (4, 10, 10), 3)
    torch.nn.init.zeros_(network.head.weight)

    def checkpoint(greedy_action: int, step: int) -> dict:  # a network that always picks `greedy_action`
        network.head.bias.data = torch.nn.functional.one_hot(torch.tensor(greedy_action), 3).float()
        return {"game": "MinAtar/Breakout", "preset": {"name": "minatar"}, "action_ids": [0, 1, 3],
                "network": network.spec, "model": {k: v.clone() for k, v in network.state_dict().items()}, "step": step}

    save_checkpoint(tmp_path / "expert-best.pt", {**checkpoint(1, 500), "label": "best", "eval_score": 1.0},
                    kind="expert")
    calls = []

    def fake_evaluate(policy, action_ids, game, protocol, *, num_envs, seed, device):
        """Score = the greedy action, plus 0.5 on any seed but the first one asked for (the selection seed)."""
        calls.append((protocol.episodes, seed))
        bonus = 0.5 * (seed != calls[0][1])
        return [float(policy(torch.zeros((1, 4, 10, 10), dtype=torch.uint8))[0]) + bonus] * protocol.episodes

    monkeypatch.setattr(train_experts, "evaluate_policy", fake_evaluate)
    protocol = get_protocol("minatar", "MinAtar/Breakout")
    result = train_experts._final_eval("MinAtar/Breakout", tmp_path, protocol, config, torch.device("cpu"),
                                       checkpoint(last_action, last_step))
    two = last_step != 500
    assert result["final_choice"]["chosen"] == kept
    assert {name: c["mean"] for name, c in result["final_choice"]["candidates"].items()} == (
        {"best": 1.0, "last": float(last_action)} if two else {"best": 1.0})
    assert len(calls) == (3 if two else 1) and len(set(calls[:2])) == 1 and all(c[0] == 4 for c in calls)
    best = load_checkpoint(tmp_path / "expert-best.pt", kind="expert")
    kept_action = last_action if kept == "last" else 1
    assert best["label"] == "best" and best["step"] == (last_step if kept == "last" else 500)
    assert int(best["model"]["head.bias"].argmax()) == kept_action
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["games"]["MinAtar/Breakout"]["mean"] == kept_action + 0.5 * two and saved["protocol"]["episodes"] == 4
    if kept == "last":
        assert best["eval_score"] == saved["games"]["MinAtar/Breakout"]["mean"]


def test_a_periodic_evaluation_at_the_last_step_is_not_repeated(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import actormimic.train_experts as train_experts

    seeds = []

    def fake_evaluate(policy, action_ids, game, protocol, *, num_envs, seed, device):
        seeds.append(seed)
        return [0.0] * protocol.episodes

    monkeypatch.setattr(train_experts, "evaluate_policy", fake_evaluate)
    assert main(["train-experts", "--config", SMOKE, "--steps", "1000", "--set", "eval.interval=500",
                 "--set", "eval.final_episodes=2", "--out", str(tmp_path / "run")]) == 0
    periodic = [s for s in seeds if s == 10_000]  # smoke seed 0: periodic evaluations use seed + 10000
    assert len(periodic) == 2 and len(seeds) > 2


@pytest.mark.parametrize(("loss", "variant", "updates"), [
    # mixed: both games learn from step 400 to 1200, one update per 4 steps
    ("ce", [], 200),
    # blocks of 400 over 2 x 1200 steps: each game waits for 400 steps of its own (its first block), so
    # Breakout learns in blocks 3 and 5, SpaceInvaders in 4 and 6
    ("cc", ["--set", "schedule=blocks", "--set", "block_steps=400", "--set", "feature_beta=0.01"], 400),
])
def test_distill_and_evaluate_a_student(experts: Path, tmp_path: Path, loss: str, variant: list[str], updates: int,
                                        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.amn as amn

    games = ("MinAtar/Breakout", "MinAtar/SpaceInvaders")
    real, calls = amn.ActorMimicLearner.update, []

    def spy(self, batches, step, count=1, generator=None):
        calls.append((step, count, {g: b.size for g, b in batches.items()}))  # deferred draws, made in the update
        return real(self, batches, step, count, generator)

    monkeypatch.setattr(amn.ActorMimicLearner, "update", spy)
    out = tmp_path / f"student-{loss}"
    code = main(["distill", "--games", *games, "--experts", str(experts), "--loss", loss, "--out", str(out),
                 *TINY_DISTILL, *variant, "--set", "log_interval=1e-6"])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    progress = [line for line in printed if "steps/s" in line]
    assert any(f"loss {loss} n/a (not learning yet)" in line for line in progress)  # before the first update
    final = [line for line in printed if "final eval" in line]
    steps = "2,400" if variant else "1,200"
    assert len(final) == 1 and re.fullmatch(  # one line: every game's score, its protocol and episodes
        rf"\[distill-{loss}\] final eval at step {steps} \(minatar, 3 episodes, raw score\): MinAtar-Breakout "
        r"-?[\d.]+ \(expert [\d.]+, agreement [\d.]+\), MinAtar-SpaceInvaders .*", final[0]), final
    assert re.search(rf"loss {loss} -?\d+\.\d{{4}} eps", progress[-1]) and not any("nan" in line for line in progress)
    # mixed: each gradient step sees the batch of 16 split 8/8; blocks: 16 rows of the game whose block holds the step
    for step, count, sizes in calls:
        assert sizes == ({games[(step // 400) % 2]: 16 * count} if variant else {g: 8 * count for g in games})
    student = load_checkpoint(out / "student.pt", kind="student")
    assert student["method"] == loss and student["counters"]["updates"] == updates
    result = json.loads((out / "eval.json").read_text())
    assert set(result["games"]) == {"MinAtar/Breakout", "MinAtar/SpaceInvaders"}
    for entry in result["games"].values():
        assert entry["expert_mean"] is not None and len(entry["returns"]) == 3
        assert 0.0 <= entry["fidelity"]["agreement"] <= 1.0 and entry["fidelity"]["regret"] >= 0.0
    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert main(["evaluate", str(out / "student.pt"), "--games", "MinAtar/Breakout", "--episodes", "4",
                 "--out", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "protocol: minatar" in printed and "| MinAtar/Breakout |" in printed and "| agreement | regret |" in printed
    evaluated = json.loads(report.read_text())
    assert evaluated["kind"] == "student" and evaluated["method"] == loss
    assert len(evaluated["games"]["MinAtar/Breakout"]["returns"]) == 4
    assert evaluated["games"]["MinAtar/Breakout"]["expert_mean"] is not None
    assert evaluated["games"]["MinAtar/Breakout"]["fidelity"]["states"] > 0

    q_net = QNetwork("minatar", (6, 10, 10), 4)  # SpaceInvaders: the student's input has its 6 channels
    _init_torso(q_net, str(out / "student.pt"))
    torso = {k.removeprefix("torso."): v for k, v in student["model"].items() if k.startswith("torso.")}
    assert all(torch.equal(q_net.torso.state_dict()[k], v) for k, v in torso.items())
    fewer = QNetwork("minatar", (4, 10, 10), 5)  # a 4-channel game (Asterix): the student's features of its padded obs
    _init_torso(fewer, str(out / "student.pt"))
    obs = torch.randint(0, 2, (3, 4, 10, 10), dtype=torch.uint8)
    padded = torch.cat([obs, torch.zeros(3, 2, 10, 10, dtype=torch.uint8)], 1)
    torch.testing.assert_close(fewer.torso(obs), q_net.torso(padded))
    with pytest.raises(RunError, match="at most the student's 6 channels"):
        _init_torso(QNetwork("minatar", (10, 10, 10), 6), str(out / "student.pt"))  # Seaquest's 10 channels


def test_distill_scores_the_experts_on_other_episodes_than_their_selection(experts: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With equal seeds, the students' expert reference must not replay the episodes that picked the expert's
    network (that score is biased upwards; see final_choice)."""
    import actormimic.distill as distill_module

    seeds = []
    real = distill_module.evaluate_policy

    def spy(*args, seed, **kwargs):
        seeds.append(seed)
        return real(*args, seed=seed, **kwargs)

    monkeypatch.setattr(distill_module, "evaluate_policy", spy)
    assert main(["distill", "--games", "MinAtar/Breakout", "--experts", str(experts), "--out", str(tmp_path / "s"),
                 *TINY_DISTILL, "--set", "eval.interval=0", "--steps", "600"]) == 0
    summary = json.loads((experts / "MinAtar-Breakout" / "eval.json").read_text())["final_choice"]
    assert seeds and not {summary["selection_seed"], summary["report_seed"]} & set(seeds)


def test_training_loops_synchronise_only_to_fetch_actions(experts: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Per step, nothing reads device data on the host except the action fetch (`.cpu()` in send_all, no op on
    a CPU tensor): checked on the CPU by NoHostSync over whole expert and distillation runs, with the
    evaluations, checkpoints (with their non-finite-loss check) and the progress line (all periodic) exempted,
    and torch's CPU Adam, whose CUDA form does not synchronise."""
    import actormimic.distill as distill
    import actormimic.train_experts as train_experts
    from actormimic import cc
    from actormimic.runtime import Monitor
    from agents.amn import ActorMimicLearner
    from tests.test_graphs import NoHostSync, unchecked

    for owner, name in [(train_experts, "evaluate_policy"), (train_experts, "save_checkpoint"),
                        (distill, "evaluate_policy"), (distill, "evaluate_with_fidelity"),
                        (distill, "save_checkpoint"), (ActorMimicLearner, "first_non_finite"),
                        (torch.optim.Adam, "step")]:
        monkeypatch.setattr(owner, name, unchecked(getattr(owner, name)))
    monkeypatch.setattr(Monitor, "due", lambda self: False)  # TensorBoard scalars and the progress line
    monkeypatch.setattr(cc, "_SHORTEN_ON_CPU", False)
    quick = ["--set", "cpu_threads=1", "--set", "eval.interval=600",
             "--set", "checkpoint_interval=600"]
    with NoHostSync(capture=False) as mode:
        assert main(["train-experts", "--config", SMOKE, "--games", "MinAtar/Breakout", "--steps", "1200",
                     "--set", "learning_starts=400", "--set", "eval.final_episodes=2", *quick,
                     "--out", str(tmp_path / "experts")]) == 0
        assert main(["distill", "--games", "MinAtar/Breakout", "MinAtar/SpaceInvaders", "--experts", str(experts),
                     "--loss", "cc", *TINY_DISTILL, *quick,
                     "--out", str(tmp_path / "student")]) == 0
    assert mode.checked > 10_000


def test_count_launches_script(experts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ops per loop iteration outside captured steps (the captured steps count as graph replays), for both loops."""
    from agents.graphs import GraphedStep

    call = GraphedStep.__call__
    no_eval = ["--set", "eval.interval=0", "--set", "eval.final_episodes=0"]

    def count(argv: list[str]) -> tuple[int, dict[str, float]]:
        load_script("count_launches").main(argv)
        out = capsys.readouterr().out
        head, _, rest = out[out.index("ops per loop iteration"):].partition("\n")
        return int(head.rsplit(":", 1)[1]), {line.split(maxsplit=1)[1]: float(line.split()[0])
                                             for line in rest.splitlines()}

    total, breakdown = count(["train-experts", "--config", SMOKE, "--steps", "1200", "--set", "learning_starts=400",
                              *no_eval, "--out", str(tmp_path / "expert")])
    # acting, recording, and one call that draws and updates: 3 graph replays per iteration (4 envs, 1 update per 4
    # steps); 34 ops with Breakout's 64 envs when the draw was a graph of its own, 61 before acting and recording were
    assert breakdown["<graph replay>"] == 3.0 and 10 < total < 30
    total, breakdown = count(["distill", "--games", "MinAtar/Breakout", "MinAtar/SpaceInvaders", "--experts",
                              str(experts), *TINY_DISTILL, *no_eval, "--out", str(tmp_path / "student")])
    # acting for both games, the recording per game (with the expert's outputs), and one call that draws from both
    # replays and updates; 13 + 19 per game when the experts' outputs and the draws were graphs of their own
    assert breakdown["<graph replay>"] == 1 + 2 + 1 and total < 15 + 8 * 2 + 5
    assert GraphedStep.__call__ is call  # the patches are undone


def test_final_episodes_zero_skips_every_evaluation(experts: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    no_eval = ["--set", "eval.interval=0", "--set", "eval.final_episodes=0"]
    student = tmp_path / "student"
    assert main(["distill", "--games", "MinAtar/Breakout", "--experts", str(experts), "--out", str(student),
                 *TINY_DISTILL, *no_eval]) == 0
    assert load_checkpoint(student / "student.pt", kind="student")["counters"]["finished"]
    expert = tmp_path / "expert"
    assert main(["train-experts", "--config", SMOKE, "--steps", "800", "--out", str(expert), *no_eval]) == 0
    last = load_checkpoint(expert / "MinAtar-Breakout" / "expert.pt", kind="expert")
    assert last["counters"]["finished"] and last["eval"] is None
    printed = capsys.readouterr().out
    assert "no final evaluation" in printed and "measuring the experts' scores" not in printed
    assert not (student / "eval.json").exists() and not (expert / "MinAtar-Breakout" / "eval.json").exists()


def test_bench_profile_splits_loop_iterations_into_phases() -> None:
    from actormimic.loop import RunClock
    from actormimic.replay import ReplayBuffer

    bench, expired, add = load_script("bench"), RunClock.expired, ReplayBuffer.add
    result = bench.ours_experts("MinAtar/Breakout", 60, 300, 4, ["batch_size=16"], profile=6)
    report = result["profile"]
    assert report["iterations"] == 6 and result["seconds"] < 30  # the run stopped after the window
    assert result["algorithm"] == "plain DQN"
    assert set(report["phases_ms_per_iteration"]) >= {"act", "replay add (distill: with the experts' outputs)",
                                                      "replay draw and update (launch or eager)"}
    assert 0 < sum(report["phases_ms_per_iteration"].values()) <= 1.05 * report["wall_ms_per_iteration"]
    assert RunClock.expired is expired and ReplayBuffer.add is add  # hooks removed


def test_bench_runs_plain_dqn_like_sb3_unless_told() -> None:
    bench = load_script("bench")
    assert bench.bench_config("Breakout", 10, 100, 4, []).double is False
    assert bench.bench_config("Breakout", 10, 100, 4, ["double=true"]).double is True


def test_bench_times_sb3_on_minatar_through_the_peer() -> None:
    """On MinAtar the SB3 side is scripts/sb3_peer.py with our run's env count and overrides, timed after
    learning starts like ours."""
    bench = load_script("bench")
    result = bench.sb3_peer_experts("MinAtar/Breakout", 1.0, 300, 4, ["batch_size=16"], threads=1)
    assert result["num_envs"] == 4 and result["steps"] > 0 and 1.0 <= result["seconds"] < 10
    assert result["steps_per_s"] == pytest.approx(result["steps"] / result["seconds"])


def test_offline_fidelity_script(experts: Path, tmp_path: Path) -> None:
    script = load_script("fidelity_offline")
    args = ["--experts", str(experts), "--set", "games=MinAtar/Breakout,MinAtar/SpaceInvaders", "--steps", "30",
            "--envs", "4", "--updates", "60", "--every", "25", "--loss", "ce", "cc"]
    first = script.main([*args, "--seeds", "3", "--out", str(tmp_path / "offline.json")])
    assert first["states"] == {"MinAtar/Breakout": [120, 40], "MinAtar/SpaceInvaders": [120, 40]}
    curve = first["runs"]["ce"][0]["curve"]
    assert [point["updates"] for point in curve] == [25, 50, 60]
    assert all(0.0 <= fit[g]["agreement"] <= 1.0 and fit[g]["regret"] >= 0.0 and fit[g]["states"] == 40
               for point in curve for fit in (point, point["train"]) for g in first["games"])
    assert first["runs"]["ce"][0]["curve"] != first["runs"]["cc"][0]["curve"]
    again = script.main([*args, "--seeds", "3"])
    assert again["runs"]["cc"][0]["curve"] == first["runs"]["cc"][0]["curve"]  # deterministic for a seed
    assert json.loads((tmp_path / "offline.json").read_text())["runs"]["ce"][0]["curve"] == curve
    assert (tmp_path / "offline.md").read_text().startswith("| loss | seeds | MinAtar/Breakout agreement")


def test_precision_check_script(experts: Path, tmp_path: Path) -> None:
    script = load_script("precision_check")
    out = tmp_path / "precision.json"
    script.main([str(experts / "MinAtar-Breakout" / "expert.pt"), "--episodes", "2", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["game"] == "MinAtar/Breakout" and result["protocol"] == "minatar"
    assert 0 < result["bf16_states"] <= 4096
    assert 0.0 <= result["bf16_agreement"] <= 1.0 and result["bf16_regret"] >= 0.0
    assert result["median_bf16_q_error"] > 0.0  # bf16 really ran: its Q-values differ from float32's
    assert 1.0 - result["bf16_agreement"] - 1e-6 <= result["share_flippable"] <= 1.0  # a flip needs gap <= 2 * error


def test_teacher_sharpness_script(experts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("teacher_sharpness")
    out = tmp_path / "sharpness.json"
    script.main([str(experts / "MinAtar-Breakout" / "expert.pt"), "--episodes", "2", "--temperatures", "1e6", "1",
                 "1e-6", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["game"] == "MinAtar/Breakout" and 0 < result["states"] <= 4096 and result["actions"] == 3
    assert result["median_q_spread"] >= result["median_top2_gap"] >= 0.0
    hot, one, cold = (result["temperatures"][t] for t in ("1e+06", "1", "1e-06"))
    assert hot["mean_top_prob"] == pytest.approx(1 / 3, abs=1e-4)  # T -> infinity: uniform
    assert hot["median_entropy"] == pytest.approx(result["uniform_entropy"], abs=1e-4)
    assert cold["median_top_prob"] == pytest.approx(1.0, abs=1e-4)  # T -> 0: the greedy action
    assert hot["mean_top_prob"] <= one["mean_top_prob"] <= cold["mean_top_prob"]
    assert "| uniform | 0.333 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main([str(experts / "MinAtar-Breakout" / "expert.pt"), "--temperatures", "0"])


def test_evaluation_is_deterministic_for_a_seed(experts: Path, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name / "new" / "eval.json"  # missing folders are made
        assert main(["evaluate", str(experts / "MinAtar-Breakout" / "expert.pt"), "--episodes", "6", "--seed", "3",
                     "--out", str(out)]) == 0
        runs.append(json.loads(out.read_text())["games"]["MinAtar/Breakout"]["returns"])
    assert runs[0] == runs[1]


def test_training_is_repeatable_with_a_fixed_thread_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same seed and a fixed cpu_threads: the same trained network, bit for bit (README, Configs); the schedules
    count agent steps summed over the envs."""
    import actormimic.train_experts as train_experts

    decays, intervals = set(), set()
    schedule, dqn = train_experts.epsilon_schedule, train_experts.DQN
    monkeypatch.setattr(train_experts, "epsilon_schedule",
                        lambda step, start, end, steps: decays.add(steps) or schedule(step, start, end, steps))
    monkeypatch.setattr(train_experts, "DQN",
                        lambda *a, **k: intervals.add(k["target_update_interval"]) or dqn(*a, **k))
    models = []
    for name in ("a", "b"):
        assert main(["train-experts", "--config", SMOKE, "--games", "MinAtar/Breakout", "--steps", "1500",
                     "--set", "cpu_threads=1", "--set", "eval.interval=0", "--set", "eval.final_episodes=0",
                     "--out", str(tmp_path / name)]) == 0
        checkpoint = load_checkpoint(tmp_path / name / "MinAtar-Breakout" / "expert.pt", kind="expert")
        assert checkpoint["counters"]["updates"] == (1500 - 500) // 4  # one per 4 agent steps from learning_starts
        models.append(checkpoint["model"])
    assert all(torch.equal(models[0][key], models[1][key]) for key in models[0])
    # epsilon decays over 10% of the 1,500 steps; the target syncs every 200 agent steps = 50 updates
    assert decays == {150} and intervals == {50}


def test_distill_refuses_missing_and_mismatched_experts(experts: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["distill", "--games", "MinAtar/Asterix", "--experts", str(experts), "--out",
                 str(tmp_path / "a"), *TINY_DISTILL]) == 2
    assert "no expert for MinAtar/Asterix" in capsys.readouterr().err
    wrong = f"MinAtar/Breakout={experts / 'MinAtar-SpaceInvaders' / 'expert.pt'}"
    assert main(["distill", "--games", "MinAtar/Breakout", "--experts", wrong, "--out", str(tmp_path / "b"),
                 *TINY_DISTILL]) == 2
    err = capsys.readouterr().err
    assert "MinAtar-SpaceInvaders" in err and "expected" in err


def test_distill_stops_on_a_non_finite_loss(experts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import agents.amn as distill_module

    real, calls = distill_module.distillation_losses, []

    def poisoned(kind: str, logits: dict[str, torch.Tensor], teacher_q: dict[str, torch.Tensor], **kwargs: object):
        losses = real(kind, logits, teacher_q, **kwargs)
        calls.append(1)
        if len(calls) > 75:  # after a good checkpoint
            loss, diagnostics = losses["MinAtar/SpaceInvaders"]
            losses["MinAtar/SpaceInvaders"] = loss * float("nan"), diagnostics
        return losses

    monkeypatch.setattr(distill_module, "distillation_losses", poisoned)
    out = tmp_path / "nan"
    assert main(["distill", "--games", "MinAtar/Breakout", "MinAtar/SpaceInvaders", "--experts", str(experts),
                 "--out", str(out), *TINY_DISTILL, "--set", "checkpoint_interval=400"]) == 2
    err = capsys.readouterr().err
    assert "non-finite ce loss in game MinAtar/SpaceInvaders" in err and "last good checkpoint" in err
    kept = load_checkpoint(out / "student.pt", kind="student")
    assert kept["counters"]["step"] == 400
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_resume_rejects_corrupt_and_missing_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train-experts", "--config", SMOKE, "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    run = tmp_path / "corrupt"
    (run / "MinAtar-Breakout").mkdir(parents=True)
    (run / "config.yaml").write_text(Path(SMOKE).read_text())
    bad = run / "MinAtar-Breakout" / "expert.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["train-experts", "--config", SMOKE, "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "corrupt" in err


def test_checkpoint_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "expert.pt"
    save_checkpoint(path, {"value": 1}, kind="expert")

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    from agents.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="No space left"):
        save_checkpoint(path, {"value": 2}, kind="expert")
    monkeypatch.undo()
    assert load_checkpoint(path, kind="expert")["value"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["expert.pt"]
    umask = os.umask(0o027)
    try:
        save_checkpoint(path, {"value": 3}, kind="expert")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o640  # what open() gives under the umask, not mkstemp's 0600


def test_sigterm_checkpoints_and_resume_finishes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "actormimic", "train-experts", "--config", SMOKE, "--steps", "200000",
               "--set", "log_interval=0.5", "--set", "eval.interval=0", "--set", "eval.final_episodes=2",
               "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    for line in process.stdout:  # wait until learning is under way
        if "updates/s" in line and " 0 updates/s" not in line:
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    rest = process.stdout.read()
    assert process.wait(timeout=120) == 130, rest
    assert "--resume" in rest
    state = load_checkpoint(out / "MinAtar-Breakout" / "expert.pt", kind="expert")
    stopped_at = state["counters"]["step"]
    assert 0 < stopped_at < 200000 and not state["counters"]["finished"]
    assert state["counters"]["seconds"] > 0  # the time it trained, which a time limit counts after --resume
    code = main(["train-experts", "--config", SMOKE, "--steps", str(stopped_at + 800), "--set", "eval.interval=0",
                 "--set", "eval.final_episodes=2", "--out", str(out), "--resume"])
    assert code == 0
    resumed = load_checkpoint(out / "MinAtar-Breakout" / "expert.pt", kind="expert")
    assert resumed["counters"]["finished"] and resumed["counters"]["step"] >= stopped_at + 800
    assert resumed["counters"]["updates"] > state["counters"]["updates"]
    assert resumed["counters"]["seconds"] > state["counters"]["seconds"]


def test_resume_keeps_the_runs_own_config(experts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "experts"
    assert main(["train-experts", "--config", SMOKE, "--steps", "600", "--set", "eval.interval=0",
                 "--set", "eval.final_episodes=0", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train-experts", "--out", str(out), "--resume", "--set", "lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "lr: 0.001 there, 0.5 now" in err and str(out / "config.yaml") in err
    assert main(["train-experts", "--out", str(out), "--resume", "--set", "log_interval=2"]) == 0
    assert "[MinAtar/Breakout] already finished" in capsys.readouterr().out  # the saved games, not the defaults
    assert sorted(p.name for p in out.iterdir()) == ["MinAtar-Breakout", "config.yaml"]

    student = tmp_path / "student"
    assert main(["distill", "--games", "MinAtar/Breakout", "MinAtar/SpaceInvaders", "--experts", str(experts),
                 "--out", str(student), *TINY_DISTILL, "--set", "eval.final_episodes=0"]) == 0
    capsys.readouterr()
    assert main(["distill", "--out", str(student), "--resume", "--loss", "cc"]) == 2
    assert "loss: 'ce' there, 'cc' now" in capsys.readouterr().err
    assert main(["distill", "--out", str(student), "--resume"]) == 0  # its own config and experts
    assert "already finished" in capsys.readouterr().out
    saved = student / "config.yaml"  # earlier versions saved game_weights keys as typed
    saved.write_text(saved.read_text().replace("game_weights: {}", "game_weights: {minatar/breakout: 2.0}"))
    assert main(["distill", "--out", str(student), "--resume", "--set", "game_weights={MinAtar/Breakout: 2}"]) == 0


def test_quickstart_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "quick.yaml"
    config.write_text("""
experts: {games: [MinAtar/Breakout], preset: minatar, steps: 1200, num_envs: 4, replay_capacity: 2000,
          batch_size: 16, learning_starts: 400, eval: {interval: 600, episodes: 2, final_episodes: 3, num_envs: 2}}
distill: {steps: 800, num_envs: 4, replay_capacity: 2000, batch_size: 16, learning_starts: 200,
          eval: {interval: 400, episodes: 2, final_episodes: 3, num_envs: 2}}
losses: [ce, cc]
""")
    out = tmp_path / "quick"
    assert main(["quickstart", "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| MinAtar/Breakout | cc |" in printed and "tensorboard --logdir" in printed
    for name in ("scores.md", "scores.csv", "scores.json", "curves.png"):
        assert (out / name).stat().st_size > 0
    assert main(["quickstart", "--config", str(config), "--out", str(out)]) == 2  # never overwritten silently
    assert main(["quickstart", "--config", str(config), "--out", str(out), "--resume"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert main(["quickstart", "--out", str(out), "--resume"]) == 0  # without --config: the run's own
    assert "already finished" in capsys.readouterr().out
    saved = (out / "config.yaml").read_text()
    assert main(["quickstart", "--out", str(out), "--resume", "--set", "experts.lr=0.5"]) == 2
    assert (out / "config.yaml").read_text() == saved  # a refused resume leaves the run's config as it was


def test_bench_env_loop_steps_every_game_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_env.py --loop steps all games in lockstep (one recv per game per iteration) for each thread setting
    and staging."""
    from envs.vector import VectorEnv

    bench_env, recv, received = load_script("bench_env"), VectorEnv.recv, collections.Counter()

    def counted(self: VectorEnv):  # noqa: ANN202
        received[self.game] += 1
        return recv(self)

    monkeypatch.setattr(VectorEnv, "recv", counted)
    games = ["MinAtar/Breakout", "MinAtar/Asterix"]
    result = bench_env.bench_loop(games, "minatar", 3, [0, 1], ["torch", "numpy"], 0.2, seed=0)
    assert result["games"] == games and result["num_envs_per_game"] == 3
    settings = [(row["ale_threads_per_game"], row["staging"]) for row in result["rows"]]
    assert settings == [(0, "torch"), (0, "numpy"), (1, "torch"), (1, "numpy")]
    assert all(row["env_steps_per_s_all_games"] > 0 for row in result["rows"])
    assert received["MinAtar/Breakout"] == received["MinAtar/Asterix"] > 0
