"""Greedy policies from checkpoints (an expert file, an SB3 zip or a student), for evaluation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from actormimic.runtime import RunError
from agents.amn import Student
from agents.checkpoint import load_checkpoint
from agents.experts import SB3_PRESET, load_expert
from agents.networks import q_network_from
from envs import game_action_ids, get_preset, resolve_game

Policy = Callable[[torch.Tensor], torch.Tensor]  # observations -> greedy action indices
QFunction = Callable[[torch.Tensor], torch.Tensor]  # observations -> Q-values


@dataclass
class LoadedPolicies:
    """Per game: a greedy policy and its action set (ALE ids); for a student also its experts' Q-functions."""

    kind: str
    method: str
    preset: str
    by_game: dict[str, tuple[Policy, list[int]]]
    experts: dict[str, tuple[QFunction, list[int]]] = field(default_factory=dict)


def _greedy(network: torch.nn.Module) -> Policy:
    """argmax of a Q-network's outputs."""
    network.eval()
    return lambda obs: network(obs).argmax(-1)


def _sb3_expert(path: Path, device: torch.device, games: Sequence[str] | None) -> LoadedPolicies:
    """A Stable-Baselines3 DQN zip (RL-Zoo Atari), which does not record its game: `games` names the one, or else
    RL-Zoo's file name does (dqn-PongNoFrameskip-v4.zip)."""
    zoo_name = re.fullmatch(r"dqn-(\w+NoFrameskip-v4)", path.stem)
    if (not games and not zoo_name) or (games and len(games) != 1):
        raise RunError(f"{path} is a Stable-Baselines3 zip, which does not record its game: pass --games GAME (one)")
    preset = get_preset(SB3_PRESET)
    try:
        game = games[0] if games else resolve_game(zoo_name.group(1))
        ids = list(game_action_ids(game, preset))
        expert = load_expert(path, game=game, preset_name=preset.name, n_actions=len(ids), device=device,
                             obs_shape=(preset.frame_stack, preset.image_size, preset.image_size), action_ids=ids)
    except ValueError as error:  # an unknown game, another preset's game, a network of another action count
        raise RunError(str(error)) from error
    return LoadedPolicies("expert", "sb3-dqn", preset.name, {game: (_greedy(expert.network), ids)})


def load_policies(path: str | Path, device: torch.device, games: Sequence[str] | None = None) -> LoadedPolicies:
    """Load an expert (ours or a Stable-Baselines3 zip), or a student with its experts when their files still
    exist."""
    if Path(path).suffix == ".zip":
        return _sb3_expert(Path(path), device, games)
    data = load_checkpoint(path, kind=("expert", "student"), map_location=device)
    if data["kind"] == "expert":
        if games and list(games) != [data["game"]]:
            raise RunError(f"{path} is the expert of {data['game']}; it cannot play {', '.join(games)}")
        network = q_network_from(data).to(device)
        return LoadedPolicies("expert", "expert", data["preset"]["name"],
                              {data["game"]: (_greedy(network), list(data["action_ids"]))})
    student = Student(**data["student"]).to(device)
    student.load_state_dict(data["model"])
    student.eval()
    chosen = list(games) if games else list(data["games"])
    unknown = [g for g in chosen if g not in data["games"]]
    if unknown:
        raise RunError(f"the student {path} does not know {', '.join(unknown)} (it knows {', '.join(data['games'])})")
    loaded = LoadedPolicies("student", data["method"], data["preset"]["name"], {
        game: ((lambda obs, g=game: student.logits(obs, g).argmax(-1)), list(data["action_ids"][game]))
        for game in chosen
    })
    for game in chosen:
        expert_path = Path(data["experts"][game])
        if expert_path.is_file():
            ids = list(data["action_ids"][game])
            expert = load_expert(expert_path, game=game, preset_name=data["preset"]["name"], n_actions=len(ids),
                                 obs_shape=tuple(data["obs_shapes"][game]), device=device,
                                 action_ids=ids)
            loaded.experts[game] = (expert.q_values, ids)
    return loaded
