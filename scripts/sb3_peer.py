"""Stable-Baselines3 DQN as a peer of `actormimic train-experts`: same config, env, network and protocol.

    python scripts/sb3_peer.py --game MinAtar/Breakout --steps 1000000 --seed 0 --out runs/sb3/s0 \
        [--config configs/experts/minatar.yaml] [--set KEY=VALUE ...] [--eval-interval K] [--eval-episodes E]

Hyperparameters come from our ExpertsConfig file (the same `load_config` + `--set` overrides as the CLI) and
are mapped onto `stable_baselines3.DQN` by :func:`sb3_kwargs`; :func:`differences` lists what stays different.
The env is our env layer (`envs.make_vector`, one env per gymnasium wrapper, `config.num_envs` of them
in a DummyVecEnv), so observations, sticky actions, action sets, episode caps and reward clipping are ours.
The Q-network is our torso as an SB3 features extractor with `net_arch=[]`, i.e. exactly
`QNetwork(arch, obs_shape, n_actions)`.

Outputs in OUT (what scripts/learning_curves.py and scripts/score_table.py read):
    tb/             TensorBoard: eval/<safe_game>/score at agent steps, train/<safe_game>/episode_return_raw,
                    train/epsilon, perf/steps_per_s
    eval.json       our schema, method "sb3-dqn": the final evaluation (eval.final_episodes episodes) of the best
                    periodic-eval network and of the last one, the higher-scoring kept, as train-experts does
                    (`final_choice`), plus "throughput" and "sb3"
    expert-best.pt  that network as our expert checkpoint (usable by `actormimic evaluate` / distill)
    config.yaml     the resolved ExpertsConfig
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from actormimic.config import ConfigError, ExpertsConfig, load_config
from actormimic.evaluation import evaluate_policy, get_protocol, resolve_checked
from actormimic.loop import Every
from actormimic.runtime import RunError, prepare_run_dir, save_config, seed_everything, select_device, write_json
from actormimic.train_experts import describe_choice, final_choice
from agents.checkpoint import save_checkpoint
from agents.networks import QNetwork, arch_for_obs_shape, make_torso
from envs import Preset, get_preset, is_minatar, make_vector, safe_name

REPO = Path(__file__).resolve().parents[1]
METHOD = "sb3-dqn"
BEST = "expert-best.pt"
# SB3 DQNPolicy.q_net state-dict prefixes -> our QNetwork's
_TO_OURS = {"features_extractor.torso.": "torso.", "q_net.0.": "head."}


# --------------------------------------------------------------------------------------------
# Environment: our env layer, one game per gymnasium Env


class OurEnv(gym.Env):
    """One env of our vector env layer (num_envs=1) as a gymnasium Env, for SB3's DummyVecEnv.

    Observations are ours: channels-first uint8 (C, 10, 10) for MinAtar, (4, 84, 84) for ALE. `reward` is the
    learning reward (sign-clipped when the preset clips); `info["game_return"]` carries the raw score of a
    finished full game. A life loss under `preset.episodic_life` is a terminal for SB3, but the following
    `reset()` continues the game with the frame stack kept (our semantics, no emulator reset). The episode
    cap is a truncation (SB3 then bootstraps, as our replay does).
    """

    metadata = {"render_modes": []}

    def __init__(self, game: str, preset: Preset, seed: int) -> None:
        self.venv = make_vector(game, preset, 1, seed)
        # MinAtar maps are 0/1; high=1 also keeps SB3 from treating them as images (no transpose, no /255)
        high = 1 if preset.is_minatar else 255
        self.observation_space = gym.spaces.Box(0, high, self.venv.obs_shape, np.uint8)
        self.action_space = gym.spaces.Discrete(self.venv.n_actions)
        self._obs: np.ndarray | None = None
        self._game_over = True

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if not self._game_over and seed is None and self._obs is not None:
            return self._obs, {"life_loss_continue": True}  # learning episode ended by a life loss only
        self._obs = self.venv.reset(seed=seed)[0]
        self._game_over = False
        return self._obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        result = self.venv.step(np.array([int(action)], dtype=np.int64))
        self._obs = result.obs[0]
        self._game_over = bool(result.game_over[0])
        terminated = bool(result.terminated[0])
        truncated = bool(result.truncated[0]) and not terminated
        info: dict[str, Any] = {}
        if result.finished:
            info["game_return"], info["game_length"] = result.finished[0].raw_return, result.finished[0].length
        return self._obs, float(result.reward[0]), terminated, truncated, info

    def close(self) -> None:
        self.venv.close()


# --------------------------------------------------------------------------------------------
# Network: our torso as an SB3 features extractor


def _features_extractor_class() -> type:
    """Built lazily so that importing this module does not import stable_baselines3."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class OurTorso(BaseFeaturesExtractor):
        """agents.networks torso (MinAtarTorso / NatureTorso); it casts (and for Atari scales) raw uint8 itself."""

        def __init__(self, observation_space: gym.spaces.Box, arch: str) -> None:
            torso = make_torso(arch, observation_space.shape)
            super().__init__(observation_space, torso.out_features)
            self.torso = torso

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.torso(observations)

    return OurTorso


