"""Named evaluation protocols, the parallel evaluation runner and `actormimic evaluate`.

Scores are always raw, unclipped, full-game returns (game over or the protocol's frame cap).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from actormimic import stats
from actormimic.reports import HUMAN_KEYS, game_result, markdown_scores_table
from actormimic.runtime import RunError, select_device, write_json
from envs import Preset, game_action_ids, get_preset, is_minatar, make_vector, resolve_game

Policy = Callable[[torch.Tensor], torch.Tensor]
QFunction = Callable[[torch.Tensor], torch.Tensor]
RANDOM_BASELINE_SEED = 7919
FIDELITY_STATES = 4096  # agreement over 4096 states: standard error <= 0.008


@dataclass(frozen=True)
class Protocol:
    """How scores are measured: the env settings, the acting epsilon and the episode count."""

    name: str
    preset: Preset
    epsilon: float
    episodes: int

    def to_dict(self) -> dict[str, Any]:
        """Every setting, for the results JSON."""
        return {"name": self.name, "epsilon": self.epsilon, "episodes": self.episodes, **self.preset.to_dict(),
                "preset": self.preset.name}


def _protocols() -> dict[str, Protocol]:
    """nature (Mnih et al. 2015), machado (Machado et al. 2018), minatar (Young & Tian 2019)."""
    nature = dataclasses.replace(get_preset("nature"), max_episode_frames=18_000, episodic_life=False)
    machado = dataclasses.replace(get_preset("machado"), max_episode_frames=108_000, episodic_life=False)
    return {
        "nature": Protocol("nature", nature, epsilon=0.05, episodes=30),
        "machado": Protocol("machado", machado, epsilon=0.01, episodes=30),
        "minatar": Protocol("minatar", get_preset("minatar"), epsilon=0.01, episodes=30),
    }


PROTOCOL_NAMES = ("nature", "machado", "minatar")


def get_protocol(name: str, game: str, *, preset: str = "nature", episodes: int | None = None,
                 epsilon: float | None = None) -> Protocol:
    """The protocol `name` for `game`, with optional overrides; 'auto' picks minatar for a MinAtar game,
    machado for an agent trained with the machado preset (all 18 actions), else nature."""
    minatar = is_minatar(game)
    if name == "auto":
        name = "minatar" if minatar else "machado" if preset == "machado" else "nature"
    if name not in PROTOCOL_NAMES:
        raise RunError(f"unknown protocol {name!r} (allowed: auto, {', '.join(PROTOCOL_NAMES)})")
    if minatar != (name == "minatar"):
        fitting = "minatar" if minatar else "nature or machado"
        raise RunError(f"protocol {name} does not apply to {game} ({fitting} does)")
    protocol = _protocols()[name]
    if episodes is not None:
        if episodes < 1:
            raise RunError(f"--episodes must be >= 1, got {episodes}")
        protocol = dataclasses.replace(protocol, episodes=episodes)
    if epsilon is not None and epsilon >= 0:
        if epsilon > 1:
            raise RunError(f"--epsilon must be in [0, 1], got {epsilon}")
        protocol = dataclasses.replace(protocol, epsilon=epsilon)
    return protocol


def protocol_for(name: str, game: str, preset: str, *, episodes: int | None = None,
                 epsilon: float | None = None) -> Protocol:
    """`get_protocol` for an agent trained under `preset`; RunError before any work if the protocol's action
    set lacks some of the agent's actions (e.g. nature's minimal set for a machado agent)."""
    protocol = get_protocol(name, game, preset=preset, episodes=episodes, epsilon=epsilon)
    missing = set(game_action_ids(game, preset)) - set(game_action_ids(game, protocol.preset))
    if missing:
        raise RunError(f"protocol {protocol.name} cannot score {game} trained with preset {preset}: its action set "
                       f"lacks the agent's actions {sorted(missing)} (use eval.protocol: auto or {preset})")
    return protocol


def evaluate_policy(
    policy: Policy, policy_actions: Sequence[int], game: str, protocol: Protocol, *, num_envs: int = 8,
    seed: int = 0, device: torch.device | str = "cpu",
) -> list[float]:
    """Raw full-game returns of `protocol.episodes` episodes, run in parallel envs.

    `policy` maps a uint8 observation batch on `device` to greedy indices into `policy_actions`
    (ALE action ids); with probability epsilon an action is drawn uniformly from that set instead.
    Each env plays a fixed share of the episodes, so short episodes are not over-represented,
    and a fixed seed gives the same returns.
    """
    device = torch.device(device)
    num_envs = max(1, min(num_envs, protocol.episodes))
    env = make_vector(game, protocol.preset, num_envs, seed)
    try:
        missing = set(policy_actions) - set(env.action_ids)
        if missing:
            raise RunError(f"{game}: the agent's actions {sorted(missing)} are not in the {protocol.name} action set")
        to_env = torch.tensor([env.action_ids.index(a) for a in policy_actions], device=device)
        quota = np.array([protocol.episodes // num_envs + (i < protocol.episodes % num_envs) for i in range(num_envs)])
        returns: list[list[float]] = [[] for _ in range(num_envs)]
        generator = torch.Generator(device=device).manual_seed(seed)
        obs = torch.as_tensor(env.reset(seed=seed), device=device)
        while any(len(r) < q for r, q in zip(returns, quota)):
            with torch.no_grad():
                greedy = policy(obs)
            explore = torch.rand(num_envs, generator=generator, device=device) < protocol.epsilon
            random_actions = torch.randint(len(policy_actions), (num_envs,), generator=generator, device=device)
            actions = to_env[torch.where(explore, random_actions, greedy)]
            result = env.step(actions.cpu().numpy())
            for ended in result.finished:
                if len(returns[ended.index]) < quota[ended.index]:
                    returns[ended.index].append(ended.raw_return)
            obs = torch.as_tensor(result.obs, device=device)
    finally:
        env.close()
    return [value for per_env in returns for value in per_env]


class StateReservoir:
    """A uniform random sample of up to `capacity` rows from a stream of observation batches (reservoir sampling)."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        self.capacity, self.seen = int(capacity), 0
        self.rows: torch.Tensor | None = None
        self._rng = np.random.default_rng(seed)

    def add(self, obs: torch.Tensor) -> None:
        """Offer every row of `obs`: row number t of the stream (from 0) takes a uniform slot in [0, t] and is kept
        when that slot is below `capacity`, replacing the slot's row (the later row wins, as if offered one by one)."""
        if self.rows is None:
            self.rows = obs.new_empty((self.capacity, *obs.shape[1:]))
        t = np.arange(self.seen, self.seen + len(obs))
        slots = np.where(t < self.capacity, t, np.floor(self._rng.random(len(obs)) * (t + 1)).astype(np.int64))
        self.seen += len(obs)
        kept = np.flatnonzero(slots < self.capacity)[::-1]  # newest first, so np.unique keeps each slot's last row
        slots, first = np.unique(slots[kept], return_index=True)
        rows = torch.as_tensor(kept[first].copy(), device=obs.device)
        self.rows.index_copy_(0, torch.as_tensor(slots, device=obs.device), obs.index_select(0, rows))

    @property
    def states(self) -> torch.Tensor:
        """The sampled rows (fewer than `capacity` when fewer were offered)."""
        if self.rows is None:
            raise ValueError("no states were recorded")
        return self.rows[: min(self.seen, self.capacity)]


