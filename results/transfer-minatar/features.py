"""How the student's torso sees a game's states, against a fresh torso: of its 128 features, how many never fire and
what share fire on average, and the features' mean norm, on 2,000 states of uniformly random play.

    python results/transfer-minatar/features.py OUT/student/student.pt MinAtar/Asterix MinAtar/Breakout
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from actormimic.train_experts import _init_torso
from agents.networks import QNetwork
from envs import make_vector


def random_play_states(game: str, steps: int = 250, envs: int = 8) -> torch.Tensor:
    """Observations of `envs` envs under uniformly random actions, `steps` vector steps."""
    env = make_vector(game, "minatar", envs, seed=0)
    rng, obs, states = np.random.default_rng(0), env.reset(seed=0), []
    for _ in range(steps):
        states.append(torch.as_tensor(obs))
        obs = env.step(rng.integers(0, env.n_actions, envs)).obs
    env.close()
    return torch.cat(states)


def feature_stats(net: QNetwork, states: torch.Tensor) -> dict[str, float]:
    """Features never active, mean share active, mean feature norm."""
    with torch.no_grad():
        features = net.torso(states)
    active = (features > 0).float().mean(0)
    return {"never_active": int((active == 0).sum()), "features": features.shape[1],
            "mean_active_share": float(active.mean()), "mean_norm": float(features.norm(dim=1).mean())}


def main(student: str, games: list[str]) -> None:
    """Print and write features.json next to this script."""
    torch.manual_seed(0)
    rows = {}
    for game in games:
        states = random_play_states(game)
        shape, actions = tuple(states.shape[1:]), 5
        fresh, transferred = QNetwork("minatar", shape, actions), QNetwork("minatar", shape, actions)
        _init_torso(transferred, student)
        rows[game] = {"random init": feature_stats(fresh, states), "student torso": feature_stats(transferred, states)}
        for start, row in rows[game].items():
            print(f"{game:18} {start:14} never active {row['never_active']:3}/{row['features']}, "
                  f"mean share active {row['mean_active_share']:.3f}, mean norm {row['mean_norm']:.2f}")
    Path(__file__).with_name("features.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