def to_qnetwork(sb3_q_net: torch.nn.Module, arch: str, obs_shape: Sequence[int], n_actions: int) -> QNetwork:
    """Our QNetwork with the weights of an SB3 DQN `policy.q_net` built by :func:`build_model`."""
    network = QNetwork(arch, obs_shape, n_actions)
    network.load_state_dict(_map_state(sb3_q_net.state_dict()))
    return network


def _map_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename SB3 q_net keys to QNetwork keys (clones, so a snapshot does not follow training)."""
    mapped = {}
    for key, value in state.items():
        prefix = next((p for p in _TO_OURS if key.startswith(p)), None)
        if prefix is None:
            raise ValueError(f"unexpected SB3 q_net weight {key!r}")
        mapped[_TO_OURS[prefix] + key[len(prefix):]] = value.detach().clone().cpu()
    return mapped


# --------------------------------------------------------------------------------------------
# Hyperparameters


def update_schedule(updates_per_step: float, num_envs: int) -> tuple[int, int]:
    """SB3 (train_freq in vec-env steps, gradient_steps) giving `updates_per_step` updates per agent step.

    One DummyVecEnv step is `num_envs` agent steps, so train_freq/gradient_steps must equal
    1 / (updates_per_step * num_envs); e.g. 8 envs at 0.25 -> (1, 2), 1 env at 0.25 -> (4, 1).
    """
    per_vec_step = Fraction(updates_per_step * num_envs).limit_denominator(64)
    if abs(float(per_vec_step) - updates_per_step * num_envs) > 1e-9 or per_vec_step <= 0:
        raise RunError(f"updates_per_step {updates_per_step} x num_envs {num_envs} is not a ratio of small integers; "
                       f"SB3 needs updates per vec step = gradient_steps / train_freq")
    return per_vec_step.denominator, per_vec_step.numerator


def check_supported(config: ExpertsConfig) -> None:
    """Refuse config settings that SB3's DQN cannot reproduce (rather than silently changing the algorithm)."""
    problems = []
    if config.dueling:
        problems.append("dueling=true (SB3 DQN has no dueling head)")
    if config.loss != "huber":
        problems.append(f"loss={config.loss} (SB3 DQN always uses the Huber loss)")
    if config.target_update != "hard":
        problems.append("target_update=polyak (this script maps only hard target updates)")
    if config.init_from:
        problems.append("init_from (transfer initialisation is not mapped)")
    if problems:
        raise RunError("SB3 peer cannot reproduce: " + "; ".join(problems))


def sb3_kwargs(config: ExpertsConfig, arch: str, device: torch.device) -> dict[str, Any]:
    """stable_baselines3.DQN keyword arguments equivalent to `config` (see differences() for the rest)."""
    train_freq, gradient_steps = update_schedule(config.updates_per_step, config.num_envs)
    return dict(
        learning_rate=config.lr,
        buffer_size=config.replay_capacity,  # total transitions; SB3 keeps buffer_size // n_envs rows per env, as we do
        learning_starts=config.learning_starts,  # env (agent) steps, summed over envs
        batch_size=config.batch_size,
        tau=1.0,  # hard target copy
        gamma=config.gamma,
        train_freq=(train_freq, "step"),  # in vec-env steps = num_envs agent steps
        gradient_steps=gradient_steps,
        n_steps=config.n_step,  # SB3 2.9 DQN(n_steps=...) -> NStepReplayBuffer
        # agent steps; SB3 copies every interval // n_envs vec steps
        target_update_interval=config.target_update_interval,
        exploration_fraction=config.epsilon_fraction,
        exploration_initial_eps=config.epsilon_start,
        exploration_final_eps=config.epsilon_end,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs=dict(
            features_extractor_class=_features_extractor_class(),
            features_extractor_kwargs=dict(arch=arch),
            net_arch=[],
            normalize_images=False,
            optimizer_class=torch.optim.Adam,
            optimizer_kwargs=dict(eps=config.adam_eps),
        ),
        seed=config.seed,
        device=str(device),
        verbose=0,
    )