def fidelity(policy: Policy, teacher_q: QFunction, states: torch.Tensor, chunk: int = 1024) -> dict[str, float | int]:
    """`fidelity_of_actions` of a greedy `policy` to the teacher on `states` (run in chunks)."""
    with torch.no_grad():
        parts = [(policy(part), teacher_q(part)) for part in states.split(chunk)]
    return fidelity_of_actions(torch.cat([a for a, _ in parts]), torch.cat([q for _, q in parts]))


def fidelity_of_actions(actions: torch.Tensor, teacher_q: torch.Tensor) -> dict[str, float | int]:
    """How closely actions (B,) follow a teacher with Q-values (B, K) on the same states.

    agreement: share of states where the action is the teacher's greedy action (or one tied with it);
    regret: mean of max_a Q(s, a) - Q(s, action) in the teacher's Q units (0 for a perfect copy).
    """
    q = teacher_q.float()
    chosen = q.gather(1, actions.long().unsqueeze(1)).squeeze(1)
    best = q.amax(-1)
    return {"agreement": float((chosen == best).float().mean()), "regret": float((best - chosen).mean()),
            "states": len(q)}


def evaluate_and_sample(
    policy: Policy, policy_actions: Sequence[int], game: str, protocol: Protocol, *,
    num_envs: int = 8, seed: int = 0, device: torch.device | str = "cpu",
) -> tuple[list[float], torch.Tensor]:
    """`evaluate_policy`, plus a uniform sample of up to FIDELITY_STATES of the states the policy visited."""
    reservoir = StateReservoir(FIDELITY_STATES, seed)

    def recording(obs: torch.Tensor) -> torch.Tensor:
        reservoir.add(obs)
        return policy(obs)

    returns = evaluate_policy(recording, policy_actions, game, protocol, num_envs=num_envs, seed=seed, device=device)
    return returns, reservoir.states


