"""Frozen expert Q-networks, loaded from our expert checkpoints or from Stable-Baselines3 DQN zips."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.networks import QNetwork, q_network_from

SB3_PRESET = "nature"  # SB3/RL-Zoo Atari: NoFrameskip-v4 + AtariWrapper (skip 4, 84x84 gray, stack 4, life loss)
_SB3_PREFIXES = {  # SB3 DQN CnnPolicy (NatureCNN, net_arch=[]) -> QNetwork("nature", ...)
    "q_net.features_extractor.cnn.0.": "torso.0.",
    "q_net.features_extractor.cnn.2.": "torso.2.",
    "q_net.features_extractor.cnn.4.": "torso.4.",
    "q_net.features_extractor.linear.0.": "torso.7.",
    "q_net.q_net.0.": "head.",
}


class Expert:
    """A frozen QNetwork in eval mode on `device`, with the game, preset and ALE action ids it was trained on."""

    def __init__(
        self,
        network: QNetwork,
        *,
        game: str,
        preset_name: str,
        action_ids: Sequence[int],
        source: Path,
        device: str | torch.device,
    ) -> None:
        self.network = network.to(device).eval().requires_grad_(False)
        self.game = game
        self.preset_name = preset_name
        self.action_ids = tuple(int(a) for a in action_ids)
        self.source = source

    @property
    def n_actions(self) -> int:
        """Number of actions (columns of q_values)."""
        return self.network.n_actions

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """Channel-first observation shape the network takes."""
        return self.network.obs_shape

    def q_values(self, obs: Tensor) -> Tensor:
        """Q-values (B, n_actions) under no_grad (safe to store)."""
        with torch.no_grad():
            return self.network(obs)

    def features(self, obs: Tensor) -> Tensor:
        """Penultimate features (B, F) under no_grad."""
        with torch.no_grad():
            return self.network.features(obs)


def save_expert(
    path: str | os.PathLike, network: QNetwork, *, game: str, preset: Mapping[str, Any], action_ids: Sequence[int]
) -> None:
    """Write an expert checkpoint (game, preset dict with "name", ALE action ids, network spec and weights)."""
    data = {
        "game": game,
        "preset": dict(preset),
        "action_ids": [int(a) for a in action_ids],
        "network": network.spec,
        "model": network.state_dict(),
    }
    save_checkpoint(path, data, kind="expert")


def load_expert(
    path: str | os.PathLike,
    *,
    game: str,
    preset_name: str,
    n_actions: int,
    obs_shape: Sequence[int],
    device: str | torch.device = "cpu",
    action_ids: Sequence[int] | None = None,
) -> Expert:
    """Load an expert from our checkpoint or an SB3 `.zip`, refusing any mismatch with what the caller expects.

    `action_ids` (ALE ids of the env's action set) is checked against our checkpoints and is required for SB3 zips,
    which do not store it.
    """
    path = Path(path)
    expected_shape = tuple(int(d) for d in obs_shape)
    if path.suffix == ".zip":
        if preset_name != SB3_PRESET:
            raise ValueError(
                f"expert {path}: Stable-Baselines3 Atari experts have preset {SB3_PRESET!r}, "
                f"but preset {preset_name!r} was requested"
            )
        if action_ids is None:
            raise ValueError(f"expert {path}: a Stable-Baselines3 zip does not record ALE action ids; pass action_ids")
        ids = tuple(int(a) for a in action_ids)
        _expect(path, "action count of action_ids", n_actions, len(ids))
        network = _load_sb3_network(path, n_actions, expected_shape)
    else:
        ckpt = load_checkpoint(path, kind="expert")
        try:
            found = (ckpt["game"], ckpt["preset"]["name"], tuple(ckpt["action_ids"]))
            network = q_network_from(ckpt)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"expert checkpoint {path} is malformed: {error!r}") from error
        _expect(path, "game", game, found[0])
        _expect(path, "preset", preset_name, found[1])
        ids = found[2]
        if action_ids is not None:
            _expect(path, "action ids", tuple(int(a) for a in action_ids), ids)
        _expect(path, "action count", n_actions, len(ids))
        _expect(path, "network action count", n_actions, network.n_actions)
        _expect(path, "observation shape", expected_shape, network.obs_shape)
    return Expert(network, game=game, preset_name=preset_name, action_ids=ids, source=path, device=device)


def _expect(path: Path, what: str, expected: Any, found: Any) -> None:
    """Raise ValueError naming the file when `found` differs from `expected`."""
    if expected != found:
        raise ValueError(f"expert {path}: expected {what} {expected!r}, found {found!r}")


def _load_sb3_network(path: Path, n_actions: int, obs_shape: tuple[int, ...]) -> QNetwork:
    """Read an SB3 DQN CnnPolicy zip (JSON `data` + `policy.pth`, nothing unpickled) into a nature QNetwork."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
            state = torch.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu", weights_only=True)
        obs_space, action_space = data["observation_space"], data["action_space"]
        found_shape = tuple(int(d) for d in obs_space.get("_shape", obs_space.get("shape")))
        found_n = int(action_space["n"])
        obs_dtype = str(obs_space.get("dtype"))
        normalize = data.get("policy_kwargs", {}).get("normalize_images", True)
    except Exception as error:  # zipfile, zlib, json and torch raise many types for damaged or foreign files
        raise CheckpointError(f"{path} is not a readable Stable-Baselines3 DQN zip: {error!r}") from error
    if len(found_shape) == 3 and found_shape[2] < found_shape[0] == found_shape[1]:
        found_shape = (found_shape[2], found_shape[0], found_shape[1])  # channel-last space; SB3 transposes it
    _expect(path, "action count", n_actions, found_n)
    _expect(path, "observation shape", obs_shape, found_shape)
    if obs_dtype != "uint8" or normalize in (False, "False"):
        raise ValueError(f"expert {path}: expected uint8 images scaled by 1/255, found dtype {obs_dtype}, "
                         f"normalize_images={normalize}")
    mapped = {}
    for key, value in state.items():
        if key.startswith("q_net_target."):
            continue
        prefix = next((p for p in _SB3_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise ValueError(
                f"expert {path}: unsupported SB3 policy weight {key!r} (expected DQN CnnPolicy with net_arch=[])"
            )
        mapped[_SB3_PREFIXES[prefix] + key[len(prefix):]] = value
    network = QNetwork("nature", found_shape, found_n)
    try:
        network.load_state_dict(mapped)
    except RuntimeError as error:
        raise ValueError(
            f"expert {path}: SB3 weights do not fit QNetwork('nature', {found_shape}, {found_n}): {error}"
        ) from error
    return network