def differences(config: ExpertsConfig) -> list[str]:
    """Known algorithmic differences between train-experts and SB3 DQN under this config."""
    diffs = []
    if config.double:
        diffs.append("target: ours Double DQN (argmax by the online net), SB3 plain DQN max over the target net; "
                     "run ours with --set double=false for an apples-to-apples comparison")
    diffs += [
        "exploration: SB3 draws ONE epsilon coin per vec step for all envs together (all random or all greedy); "
        "ours draws per env (same marginal epsilon, SB3's exploration is correlated across envs)",
        "warm-up: SB3 acts uniformly at random until learning_starts; ours follows the epsilon schedule from step 0 "
        f"(epsilon {config.epsilon_start} decaying, about "
        f"{_eps_at(config, config.learning_starts):.3f} at learning_starts)",
        "first update: SB3 once num_timesteps > learning_starts (one vec step later than ours, which starts at >=)",
        "target copies: SB3 every target_update_interval // num_envs vec steps counted from step 0; ours every "
        "round(target_update_interval * updates_per_step) updates counted from the first update (same period)",
        "n-step windows touching the newest replay row: SB3 cuts them there and bootstraps (treated as truncated); "
        "ours samples only transitions whose n-step window is complete",
        "replay sampling: SB3 draws a row then an env uniformly; ours draws uniformly over stored transitions "
        "(equal while every env column has the same number of rows)",
        "Adam: same lr/eps; ours uses torch's fused CPU kernel (same maths, different rounding)",
        "observations in replay: SB3 stores obs and next_obs arrays (2x memory, no frame de-duplication); "
        "ours stores single frames and rebuilds stacks",
        "life loss (ALE, episodic_life): SB3 sees a terminal then a reset() that continues the game; same as ours",
        "per-update stochasticity (sampling RNG) and env seeds differ, so curves match only in distribution",
    ]
    return diffs


def _eps_at(config: ExpertsConfig, step: int) -> float:
    decay = int(config.epsilon_fraction * config.steps)
    progress = min(step / decay, 1.0) if decay > 0 else 1.0
    return config.epsilon_start + progress * (config.epsilon_end - config.epsilon_start)


# --------------------------------------------------------------------------------------------
# Training run


