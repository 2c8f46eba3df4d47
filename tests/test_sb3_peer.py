"""scripts/sb3_peer.py: SB3 DQN with our config, env layer, network and evaluation protocol (smoke tests)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from actormimic.config import ExpertsConfig, load_config
from actormimic.reports import load_runs, read_eval_curves, score_table, validate_eval_result
from actormimic.runtime import RunError
from agents.networks import QNetwork
from envs import get_preset, make_vector

pytest.importorskip("stable_baselines3")

REPO = Path(__file__).resolve().parents[1]
GAME = "MinAtar/Breakout"
CONFIG = REPO / "configs" / "experts" / "minatar.yaml"


def _load_script():
    spec = importlib.util.spec_from_file_location("sb3_peer", REPO / "scripts" / "sb3_peer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sb3_peer"] = module
    spec.loader.exec_module(module)
    return module


peer = _load_script()


def test_smoke_run_writes_eval_json_and_tb(tmp_path: Path) -> None:
    out = tmp_path / "sb3"
    result = peer.main(["--game", GAME, "--steps", "400", "--seed", "3", "--out", str(out), "--config", str(CONFIG),
                        "--eval-interval", "400", "--eval-episodes", "2", "--set", "learning_starts=100",
                        "--set", "eval.final_episodes=2", "--set", "eval.num_envs=2"])
    saved = json.loads((out / "eval.json").read_text())
    assert saved == json.loads(json.dumps(result))
    validate_eval_result(saved, "sb3 eval.json")
    assert {k: saved[k] for k in ("checkpoint", "kind", "method", "seed", "aggregate")} == {
        "checkpoint": "sb3", "kind": "expert", "method": "sb3-dqn", "seed": 3, "aggregate": {}}
    assert saved["protocol"]["name"] == "minatar" and saved["protocol"]["sticky_action_prob"] == 0.1
    entry = saved["games"][GAME]
    assert len(entry["returns"]) == 2 and entry["expert_mean"] is None
    assert {"mean", "std", "ci95", "random", "human_normalized", "expert_normalized"} <= set(entry)
    throughput = saved["throughput"]
    assert throughput["steps_after_learning_starts"] > 0 and throughput["steps_per_s"] > 0
    args = saved["sb3"]["args"]
    assert (args["train_freq"], args["gradient_steps"], args["n_steps"]) == ([1, "step"], 2, 3)
    # updates: 0.25 per agent step once num_timesteps > learning_starts (SB3 trains after the 104th step)
    assert saved["sb3"]["updates"] == 2 * ((400 - 104) // 8 + 1)
    # one periodic eval at step 400; the end-of-training eval at the same step is not repeated
    steps, scores = read_eval_curves(out)["MinAtar-Breakout"]
    assert steps.tolist() == [400] and np.isfinite(scores).all()
    # ... so the last network is the best periodic one and the final evaluation scores it alone
    assert saved["final_choice"]["chosen"] == "best" and list(saved["final_choice"]["candidates"]) == ["best"]
    assert saved["final_choice"]["candidates"]["best"]["step"] == 400
    assert (out / "expert-best.pt").is_file() and (out / "config.yaml").is_file()
    table = score_table(load_runs([out]), n_boot=50)
    assert list(table["methods"]) == ["sb3-dqn"]


def test_network_is_our_qnetwork_and_hyperparameters_map() -> None:
    config = load_config(ExpertsConfig, CONFIG)
    model, arch, obs_shape, n_actions, action_ids = peer.build_model(config, GAME, torch.device("cpu"))
    try:
        ours = QNetwork("minatar", obs_shape, n_actions)
        assert arch == "minatar" and obs_shape == (4, 10, 10) and n_actions == 3
        assert [p.shape for p in model.q_net.parameters()] == [p.shape for p in ours.parameters()]
        assert [p.shape for p in model.q_net_target.parameters()] == [p.shape for p in ours.parameters()]
        copy = peer.to_qnetwork(model.q_net, arch, obs_shape, n_actions)
        obs = torch.randint(0, 2, (5, *obs_shape), dtype=torch.uint8)
        with torch.no_grad():
            torch.testing.assert_close(copy(obs), model.q_net(obs))
        # hyperparameters as SB3 holds them
        assert model.learning_rate == config.lr and model.batch_size == 32 and model.gamma == 0.99
        assert model.policy.optimizer.param_groups[0]["eps"] == config.adam_eps
        assert type(model.replay_buffer).__name__ == "NStepReplayBuffer" and model.replay_buffer.n_steps == 3
        assert model.replay_buffer.buffer_size * config.num_envs == config.replay_capacity
        assert (model.train_freq.frequency, model.gradient_steps, model.n_envs) == (1, 2, 8)
        assert model.target_update_interval // model.n_envs * model.n_envs == config.target_update_interval
        assert model.exploration_schedule(1.0) == 1.0 and model.exploration_schedule(0.9) == pytest.approx(0.01)
        assert model.tau == 1.0 and model.max_grad_norm == 10.0 and model.learning_starts == 5000
        assert action_ids == list(make_vector(GAME, "minatar", 1, 0).action_ids)
    finally:
        model.env.close()


def test_env_wrapper_gives_our_observations_and_truncation() -> None:
    preset = dataclasses.replace(get_preset("minatar"), max_episode_frames=4)
    env = peer.OurEnv(GAME, preset, seed=0)
    ours = make_vector(GAME, preset, 1, seed=0)
    obs, _ = env.reset(seed=7)
    assert obs.dtype == np.uint8 and obs.shape == (4, 10, 10)
    np.testing.assert_array_equal(obs, ours.reset(seed=7)[0])
    for t in range(4):
        obs, reward, terminated, truncated, info = env.step(t % 3)
        result = ours.step(np.array([t % 3]))
        np.testing.assert_array_equal(obs, result.obs[0])
        assert reward == result.reward[0]
    assert truncated and not terminated and "game_return" in info
    env.close()
    ours.close()


def test_update_schedule_and_refusals() -> None:
    assert peer.update_schedule(0.25, 8) == (1, 2)
    assert peer.update_schedule(0.25, 1) == (4, 1)
    assert peer.update_schedule(1.0, 4) == (1, 4)
    with pytest.raises(RunError):
        peer.update_schedule(0.123456789, 1)
    for override in ("dueling=true", "loss=mse", "target_update=polyak"):
        with pytest.raises(RunError, match="cannot reproduce"):
            peer.check_supported(load_config(ExpertsConfig, CONFIG, [override]))