def evaluate_with_fidelity(
    policy: Policy, policy_actions: Sequence[int], game: str, protocol: Protocol, teacher_q: QFunction, *,
    num_envs: int = 8, seed: int = 0, device: torch.device | str = "cpu",
) -> tuple[list[float], dict[str, float | int]]:
    """`evaluate_policy`, plus the policy's `fidelity` to the teacher on a uniform sample of the states it visited."""
    returns, states = evaluate_and_sample(policy, policy_actions, game, protocol, num_envs=num_envs, seed=seed,
                                          device=device)
    return returns, fidelity(policy, teacher_q, states)


@functools.lru_cache(maxsize=None)
def random_score(game: str, protocol: Protocol) -> float:
    """Mean raw score of the uniform random policy: the published table for Atari games, else 100
    episodes under the protocol with a fixed seed (the same baseline for every run and seed)."""
    if game in stats.RANDOM_SCORES:
        return stats.RANDOM_SCORES[game]
    probe = make_vector(game, protocol.preset, 1, 0)
    actions = list(probe.action_ids)
    probe.close()
    uniform = dataclasses.replace(protocol, epsilon=1.0, episodes=100)
    return float(np.mean(evaluate_policy(lambda obs: torch.zeros(len(obs), dtype=torch.long), actions, game,
                                         uniform, num_envs=8, seed=RANDOM_BASELINE_SEED)))


def aggregate_games(games: dict[str, dict[str, Any]], human_table: str = "agent57") -> dict[str, Any]:
    """Mean/median/IQM over games of the normalized scores that exist (one run: no resampling of runs); the
    human-normalized ones against `human_table`."""
    result: dict[str, Any] = {}
    for name, key in (("human_normalized", HUMAN_KEYS[human_table]), ("expert_normalized", "expert_normalized")):
        values = [g[key] for g in games.values() if g[key] is not None]
        if values:
            result[name] = stats.aggregate(np.array([values]))
    return result


def evaluate_checkpoint(
    checkpoint: str, *, games: Sequence[str] | None = None, protocol: str = "auto", episodes: int | None = None,
    epsilon: float | None = None, seed: int = 0, out: str | None = None, device: str = "auto",
    human_table: str = "agent57", num_envs: int = 8,
) -> dict[str, Any]:
    """`actormimic evaluate`: score an expert or student checkpoint and print a Markdown table."""
    from actormimic.policies import load_policies

    dev = select_device(device, cpu_threads=1)
    policies = load_policies(checkpoint, dev, games=[resolve_checked(g) for g in games] if games else None)
    results: dict[str, Any] = {"checkpoint": str(checkpoint), "kind": policies.kind, "method": policies.method,
                               "seed": seed, "human_table": human_table, "games": {}}
    for game, (policy, actions) in policies.by_game.items():
        proto = get_protocol(protocol, game, preset=policies.preset, episodes=episodes, epsilon=epsilon)
        results["protocol"] = proto.to_dict()
        print(f"evaluating {game} under protocol {proto.name} ({proto.episodes} episodes, epsilon {proto.epsilon}) ...",
              flush=True)
        expert = policies.experts.get(game)
        if expert is None:
            returns = evaluate_policy(policy, actions, game, proto, num_envs=num_envs, seed=seed, device=dev)
            to_expert = None
        else:
            returns, to_expert = evaluate_with_fidelity(policy, actions, game, proto, expert[0], num_envs=num_envs,
                                                        seed=seed, device=dev)
        expert_mean = (float(np.mean(returns)) if policies.kind == "expert"
                       else _expert_reference(policies, game, proto, seed, num_envs, dev))
        results["games"][game] = game_result(game, returns, random=random_score(game, proto),
                                             expert_mean=expert_mean, fidelity=to_expert)
    results["aggregate"] = aggregate_games(results["games"], human_table)
    print(markdown_scores_table(results), flush=True)
    if out:
        write_json(Path(out), results)
        print(f"wrote {out}")
    return results


def _expert_reference(policies: Any, game: str, protocol: Protocol, seed: int, num_envs: int,
                      device: torch.device) -> float | None:
    """The student's expert's mean score under the same protocol and seed (None without the expert's file)."""
    expert = policies.experts.get(game)
    if expert is None:
        return None
    q_values, actions = expert
    return float(np.mean(evaluate_policy(lambda obs: q_values(obs).argmax(-1), actions, game, protocol,
                                         num_envs=num_envs, seed=seed, device=device)))


def resolve_checked(game: str) -> str:
    """resolve_game with the CLI's error type."""
    try:
        return resolve_game(game)
    except ValueError as error:
        raise RunError(str(error)) from None