def make_env(config: ExpertsConfig, game: str):
    """DummyVecEnv of config.num_envs OurEnv copies (SB3 seeds them seed + i at the first reset)."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    preset = get_preset(config.preset)
    return DummyVecEnv([(lambda i=i: OurEnv(game, preset, config.seed + i)) for i in range(config.num_envs)])


def build_model(config: ExpertsConfig, game: str, device: torch.device | None = None):
    """(SB3 DQN, arch, obs_shape, n_actions, action_ids) for `game` under `config` (nothing trained)."""
    from stable_baselines3 import DQN

    check_supported(config)
    device = device or select_device(config.device, config.cpu_threads)
    env = make_env(config, game)
    obs_shape = tuple(int(d) for d in env.observation_space.shape)
    arch = arch_for_obs_shape(obs_shape) if config.arch == "auto" else config.arch
    if config.target_update_interval % config.num_envs:
        every = max(config.target_update_interval // config.num_envs, 1)
        print(f"note: target_update_interval {config.target_update_interval} is not a multiple of num_envs "
              f"{config.num_envs}; SB3 copies every {every} vec steps", flush=True)
    model = DQN("CnnPolicy", env, **sb3_kwargs(config, arch, device))
    action_ids = list(env.envs[0].venv.action_ids)
    return model, arch, obs_shape, int(env.action_space.n), action_ids


class PeerRun:
    """Periodic evaluation, TensorBoard logging, throughput and the best snapshot for one SB3 run."""

    def __init__(self, config: ExpertsConfig, game: str, out: Path, device: torch.device) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.config, self.game, self.out, self.device = config, game, out, device
        self.tag = safe_name(game)
        self.model, self.arch, self.obs_shape, self.n_actions, self.action_ids = build_model(config, game, device)
        self.protocol = get_protocol(config.eval.protocol, game, preset=config.preset, episodes=config.eval.episodes,
                                     epsilon=config.eval.epsilon)
        self.writer = SummaryWriter(str(out / "tb"))
        self.best_score = -float("inf")
        self.best: dict[str, Any] | None = None
        self.eval_seconds = 0.0
        self.last_eval_step = -1
        self.learning: tuple[float, int, float] | None = None  # (time, step, eval seconds) at the first update
        self.start = time.perf_counter()

    def evaluate(self, step: int) -> float:
        """Score the current online network under the protocol; log it and keep the best snapshot."""
        started = time.perf_counter()
        q_net = self.model.q_net
        returns = evaluate_policy(lambda obs: q_net(obs).argmax(-1), self.action_ids, self.game, self.protocol,
                                  num_envs=self.config.eval.num_envs, seed=self.config.seed + 10_000,
                                  device=self.device)
        score = float(np.mean(returns))
        self.writer.add_scalar(f"eval/{self.tag}/score", score, step)
        self.last_eval_step = step
        self.writer.flush()
        print(f"[{self.tag}] sb3 step {step:,}: eval ({self.protocol.name}, {len(returns)} episodes) raw score "
              f"{score:.2f}", flush=True)
        if score > self.best_score:
            self.best_score = score
            self.best = {"model": _map_state(q_net.state_dict()), "step": step, "eval_score": score}
        self.eval_seconds += time.perf_counter() - started
        return score

    def callback(self):
        """SB3 callback: episode returns, periodic evaluation, progress, time limit."""
        from stable_baselines3.common.callbacks import BaseCallback

        run, config = self, self.config
        eval_due = Every(config.eval.interval)
        limit = config.time_limit_minutes * 60 if config.time_limit_minutes > 0 else None

        class Callback(BaseCallback):
            def __init__(self) -> None:
                super().__init__()
                self.last_log = (time.perf_counter(), 0)

            def _on_step(self) -> bool:
                step = self.num_timesteps
                for info in self.locals.get("infos", ()):
                    if "game_return" in info:
                        run.writer.add_scalar(f"train/{run.tag}/episode_return_raw", info["game_return"], step)
                        run.writer.add_scalar(f"train/{run.tag}/episode_length", info["game_length"], step)
                if run.learning is None and step > config.learning_starts:
                    run.learning = (time.perf_counter(), step, run.eval_seconds)
                if eval_due(step):
                    run.evaluate(step)
                now = time.perf_counter()
                if now - self.last_log[0] >= config.log_interval:
                    rate = (step - self.last_log[1]) / (now - self.last_log[0])
                    run.writer.add_scalar("perf/steps_per_s", rate, step)
                    run.writer.add_scalar("train/epsilon", self.model.exploration_rate, step)
                    print(f"[{run.tag}] sb3 step {step:,}/{config.steps:,}  {rate:,.0f} steps/s  "
                          f"eps {self.model.exploration_rate:.3f}  updates {self.model._n_updates:,}", flush=True)
                    self.last_log = (now, step)
                return limit is None or now - run.start < limit

        return Callback()

    def throughput(self, step: int) -> dict[str, float]:
        """Like train-experts' RunClock (evaluations included), plus the rate without evaluation time."""
        if self.learning is None:
            return {"steps_after_learning_starts": 0, "seconds_after_learning_starts": 0.0, "steps_per_s": 0.0,
                    "steps_per_s_without_eval": 0.0}
        started, first, eval_before = self.learning
        seconds = time.perf_counter() - started
        steps = step - first
        eval_seconds = self.eval_seconds - eval_before
        return {"steps_after_learning_starts": steps, "seconds_after_learning_starts": seconds,
                "steps_per_s": steps / max(seconds, 1e-9),
                "eval_seconds": eval_seconds,
                "steps_per_s_without_eval": steps / max(seconds - eval_seconds, 1e-9)}

    def final_eval(self, step: int) -> dict[str, Any]:
        """`final_choice` between the best snapshot and the last network, as train-experts makes it; write the kept
        one as expert-best.pt; return the eval.json content."""
        config, game = self.config, self.game
        assert self.best is not None
        spec = QNetwork(self.arch, self.obs_shape, self.n_actions).spec
        best = {"network": spec, **self.best}
        last = {"network": spec, "model": _map_state(self.model.q_net.state_dict()), "step": step}
        choice = final_choice(game, best, last, self.action_ids, self.protocol, config, self.device)
        preset = get_preset(config.preset)
        save_checkpoint(self.out / BEST, {"game": game, "preset": preset.to_dict(), "action_ids": self.action_ids,
                                          "network": spec, "model": choice.kept["model"], "label": "best",
                                          "method": METHOD, "eval_score": choice.entry["mean"],
                                          "step": choice.kept["step"]}, kind="expert")
        return {"protocol": choice.protocol.to_dict(), "checkpoint": "sb3", "kind": "expert", "method": METHOD,
                "seed": config.seed, "games": {game: choice.entry}, "aggregate": {}, "final_choice": choice.summary}

    def close(self) -> None:
        self.writer.close()
        self.model.env.close()


