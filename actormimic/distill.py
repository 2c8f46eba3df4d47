"""`actormimic distill`: one multitask Actor-Mimic student from the experts' policies softmax(Q/T).

All games step together (one vector env per game). The student acts epsilon-greedily in every
game; each game's replay stores frames and the expert's Q-values of every stored frame, computed
once at insertion. Every update draws a minibatch that mixes the games (or, with
`schedule: blocks`, only the game of the current round-robin block) and minimises the chosen
loss from `actormimic.losses`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from actormimic.config import DistillConfig, check_resumed_config, config_to_dict, load_config
from actormimic.evaluation import aggregate_games, evaluate_policy, evaluate_with_fidelity, protocol_for, random_score
from actormimic.loop import Every, GameStream, RunClock, UpdateCredit, send_all
from actormimic.replay import ReplayBuffer
from actormimic.reports import game_result, markdown_scores_table
from actormimic.runtime import (Interrupted, Monitor, RunError, StopRequested, prepare_run_dir, rng_state,
                                save_config, seed_everything, select_device, set_rng_state, thread_tuner, write_json)
from actormimic.train_experts import check_games
from agents.amn import ActorMimicLearner, Student
from agents.checkpoint import load_checkpoint, save_checkpoint
from agents.dqn import epsilon_schedule
from agents.experts import Expert, load_expert
from agents.networks import arch_for_obs_shape, set_precision
from envs import get_preset, make_vector, resolve_game, safe_name

STUDENT = "student.pt"


def expert_paths(games: Sequence[str], cli_experts: Sequence[str], configured: dict[str, str]) -> dict[str, Path]:
    """Map each game to its expert file from --experts (folders or GAME=PATH) and the config. In a folder: a
    train-experts run's <game>/expert-best.pt (else expert.pt), else RL-Zoo's dqn-<Game>NoFrameskip-v4.zip."""
    paths = {resolve_game(g): Path(p) for g, p in configured.items()}
    for item in cli_experts:
        if "=" in item:
            game, _, path = item.partition("=")
            paths[resolve_game(game)] = Path(path)
            continue
        folder = Path(item)
        if not folder.is_dir():
            raise RunError(f"--experts {item}: not a folder (give a train-experts output folder, a folder of RL-Zoo "
                           f"zips, or GAME=PATH)")
        for game in games:
            zoo = f"dqn-{game}NoFrameskip-v4"  # RL-Zoo / Hugging Face sb3 names, as a file or a downloaded repo
            found = [folder / safe_name(game) / "expert-best.pt", folder / safe_name(game) / "expert.pt",
                     folder / f"{zoo}.zip", folder / zoo / f"{zoo}.zip"]
            found = [path for path in found if path.exists()]
            if found:
                paths.setdefault(game, found[0])
    missing = [game for game in games if game not in paths]
    if missing:
        raise RunError(f"no expert for {', '.join(missing)}: pass --experts DIR (a train-experts output folder, or one "
                       f"with RL-Zoo's dqn-<Game>NoFrameskip-v4.zip files) or GAME=PATH")
    for game in games:
        if not paths[game].is_file():
            raise RunError(f"expert for {game}: {paths[game]} does not exist")
    return {game: paths[game] for game in games}


def distill(config: DistillConfig, out: str, *, experts: Sequence[str] = (), resume: bool = False,
            overwrite: bool = False) -> dict[str, Any]:
    """Train the student; returns the final evaluation (also written to OUT/eval.json)."""
    config = resolve_names(config)
    games = config.games
    for game in games:
        protocol_for(config.eval.protocol, game, config.preset)
    if resume:
        saved = prepare_run_dir(out, resume=True, overwrite=overwrite, marker=STUDENT)
        check_resumed_config(resolve_names(load_config(DistillConfig, saved / "config.yaml")), config,
                             saved / "config.yaml")
        if not experts:  # the experts the run was started with
            experts = [f"{g}={p}" for g, p in load_checkpoint(saved / STUDENT, kind="student")["experts"].items()]
    paths = expert_paths(games, experts, config.experts)
    device = select_device(config.device, config.cpu_threads)
    preset = get_preset(config.preset)
    envs = {game: make_vector(game, preset, config.num_envs, config.seed + 1000 * i, num_threads=config.env_threads)
            for i, game in enumerate(games)}
    try:
        teachers = {game: load_teacher(paths[game], game, preset.name, envs[game], device) for game in games}
        folder = prepare_run_dir(out, resume=resume, overwrite=overwrite, marker=STUDENT)
        save_config(config, folder)
        return _train(config, folder, envs, teachers, paths, device, resume)
    finally:
        for env in envs.values():
            env.close()


def load_teacher(path: Path, game: str, preset: str, env: Any, device: torch.device) -> Expert:
    """Load one frozen expert, turning a mismatch into a user-facing error."""
    try:
        return load_expert(path, game=game, preset_name=preset, n_actions=env.n_actions, obs_shape=env.obs_shape,
                           device=device, action_ids=env.action_ids)
    except ValueError as error:
        raise RunError(str(error)) from None


def build_learner(config: DistillConfig, obs_shapes: dict[str, Sequence[int]], action_ids: dict[str, list[int]],
                  device: torch.device, teachers: dict[str, Expert] | None = None) -> ActorMimicLearner:
    """The student of `config` for these games (channels padded to the widest game) and its learner."""
    games = list(obs_shapes)
    first = obs_shapes[games[0]]
    obs_shape = (max(obs_shapes[g][0] for g in games), *first[1:])  # MinAtar channels differ
    teachers = teachers or {}
    feature_dims = {g: t.network.torso.out_features for g, t in teachers.items()} if config.feature_beta else None
    student = Student(arch_for_obs_shape(obs_shape), obs_shape, games, action_ids,
                      per_game_heads=config.per_game_heads, expert_feature_dims=feature_dims).to(device)
    set_precision(student, config.precision)
    return ActorMimicLearner(student, loss=config.loss, temperature=config.temperature,
                             temperature_on=config.temperature_on, lr=config.lr, adam_eps=config.adam_eps,
                             max_grad_norm=config.max_grad_norm, target_smoothing=config.target_smoothing,
                             feature_beta=config.feature_beta,
                             expert_features={g: t.features for g, t in teachers.items()}, device=device,
                             cuda_graph=config.cuda_graph)


def _train(config: DistillConfig, folder: Path, envs: dict[str, Any], teachers: dict[str, Expert],
           paths: dict[str, Path], device: torch.device, resume: bool) -> dict[str, Any]:
    """The distillation loop proper."""
    games = config.games
    seed_everything(config.seed)
    learner = build_learner(config, {g: envs[g].obs_shape for g in games},
                            {g: list(envs[g].action_ids) for g in games}, device, teachers)
    student = learner.student
    streams = {
        game: GameStream(envs[game], ReplayBuffer(config.replay_capacity, config.num_envs,
                                                  (envs[game].frame_channels, *envs[game].obs_shape[1:]),
                                                  envs[game].preset.frame_stack, device,
                                                  payload=teachers[game].q_values,
                                                  payload_shape=(envs[game].n_actions,), cuda_graph=config.cuda_graph),
                         device)
        for game in games
    }
    generator = torch.Generator(device=device).manual_seed(config.seed)
    counters: dict[str, Any] = {"step": 0, "updates": 0, "finished": False}
    if resume:
        state = load_checkpoint(folder / STUDENT, kind="student")
        student.load_state_dict(state["model"])
        learner.load_state_dict(state["learner"])
        counters = state["counters"]
        set_rng_state(state["rng"])
        generator.set_state(state["generator"])
        if counters["finished"]:
            print(f"student in {folder} already finished; re-evaluating", flush=True)
    shares = batch_shares(config)
    protocol = {game: protocol_for(config.eval.protocol, game, config.preset, episodes=config.eval.episodes,
                                   epsilon=config.eval.epsilon) for game in games}
    final_protocol = {g: dataclasses.replace(p, episodes=config.eval.final_episodes or p.episodes)
                      for g, p in protocol.items()}
    # the student and its experts on the same episodes; not train-experts' seeds (seed + 10k/20k/30k), so with equal
    # seeds an expert's reference is not the very evaluation its network was selected on
    eval_seed = config.seed + 40_000
    expert_scores: dict[str, float] = {}
    if config.eval.final_episodes or config.eval.interval:
        print("measuring the experts' scores (the reference of expert-normalized scores) ...", flush=True)
        expert_scores = {game: _score(teachers[game].q_values, teachers[game].action_ids, game, final_protocol[game],
                                      config, eval_seed, device) for game in games}
    total_steps = config.steps * (len(games) if config.schedule == "blocks" else 1)
    monitor = Monitor(folder / "tb", f"distill-{config.loss}", config.preset, total_steps, config.log_interval)

    def check_finite() -> None:
        """Stop, keeping the last good checkpoint, once any game's loss went non-finite."""
        bad = learner.first_non_finite()
        if bad is not None:
            raise RunError(f"non-finite {config.loss} loss in game {bad[0]} at step {bad[1]:,}; "
                           f"the last good checkpoint {folder / STUDENT} was kept")

    def save(finished: bool) -> None:
        check_finite()
        counters["finished"] = finished
        clock.record(counters)
        save_checkpoint(folder / STUDENT, {
            "games": games, "preset": envs[games[0]].preset.to_dict(), "student": student.spec,
            "model": student.state_dict(), "learner": learner.state_dict(), "method": config.loss,
            "experts": {g: str(p) for g, p in paths.items()},
            "action_ids": {g: list(envs[g].action_ids) for g in games},
            "obs_shapes": {g: list(envs[g].obs_shape) for g in games}, "config": config_to_dict(config),
            "counters": counters, "rng": rng_state(), "generator": generator.get_state(),
            "expert_scores": expert_scores, "protocol": protocol[games[0]].to_dict(),
        }, kind="student")

    def evaluate(final: bool = False) -> dict[str, Any]:
        results: dict[str, Any] = {}
        for game in games:
            returns, to_expert = evaluate_with_fidelity(
                lambda obs, g=game: student.logits(obs, g).argmax(-1), envs[game].action_ids, game,
                (final_protocol if final else protocol)[game], teachers[game].q_values,
                num_envs=config.eval.num_envs, seed=eval_seed, device=device)
            results[game] = game_result(game, returns, random=random_score(game, protocol[game]),
                                        expert_mean=expert_scores[game], fidelity=to_expert)
            tag = safe_name(game)
            monitor.scalars({f"eval/{tag}/score": results[game]["mean"], f"eval/{tag}/regret": to_expert["regret"],
                             f"eval/{tag}/agreement": to_expert["agreement"]}, counters["step"])
            if results[game]["expert_normalized"] is not None:
                monitor.scalars({f"eval/{tag}/expert_normalized": results[game]["expert_normalized"]},
                                counters["step"])
        used = (final_protocol if final else protocol)[games[0]]  # one preset, so one protocol for all games
        scores = ", ".join(f"{safe_name(g)} {r['mean']:.2f} (expert {expert_scores[g]:.2f}, agreement "
                           f"{r['fidelity']['agreement']:.3f})" for g, r in results.items())
        print(f"[distill-{config.loss}] {'final eval' if final else 'eval'} at step {counters['step']:,} ({used.name}, "
              f"{used.episodes} episodes, raw score): {scores}", flush=True)
        return results

    def update(count: int) -> dict[str, torch.Tensor]:
        """`count` student updates in one call (one CUDA graph with the replay draws, one per game for all of them)."""
        active = _active_games(config, counters["step"])
        size = {g: shares[g] if config.schedule == "mixed" else config.batch_size for g in active}
        batches = {g: streams[g].replay.deferred(count * size[g], ("obs", "payload")) for g in active}
        counters["updates"] += count
        return learner.update(batches, counters["step"], count=count, generator=generator)

    credit = UpdateCredit(config.updates_per_step)
    eval_due, checkpoint_due = Every(config.eval.interval, counters["step"]), Every(config.checkpoint_interval,
                                                                                 counters["step"])
    for i, game in enumerate(games):
        streams[game].reset(seed=config.seed + 1000 * i + counters["step"])
    # per game, counted in its own replay: in blocks a game's first block starts with an empty replay, and a
    # resumed run refills every replay (at most a full one) before learning again
    warm_up = min(config.learning_starts, config.replay_capacity)
    logs: dict[str, torch.Tensor] = {}
    clock = RunClock(config.time_limit_minutes, spent=counters.get("seconds", 0.0))
    tuner = thread_tuner(device, config.cpu_threads)
    try:
        with StopRequested() as stop:
            while counters["step"] < total_steps and not stop.requested and not clock.expired():
                step = counters["step"]
                epsilon = epsilon_schedule(step, config.epsilon_start, config.epsilon_end,
                                          int(config.epsilon_fraction * config.steps))
                active = _active_games(config, step)
                actions = learner.act({g: streams[g].obs for g in active}, epsilon, generator)
                send_all([streams[g] for g in active], [actions[g] for g in active])
                if all(streams[g].replay.recorded >= warm_up and len(streams[g].replay) >= config.batch_size
                       for g in active):
                    clock.learning(step)
                    if tuner is not None:
                        tuner.step(config.num_envs * len(active))
                    due = credit.earn(config.num_envs)
                    if due:
                        logs = update(due)
                for game in active:
                    streams[game].recv(monitor, step)
                counters["step"] += config.num_envs
                if eval_due(counters["step"]):
                    evaluate()
                if checkpoint_due(counters["step"]):
                    save(finished=False)
                if monitor.due():
                    check_finite()
                    monitor.scalars({**logs, "train/epsilon": epsilon,
                                     **({"perf/cpu_threads": tuner.threads} if tuner else {})}, counters["step"])
                    loss = f"{float(logs['loss/total']):.4f}" if "loss/total" in logs else "n/a (not learning yet)"
                    monitor.progress(counters["step"], counters["updates"],
                                     f"loss {config.loss} {loss} eps {epsilon:.3f}", seconds_left=clock.seconds_left())
            save(finished=not stop.requested)
            if stop.requested:
                raise Interrupted(f"stopped at step {counters['step']:,}; checkpoint {folder / STUDENT} "
                                  f"(continue with --resume)")
        if not config.eval.final_episodes:
            print(f"no final evaluation (eval.final_episodes: 0): score {folder / STUDENT} with "
                  f"`actormimic evaluate`", flush=True)
            return {}
        results = evaluate(final=True)
        final = {"protocol": final_protocol[games[0]].to_dict(), "checkpoint": str(folder / STUDENT), "kind": "student",
                 "method": config.loss, "seed": config.seed, "games": results, "aggregate": aggregate_games(results)}
        write_json(folder / "eval.json", final)
        print(markdown_scores_table(final), flush=True)
        return final
    finally:
        monitor.close()


