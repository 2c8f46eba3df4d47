"""Evaluation protocols (settings, epsilon, episode quotas, the frame cap, no-op starts) and fidelity to a teacher."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import actormimic.evaluation as evaluation
from actormimic.cli import main
from actormimic.evaluation import (StateReservoir, evaluate_policy, evaluate_with_fidelity, fidelity, get_protocol,
                                   protocol_for)
from actormimic.runtime import RunError
from envs import Finished, StepResult, get_preset, make_vector


def test_protocol_settings() -> None:
    nature = get_protocol("nature", "Pong")
    assert (nature.episodes, nature.epsilon) == (30, 0.05)
    assert nature.preset.max_episode_frames == 18_000 and nature.preset.sticky_action_prob == 0.0
    assert nature.preset.noop_max == 30 and not nature.preset.episodic_life
    machado = get_protocol("machado", "Pong")
    assert (machado.epsilon, machado.preset.sticky_action_prob, machado.preset.max_episode_frames) == (0.01, 0.25,
                                                                                                      108_000)
    assert get_protocol("auto", "MinAtar/Breakout").name == "minatar"
    assert get_protocol("auto", "Pong", episodes=5, epsilon=0.2).episodes == 5
    assert set(nature.to_dict()) >= {"name", "epsilon", "episodes", "sticky_action_prob", "max_episode_frames"}


@pytest.mark.parametrize(("name", "game"), [("nature", "MinAtar/Breakout"), ("minatar", "Pong"), ("atari", "Pong")])
def test_protocol_must_fit_the_game(name: str, game: str) -> None:
    with pytest.raises(RunError):
        get_protocol(name, game)


def test_auto_protocol_follows_the_training_preset_and_refuses_a_smaller_action_set(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert get_protocol("auto", "Pong", preset="machado").name == "machado"
    assert get_protocol("auto", "Pong", preset="nature").name == "nature"
    assert protocol_for("machado", "Breakout", "nature").name == "machado"  # minimal actions are in the full set
    with pytest.raises(RunError, match=r"protocol nature cannot score Breakout trained with preset machado"):
        protocol_for("nature", "Breakout", "machado")
    out = tmp_path / "run"
    assert main(["train-experts", "--games", "Breakout", "--set", "preset=machado", "--set", "eval.protocol=nature",
                 "--out", str(out)]) == 2
    assert "lacks the agent's actions" in capsys.readouterr().err and not out.exists()


class ScriptedEnv:
    """A vector env whose games last `length` steps and score the action taken; records actions."""

    def __init__(self, num_envs: int, length: int, action_ids: tuple[int, ...]) -> None:
        self.num_envs, self.length, self.action_ids = num_envs, length, action_ids
        self.t = np.zeros(num_envs, dtype=int)
        self.actions: list[np.ndarray] = []

    def reset(self, seed: int | None = None) -> np.ndarray:
        return np.zeros((self.num_envs, 1, 10, 10), dtype=np.uint8)

    def step(self, actions: np.ndarray) -> StepResult:
        self.actions.append(actions.copy())
        self.t += 1
        done = self.t % self.length == 0
        zeros = np.zeros(self.num_envs, dtype=bool)
        finished = [Finished(i, float(self.length), self.length, 0.0) for i in np.flatnonzero(done)]
        return StepResult(self.reset(), np.zeros(self.num_envs, np.float32), np.zeros(self.num_envs, np.float32),
                          done, zeros, zeros, done, finished)

    def close(self) -> None:
        pass


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> list[ScriptedEnv]:
    made: list[ScriptedEnv] = []

    def make(game: str, preset: object, num_envs: int, seed: int) -> ScriptedEnv:
        made.append(ScriptedEnv(num_envs, length=5, action_ids=(0, 1, 3, 4)))
        return made[-1]

    monkeypatch.setattr(evaluation, "make_vector", make)
    return made


def test_epsilon_is_honoured(scripted: list[ScriptedEnv]) -> None:
    greedy = lambda obs: torch.full((len(obs),), 2, dtype=torch.long)  # noqa: E731 (ALE id 3 = env index 2)
    for epsilon in (0.0, 0.5, 1.0):
        protocol = dataclasses.replace(get_protocol("minatar", "MinAtar/Breakout"), epsilon=epsilon, episodes=400)
        evaluate_policy(greedy, [0, 1, 3, 4], "MinAtar/Breakout", protocol, num_envs=8, seed=1)
        actions = np.concatenate(scripted[-1].actions)
        off_greedy = float(np.mean(actions != 2))
        expected = epsilon * 3 / 4  # a random pick is the greedy action 1 time in 4
        assert abs(off_greedy - expected) < 0.03, (epsilon, off_greedy)


def test_every_env_plays_a_fixed_share_of_the_episodes(scripted: list[ScriptedEnv]) -> None:
    protocol = dataclasses.replace(get_protocol("minatar", "MinAtar/Breakout"), episodes=13, epsilon=0.0)
    returns = evaluate_policy(lambda obs: torch.zeros(len(obs), dtype=torch.long), [0, 1, 3, 4],
                              "MinAtar/Breakout", protocol, num_envs=4, seed=0)
    assert returns == [5.0] * 13


def test_agent_actions_outside_the_protocol_action_set_are_refused(scripted: list[ScriptedEnv]) -> None:
    protocol = get_protocol("minatar", "MinAtar/Breakout", episodes=2)
    with pytest.raises(RunError, match="not in the minatar action set"):
        evaluate_policy(lambda obs: torch.zeros(len(obs), dtype=torch.long), [0, 17], "MinAtar/Breakout", protocol)


def test_frame_cap_ends_evaluation_episodes() -> None:
    protocol = get_protocol("nature", "Pong", episodes=3, epsilon=0.0)
    capped = dataclasses.replace(protocol, preset=dataclasses.replace(protocol.preset, max_episode_frames=400))
    returns = evaluate_policy(lambda obs: torch.zeros(len(obs), dtype=torch.long), [0, 1, 3, 4, 11, 12], "Pong",
                              capped, num_envs=3, seed=0)
    assert len(returns) == 3 and all(r <= 0 for r in returns)  # NOOP for 100 steps: at most a few lost points


def test_no_op_starts_stay_within_bounds_and_vary() -> None:
    preset = dataclasses.replace(get_preset("nature"), fire_reset=False)
    env = make_vector("Pong", preset, 8, seed=3)
    try:
        _, info = env._env.reset(seed=np.arange(8))  # the backend reports the frames played at reset
        frames = np.asarray(info["episode_frame_number"])
    finally:
        env.close()
    assert frames.max() <= preset.noop_max * preset.frame_skip and len(set(frames.tolist())) > 1


def test_state_reservoir_keeps_a_uniform_sample() -> None:
    capacity, stream, trials = 8, 40, 3000
    kept = np.zeros(stream)
    for trial in range(trials):
        reservoir = StateReservoir(capacity, seed=trial)
        for start in range(0, stream, 7):  # uneven batches, the last one short
            reservoir.add(torch.arange(start, min(start + 7, stream)).unsqueeze(1))
        rows = reservoir.states[:, 0].numpy()
        assert len(set(rows.tolist())) == capacity  # no row twice, every slot filled
        kept[rows] += 1
    # each of the 40 rows is kept with probability 8/40: 600 of 3000 trials, binomial std ~22
    assert np.abs(kept - trials * capacity / stream).max() < 5 * np.sqrt(trials * 0.2 * 0.8)


def test_state_reservoir_short_stream_keeps_everything() -> None:
    reservoir = StateReservoir(10, seed=0)
    reservoir.add(torch.arange(6).reshape(3, 2))
    assert torch.equal(reservoir.states, torch.arange(6).reshape(3, 2))
    with pytest.raises(ValueError, match="no states"):
        StateReservoir(4).states  # noqa: B018


def test_fidelity_agreement_and_regret_by_hand() -> None:
    q = torch.tensor([[1.0, 3.0, 2.0], [5.0, 0.0, 5.0], [0.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    picks = torch.tensor([2, 2, 2, 0])  # regret 1, 0 (tie with the best), 1, 0
    result = fidelity(lambda obs: picks[obs[:, 0]], lambda obs: q[obs[:, 0]], torch.arange(4).unsqueeze(1), chunk=3)
    assert result == {"agreement": 0.5, "regret": 0.5, "states": 4}


def test_evaluate_with_fidelity_on_minatar(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    q_net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 10 * 10, 3))  # Breakout: 4 channels, 3 actions
    teacher = lambda obs: q_net(obs.float())  # noqa: E731
    protocol = get_protocol("minatar", "MinAtar/Breakout", episodes=4, epsilon=0.0)
    actions = list(make_vector("MinAtar/Breakout", "minatar", 1, 0).action_ids)
    returns, itself = evaluate_with_fidelity(lambda obs: teacher(obs).argmax(-1), actions, "MinAtar/Breakout",
                                             protocol, teacher, num_envs=2, seed=1)
    assert len(returns) == 4 and itself["agreement"] == 1.0 and itself["regret"] == 0.0 and itself["states"] > 0

    offered: list[torch.Tensor] = []
    add = StateReservoir.add
    monkeypatch.setattr(StateReservoir, "add", lambda self, obs: (offered.append(obs), add(self, obs))[1])
    _, constant = evaluate_with_fidelity(lambda obs: torch.zeros(len(obs), dtype=torch.long), actions,
                                         "MinAtar/Breakout", protocol, teacher, num_envs=2, seed=1)
    visited = torch.cat(offered)
    assert len(visited) <= evaluation.FIDELITY_STATES  # short games: the sample is every visited state
    with torch.no_grad():
        q = teacher(visited)
    assert constant["states"] == len(visited)
    assert constant["agreement"] == pytest.approx(float((q[:, 0] == q.max(-1).values).float().mean()))
    assert constant["regret"] == pytest.approx(float((q.max(-1).values - q[:, 0]).mean()), rel=1e-5)


class UnequalEnv(ScriptedEnv):
    """Env i's games last i + 1 steps and score i + 1."""

    def step(self, actions: np.ndarray) -> StepResult:
        self.actions.append(actions.copy())
        self.t += 1
        lengths = np.arange(1, self.num_envs + 1)
        done = self.t % lengths == 0
        zeros = np.zeros(self.num_envs, dtype=bool)
        finished = [Finished(int(i), float(lengths[i]), int(lengths[i]), 0.0) for i in np.flatnonzero(done)]
        return StepResult(self.reset(), np.zeros(self.num_envs, np.float32), np.zeros(self.num_envs, np.float32),
                          done, zeros, zeros, done, finished)


def test_short_episodes_are_not_over_represented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "make_vector", lambda game, preset, n, seed: UnequalEnv(n, 1, (0, 1, 3, 4)))
    protocol = dataclasses.replace(get_protocol("minatar", "MinAtar/Breakout"), episodes=8, epsilon=0.0)
    returns = evaluate_policy(lambda obs: torch.zeros(len(obs), dtype=torch.long), [0, 1, 3, 4],
                              "MinAtar/Breakout", protocol, num_envs=4, seed=0)
    assert sorted(returns) == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]  # 2 episodes from each env, not the first 8 ends


def test_random_baseline_draws_actions_uniformly(scripted: list[ScriptedEnv]) -> None:
    evaluation.random_score.__wrapped__("MinAtar/Breakout", get_protocol("minatar", "MinAtar/Breakout"))
    actions = np.concatenate(scripted[-1].actions)
    assert len(actions) >= 500 and all(abs(np.mean(actions == a) - 0.25) < 0.05 for a in range(4))