def run(config: ExpertsConfig, game: str, out: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Train SB3 DQN on `game` under `config` into `out`; returns the eval.json content."""
    from stable_baselines3 import __version__ as sb3_version

    game = resolve_checked(game)
    if is_minatar(game) != (config.preset == "minatar"):
        raise RunError(f"game {game} cannot use preset {config.preset!r} (pass the matching --config)")
    config = dataclasses.replace(config, games=[game])
    device = select_device(config.device, config.cpu_threads)  # cpu_threads 0 (auto) runs SB3 on one thread
    root = prepare_run_dir(out, resume=False, overwrite=overwrite, marker="eval.json")
    save_config(config, root)
    seed_everything(config.seed)
    peer = PeerRun(config, game, root, device)
    try:
        kwargs = sb3_kwargs(config, peer.arch, device)
        print(f"[{peer.tag}] SB3 {sb3_version} DQN: train_freq {kwargs['train_freq']}, gradient_steps "
              f"{kwargs['gradient_steps']}, n_steps {kwargs['n_steps']}, target_update_interval "
              f"{kwargs['target_update_interval']} env steps, {config.num_envs} envs", flush=True)
        replay_gb = 2 * config.replay_capacity * int(np.prod(peer.obs_shape)) / 2**30
        if replay_gb > 4:
            print(f"note: SB3's replay stores obs and next_obs: about {replay_gb:.0f} GB at replay_capacity "
                  f"{config.replay_capacity:,} (lower it with --set replay_capacity=...)", flush=True)
        for line in differences(config):
            print(f"  difference: {line}", flush=True)
        peer.model.learn(total_timesteps=config.steps, callback=peer.callback(), log_interval=None)
        step = int(peer.model.num_timesteps)
        throughput = peer.throughput(step)
        if peer.last_eval_step != step:  # same network and eval seed as a periodic eval at this step: same score
            peer.evaluate(step)
        result = peer.final_eval(step)
    finally:
        peer.close()
    sb3_args = {k: v for k, v in kwargs.items() if k != "policy_kwargs"}
    sb3_args["policy_kwargs"] = {k: (v.__name__ if isinstance(v, type) else v)
                                 for k, v in kwargs["policy_kwargs"].items()}
    result["throughput"] = throughput
    result["sb3"] = {"version": sb3_version, "args": sb3_args, "steps": step, "updates": int(peer.model._n_updates),
                     "differences": differences(config)}
    write_json(root / "eval.json", result)
    entry = result["games"][game]
    print(f"[{peer.tag}] final eval ({len(entry['returns'])} episodes, raw score): "
          f"{describe_choice(result['final_choice'])}: {entry['mean']:.2f} ± {entry['std']:.2f}; "
          f"{throughput['steps_per_s']:.0f} steps/s after learning starts; wrote {root / 'eval.json'}", flush=True)
    return result


def default_config(game: str) -> Path:
    """configs/experts/minatar.yaml for MinAtar games, atari.yaml otherwise."""
    return REPO / "configs" / "experts" / ("minatar.yaml" if is_minatar(resolve_checked(game)) else "atari.yaml")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run, return the eval.json content."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", required=True, help="e.g. MinAtar/Breakout (or an ALE game with an atari config)")
    parser.add_argument("--steps", type=int, help="agent steps (default: the config's steps)")
    parser.add_argument("--seed", type=int, help="seed (default: the config's)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder (must be empty unless --overwrite)")
    parser.add_argument("--config", metavar="FILE", help="ExpertsConfig YAML (default: configs/experts/minatar.yaml "
                        "for MinAtar games, atari.yaml otherwise)")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                        help="override a config key, e.g. --set n_step=1 (repeatable)")
    parser.add_argument("--eval-interval", type=int, metavar="K", help="agent steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, metavar="E", help="episodes per periodic evaluation")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="training device")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    for flag, key in (("steps", "steps"), ("seed", "seed"), ("eval_interval", "eval.interval"),
                      ("eval_episodes", "eval.episodes"), ("device", "device")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    try:
        config = load_config(ExpertsConfig, args.config or default_config(args.game), overrides)
        return run(config, args.game, args.out, overwrite=args.overwrite)
    except (ConfigError, RunError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