def resolve_names(config: DistillConfig) -> DistillConfig:
    """`config` with its games and game_weights keys resolved to game ids, checked against the preset."""
    games = check_games(config.games, config.preset)
    return dataclasses.replace(config, games=games, game_weights=resolve_weights(config.game_weights, games))


def resolve_weights(weights: dict[str, float], games: Sequence[str]) -> dict[str, float]:
    """`game_weights` keyed by the resolved game ids; RunError for a key that is not one of `games`."""
    resolved = {}
    for key, weight in weights.items():
        try:
            game = resolve_game(key)
        except ValueError:
            game = None
        if game not in games:
            raise RunError(f"key game_weights.{key}: not one of the games (allowed: {', '.join(games)})")
        resolved[game] = weight
    return resolved


def batch_shares(config: DistillConfig) -> dict[str, int]:
    """Samples per game in a mixed minibatch of exactly `batch_size`: proportional to game_weights (largest
    remainders round up), then a row moves from the largest share to any game left with none."""
    weights = np.array([config.game_weights.get(g, 1.0) for g in config.games], dtype=float)
    raw = weights / weights.sum() * config.batch_size
    shares = np.floor(raw).astype(int)
    shares[np.argsort(-(raw - shares), kind="stable")[: config.batch_size - shares.sum()]] += 1
    for i in np.flatnonzero(shares == 0):
        shares[np.argmax(shares)] -= 1
        shares[i] = 1
    return dict(zip(config.games, shares.tolist()))


def _active_games(config: DistillConfig, step: int) -> list[str]:
    """All games, or the game of the current round-robin block."""
    if config.schedule == "mixed":
        return config.games
    return [config.games[(step // config.block_steps) % len(config.games)]]


def _score(q_values: Any, actions: Sequence[int], game: str, protocol: Any, config: DistillConfig, seed: int,
           device: torch.device) -> float:
    """Mean raw score of a greedy policy under the protocol."""
    returns = evaluate_policy(lambda obs: q_values(obs).argmax(-1), actions, game, protocol,
                              num_envs=config.eval.num_envs, seed=seed, device=device)
    return float(np.mean(returns))
