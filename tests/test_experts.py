"""Loading frozen experts: Stable-Baselines3 DQN zips (RL-Zoo Atari layout) and our own expert checkpoints."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents import QNetwork, load_expert, save_expert
from agents.checkpoint import CheckpointError

PONG_ACTIONS = [0, 1, 3, 4, 11, 12]
ATARI = (4, 84, 84)


class FrameStackedAtari(gym.Env):
    """Stand-in for AtariWrapper + VecFrameStack(4): channel-last uint8 (84, 84, 4), which SB3 transposes."""

    observation_space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    action_space = gym.spaces.Discrete(len(PONG_ACTIONS))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action: int):
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.fixture(scope="module")
def sb3_zip(tmp_path_factory: pytest.TempPathFactory):
    """An SB3 DQN CnnPolicy saved as RL-Zoo does; its target net is perturbed so a wrong mapping shows."""
    from stable_baselines3 import DQN as SB3DQN

    model = SB3DQN("CnnPolicy", FrameStackedAtari(), buffer_size=10, learning_starts=0, seed=0, device="cpu")
    with torch.no_grad():
        for p in model.q_net_target.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path_factory.mktemp("sb3") / "dqn-PongNoFrameskip-v4.zip"
    model.save(path)
    return path, model


def load_pong(path: Path, **overrides):
    kwargs = dict(game="Pong", preset_name="nature", n_actions=6, obs_shape=ATARI, action_ids=PONG_ACTIONS)
    return load_expert(path, **{**kwargs, **overrides})


def test_sb3_zip_q_values_match_sb3(sb3_zip) -> None:
    path, model = sb3_zip
    expert = load_pong(path)
    assert model.observation_space.shape == ATARI  # SB3 stored the transposed, channel-first space
    obs = torch.randint(0, 256, (8, *ATARI), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.q_net(obs)  # SB3 preprocessing: float / 255 (normalize_images=True)
    q = expert.q_values(obs)
    torch.testing.assert_close(q, expected, atol=1e-5, rtol=0)
    assert not q.requires_grad
    assert expert.features(obs).shape == (8, 512)
    assert (expert.game, expert.preset_name, expert.action_ids) == ("Pong", "nature", tuple(PONG_ACTIONS))
    assert (expert.n_actions, expert.obs_shape, expert.source) == (6, ATARI, path)
    assert not expert.network.training
    assert not any(p.requires_grad for p in expert.network.parameters())


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"n_actions": 4}, "action count"),
        ({"preset_name": "minatar"}, "preset"),
        ({"obs_shape": (1, 84, 84)}, "observation shape"),
        ({"action_ids": None}, "action_ids"),
        ({"action_ids": [0, 1, 3]}, "action count of action_ids"),
    ],
)
def test_sb3_zip_mismatch_is_refused(sb3_zip, overrides: dict, message: str) -> None:
    path, _ = sb3_zip
    with pytest.raises(ValueError, match=message) as info:
        load_pong(path, **overrides)
    assert str(path) in str(info.value)


def test_corrupt_zip_names_the_path(sb3_zip, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip file")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(sb3_zip[0].read_bytes()[:4000])
    for path in (garbage, truncated, tmp_path / "missing.zip"):
        with pytest.raises(CheckpointError, match="Stable-Baselines3") as info:
            load_pong(path)
        assert str(path) in str(info.value)


def test_other_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "expert.pt"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError) as info:
        load_pong(path)
    assert str(path) in str(info.value)


@pytest.fixture
def own_expert(tmp_path: Path):
    torch.manual_seed(0)
    network = QNetwork("minatar", (4, 10, 10), 3, dueling=True)
    path = tmp_path / "breakout.pt"
    save_expert(path, network, game="breakout", preset={"name": "minatar", "sticky": 0.1}, action_ids=[0, 1, 3])
    return path, network


def load_breakout(path: Path, **overrides):
    kwargs = dict(game="breakout", preset_name="minatar", n_actions=3, obs_shape=(4, 10, 10))
    return load_expert(path, **{**kwargs, **overrides})


def test_own_format_round_trip(own_expert) -> None:
    path, network = own_expert
    expert = load_breakout(path)
    assert expert.action_ids == (0, 1, 3) and expert.network.dueling
    obs = torch.randint(0, 2, (5, 4, 10, 10), dtype=torch.uint8)
    torch.testing.assert_close(expert.q_values(obs), network(obs).detach())
    torch.testing.assert_close(expert.features(obs), network.features(obs).detach())
    assert load_breakout(path, action_ids=[0, 1, 3]).action_ids == (0, 1, 3)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"game": "pong"}, "game"),
        ({"preset_name": "nature"}, "preset"),
        ({"n_actions": 4}, "action count"),
        ({"obs_shape": (3, 10, 10)}, "observation shape"),
        ({"action_ids": [0, 1, 4]}, "action ids"),
    ],
)
def test_own_format_mismatch_is_refused(own_expert, overrides: dict, message: str) -> None:
    path, _ = own_expert
    with pytest.raises(ValueError, match=message) as info:
        load_breakout(path, **overrides)
    assert str(path) in str(info.value)


def test_evaluate_scores_an_sb3_zip_for_the_game_it_is_given(sb3_zip, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`actormimic evaluate` plays an SB3 expert under our protocol; the zip does not say its game, so --games or
    RL-Zoo's file name must."""
    import json

    from actormimic.cli import main

    path, model = sb3_zip
    renamed = tmp_path / "expert.zip"
    renamed.write_bytes(path.read_bytes())
    assert main(["evaluate", str(renamed)]) == 2
    assert "does not record its game: pass --games GAME" in capsys.readouterr().err
    assert main(["evaluate", str(path), "--games", "Breakout"]) == 2  # Breakout has 4 actions, the zip 6
    assert "action count" in capsys.readouterr().err
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(path), "--episodes", "2", "--out", str(out)]) == 0  # RL-Zoo's name says Pong
    assert "protocol: nature" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["kind"] == "expert" and result["method"] == "sb3-dqn" and len(result["games"]["Pong"]["returns"]) == 2


def test_an_experts_folder_finds_rl_zoo_zips(sb3_zip, tmp_path: Path) -> None:
    """--experts DIR: RL-Zoo's file name as a file or as a downloaded Hugging Face repo; ours first."""
    from actormimic.distill import expert_paths

    path, _ = sb3_zip
    (tmp_path / "dqn-PongNoFrameskip-v4.zip").write_bytes(path.read_bytes())
    repo = tmp_path / "dqn-BreakoutNoFrameskip-v4"
    repo.mkdir()
    (repo / "dqn-BreakoutNoFrameskip-v4.zip").write_bytes(path.read_bytes())
    assert expert_paths(["Pong", "Breakout"], [str(tmp_path)], {}) == {
        "Pong": tmp_path / "dqn-PongNoFrameskip-v4.zip", "Breakout": repo / "dqn-BreakoutNoFrameskip-v4.zip"}
    (tmp_path / "Pong").mkdir()
    (tmp_path / "Pong" / "expert-best.pt").write_bytes(b"")
    assert expert_paths(["Pong"], [str(tmp_path)], {})["Pong"] == tmp_path / "Pong" / "expert-best.pt"
