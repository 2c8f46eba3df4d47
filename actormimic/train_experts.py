"""`actormimic train-experts`: one Double-DQN expert per game.

Per game the loop is: act (epsilon-greedy, on the device) -> env.send -> gradient updates while
the env threads step -> env.recv -> replay. Writes OUT/<game>/expert.pt (last state, resumable),
expert-best.pt, tb/ and eval.json. expert-best.pt holds the network of the best periodic evaluation
until the end; then that network and the last one are both scored by the final evaluation (same
episodes and seed), the higher-scoring of the two is kept and eval.json reports its score on fresh
episodes (see `final_choice`).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import torch

from actormimic.config import ExpertsConfig, check_resumed_config, config_to_dict, load_config
from actormimic.evaluation import Protocol, evaluate_policy, protocol_for, random_score, resolve_checked
from actormimic.loop import Every, GameStream, RunClock, UpdateCredit, send_all
from actormimic.replay import ReplayBuffer
from actormimic.reports import game_result
from actormimic.runtime import (Interrupted, Monitor, RunError, StopRequested, prepare_run_dir, rng_state,
                                save_config, seed_everything, select_device, set_rng_state, thread_tuner, write_json)
from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.dqn import BATCH_FIELDS, DQN, epsilon_schedule
from agents.networks import QNetwork, arch_for_obs_shape, q_network_from, set_precision
from envs import get_preset, is_minatar, make_vector, safe_name

LAST, BEST = "expert.pt", "expert-best.pt"


def check_games(games: list[str], preset: str) -> list[str]:
    """Resolve game ids and check them against the preset before any work starts."""
    resolved = [resolve_checked(game) for game in games]
    for game in resolved:
        if is_minatar(game) != (preset == "minatar"):
            raise RunError(f"game {game} cannot use preset {preset!r} "
                           f"(use {'minatar' if is_minatar(game) else 'nature or machado'})")
    return resolved


def train_experts(config: ExpertsConfig, out: str, *, resume: bool = False, overwrite: bool = False,
                  parallel: int = 1) -> None:
    """Train one expert per game, one after another or `parallel` processes at a time."""
    config = dataclasses.replace(config, games=check_games(config.games, config.preset))
    for game in config.games:
        protocol_for(config.eval.protocol, game, config.preset)
    device = select_device(config.device)
    if config.init_from:
        load_checkpoint(config.init_from, kind="student")
    if parallel < 1:
        raise RunError(f"--parallel must be >= 1, got {parallel}")
    root = prepare_run_dir(out, resume=resume, overwrite=overwrite, marker="config.yaml")
    if resume:
        check_resumed_config(load_config(ExpertsConfig, root / "config.yaml"), config, root / "config.yaml")
    save_config(config, root)
    folders = [root / safe_name(game) for game in config.games]
    for folder in folders:
        folder.mkdir(exist_ok=True)
    processes = min(parallel, len(config.games))
    if processes == 1:
        for game, folder in zip(config.games, folders):
            train_one_game(config, game, folder)
        return
    if config.cpu_threads == 0:  # processes share the cores: a fixed share each instead of timing 1 vs all
        config = dataclasses.replace(config, cpu_threads=max(1, (os.cpu_count() or 1) // processes))
    jobs = [(config, game, folder, gpu)
            for game, folder, gpu in zip(config.games, folders, gpu_per_job(len(folders), device))]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        pool.starmap(train_one_game, jobs)


def gpu_per_job(jobs: int, device: torch.device) -> list[int | None]:
    """GPU index of each parallel job: round-robin over the visible GPUs when there are several, else None
    (all jobs share the one device)."""
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    return [i % gpus if gpus > 1 else None for i in range(jobs)]


def train_one_game(config: ExpertsConfig, game: str, folder: Path, gpu: int | None = None) -> dict[str, Any] | None:
    """Train (or resume) the expert of one game in `folder` (on GPU `gpu` if given); returns its final
    evaluation (None if none)."""
    device = select_device(config.device, config.cpu_threads)
    if gpu is not None and device.type == "cuda":
        torch.cuda.set_device(gpu)  # CUDA graphs and streams follow the current device
        device = torch.device("cuda", gpu)
    resume_state = _load_resume(folder / LAST)
    if resume_state is not None and resume_state["counters"]["finished"]:
        print(f"[{game}] already finished in {folder}; skipping", flush=True)
        return resume_state["eval"]
    seed_everything(config.seed)
    preset = get_preset(config.preset)
    env = make_vector(game, preset, config.num_envs, config.seed, num_threads=config.env_threads)
    frame_shape = (env.frame_channels, *env.obs_shape[1:])
    arch = arch_for_obs_shape(env.obs_shape) if config.arch == "auto" else config.arch
    q_net = QNetwork(arch, env.obs_shape, env.n_actions, config.dueling).to(device)
    if config.init_from:
        _init_torso(q_net, config.init_from)
    set_precision(q_net, config.precision)
    agent = DQN(q_net, lr=config.lr, adam_eps=config.adam_eps, gamma=config.gamma, loss=config.loss,
                max_grad_norm=config.max_grad_norm, double=config.double, target_update=config.target_update,
                target_update_interval=max(1, round(config.target_update_interval * config.updates_per_step)),
                tau=config.tau, device=device, cuda_graph=config.cuda_graph)
    replay = ReplayBuffer(config.replay_capacity, config.num_envs, frame_shape, preset.frame_stack, device,
                          n_step=config.n_step, gamma=config.gamma, cuda_graph=config.cuda_graph)
    stream = GameStream(env, replay, device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    counters = {"step": 0, "updates": 0, "best_score": -float("inf"), "finished": False}
    if resume_state is not None:
        agent.load_state_dict(resume_state["agent"])
        counters = resume_state["counters"]
        set_rng_state(resume_state["rng"])
        generator.set_state(resume_state["generator"])
        print(f"[{game}] resuming at step {counters['step']:,} (replay refilled from empty)", flush=True)
    protocol = protocol_for(config.eval.protocol, game, preset.name, episodes=config.eval.episodes,
                            epsilon=config.eval.epsilon)
    monitor = Monitor(folder / "tb", safe_name(game), preset.name, config.steps, config.log_interval)
    meta = {"game": game, "preset": preset.to_dict(), "action_ids": list(env.action_ids), "network": q_net.spec,
            "config": config_to_dict(config)}

    def checkpoint(path: Path, label: str, **extra: Any) -> None:
        save_checkpoint(path, {**meta, "label": label, **network_state(), **extra}, kind="expert")

    def network_state() -> dict[str, Any]:
        """The network with the step counters and RNG state it was saved at."""
        return {"model": q_net.state_dict(), "counters": dict(counters), "rng": rng_state()}

    def evaluate() -> float:
        returns = evaluate_policy(_greedy(q_net), env.action_ids, game, protocol,
                                  num_envs=config.eval.num_envs, seed=config.seed + 10_000, device=device)
        score = float(np.mean(returns))
        monitor.scalars({f"eval/{safe_name(game)}/score": score}, counters["step"])
        print(f"[{safe_name(game)}] eval ({protocol.name}, {len(returns)} episodes): raw score {score:.2f}", flush=True)
        if score > counters["best_score"]:
            counters["best_score"] = score
            checkpoint(folder / BEST, "best", eval_score=score, step=counters["step"])
        return score

    def save_last(finished: bool, final_eval: dict[str, Any] | None = None) -> None:
        counters["finished"] = finished
        if not finished:
            clock.record(counters)
        checkpoint(folder / LAST, "last", agent=agent.state_dict(), generator=generator.get_state(), eval=final_eval)

    credit = UpdateCredit(config.updates_per_step)
    eval_due = Every(config.eval.interval, counters["step"])
    checkpoint_due = Every(config.checkpoint_interval, counters["step"])
    refill_until = counters["step"] + min(config.learning_starts, config.replay_capacity) if resume_state else 0
    metrics: dict[str, torch.Tensor] = {}
    clock = RunClock(config.time_limit_minutes, spent=counters.get("seconds", 0.0))
    tuner = thread_tuner(device, config.cpu_threads)
    stream.reset(seed=config.seed + counters["step"])
    try:
        with StopRequested() as stop:
            while counters["step"] < config.steps and not stop.requested and not clock.expired():
                step = counters["step"]
                epsilon = epsilon_schedule(step, config.epsilon_start, config.epsilon_end,
                                          int(config.epsilon_fraction * config.steps))
                send_all([stream], [agent.act(stream.obs, epsilon, generator)])
                if step >= max(config.learning_starts, refill_until) and len(replay) >= config.batch_size:
                    clock.learning(step)
                    if tuner is not None:
                        tuner.step(config.num_envs)
                    due = credit.earn(config.num_envs)
                    if due:  # one replay draw and all the updates due in one call (one CUDA graph)
                        batch = replay.deferred(due * config.batch_size, BATCH_FIELDS)
                        metrics = agent.update(batch, count=due, generator=generator)
                        counters["updates"] += due
                counters["step"] += stream.recv(monitor, step)
                if eval_due(counters["step"]):
                    evaluate()
                if checkpoint_due(counters["step"]):
                    save_last(finished=False)
                if monitor.due():
                    monitor.scalars({**metrics, "train/epsilon": epsilon, "train/replay_fill": len(replay),
                                     **({"perf/cpu_threads": tuner.threads} if tuner else {})},
                                    counters["step"])
                    monitor.progress(counters["step"], counters["updates"], f"eps {epsilon:.3f}",
                                     seconds_left=clock.seconds_left())
            if stop.requested:
                save_last(finished=False)
                raise Interrupted(f"{game} stopped at step {counters['step']:,}; checkpoint {folder / LAST} "
                                  f"(continue with --resume)")
        clock.record(counters)
        if eval_due.fired_at != counters["step"]:  # the last network gets a periodic score once
            evaluate()
        last = {**meta, **network_state(), "step": counters["step"]}
        final = _final_eval(game, folder, protocol, config, device, last) if config.eval.final_episodes else None
        save_last(finished=True, final_eval=final)
        return final
    finally:
        stream.close()
        monitor.close()


class FinalChoice(NamedTuple):
    """The network the final evaluation kept, its eval.json entry, the protocol it ran and the summary of the choice."""

    kept: Mapping[str, Any]
    entry: dict[str, Any]
    protocol: Protocol
    summary: dict[str, Any]


def final_choice(game: str, best: Mapping[str, Any], last: Mapping[str, Any], action_ids: list[int],
                 protocol: Protocol, config: ExpertsConfig, device: torch.device) -> FinalChoice:
    """Score the best periodic-evaluation network and the last one (checkpoint-like mappings with "network",
    "model" and "step"; the last is skipped when it is the best, same step) with the final evaluation's episodes
    and seed, the same env streams for both; keep the higher-scoring (the best on a tie).

    The best periodic evaluation is a noisy pick (few episodes, the maximum over many evaluations): in 21 runs
    (19 MinAtar, 2 Pong) whose best and last networks differed, the last one was better in 7 and far worse in
    others (README, "The best network"). The higher of two noisy means overstates the kept network's score, so
    after a choice between two networks the kept one is scored again on fresh episodes (another seed), and that
    is its reported entry; the selection scores stay in the summary."""
    candidates = {"best": best} if best["step"] == last["step"] else {"best": best, "last": last}
    protocol = dataclasses.replace(protocol, episodes=config.eval.final_episodes)
    random = random_score(game, protocol)

    def score(candidate: Mapping[str, Any], seed: int) -> dict[str, Any]:
        network = q_network_from(candidate).to(device).eval()
        returns = evaluate_policy(_greedy(network), action_ids, game, protocol, num_envs=config.eval.num_envs,
                                  seed=seed, device=device)
        return game_result(game, returns, random=random, expert_mean=None)

    selection_seed = config.seed + 20_000
    results = {name: score(candidate, selection_seed) for name, candidate in candidates.items()}
    chosen = max(results, key=lambda name: results[name]["mean"])
    rescore = len(candidates) > 1
    report_seed = config.seed + 30_000 if rescore else selection_seed
    entry = score(candidates[chosen], report_seed) if rescore else results[chosen]
    summary = {"chosen": chosen, "episodes": protocol.episodes, "selection_seed": selection_seed,
               "report_seed": report_seed,
               "candidates": {name: {"step": candidates[name]["step"], "mean": result["mean"], "ci95": result["ci95"]}
                              for name, result in results.items()}}
    return FinalChoice(candidates[chosen], entry, protocol, summary)


def describe_choice(summary: Mapping[str, Any]) -> str:
    """One line of a final_choice summary: each candidate's step and score, and which one was kept."""
    scores = ", ".join(f"{name} network (step {entry['step']:,}) {entry['mean']:.2f}"
                       for name, entry in summary["candidates"].items())
    rescored = ", scored again on fresh episodes" if summary["report_seed"] != summary["selection_seed"] else ""
    return f"{scores}; kept the {summary['chosen']} one{rescored}"


def _greedy(network: QNetwork) -> Callable[[torch.Tensor], torch.Tensor]:
    """The greedy policy of a Q-network (action indices of a uint8 observation batch)."""
    return lambda obs: network(obs).argmax(-1)


def _final_eval(game: str, folder: Path, protocol: Protocol, config: ExpertsConfig, device: torch.device,
                last: dict[str, Any]) -> dict[str, Any]:
    """`final_choice` between expert-best.pt and the last network (`last`, a checkpoint without its label); the
    kept one becomes expert-best.pt; writes eval.json."""
    best = load_checkpoint(folder / BEST, kind="expert")
    choice = final_choice(game, best, last, best["action_ids"], protocol, config, device)
    entry = choice.entry
    if choice.kept is last:
        save_checkpoint(folder / BEST, {**last, "label": "best", "eval_score": entry["mean"]}, kind="expert")
    entry["expert_mean"] = entry["mean"]
    entry["expert_normalized"] = 1.0
    result = {"protocol": choice.protocol.to_dict(), "checkpoint": str(folder / BEST), "kind": "expert",
              "method": "expert", "seed": config.seed, "games": {game: entry}, "aggregate": {},
              "final_choice": choice.summary}
    write_json(folder / "eval.json", result)
    print(f"[{safe_name(game)}] final eval ({protocol.name}, {choice.protocol.episodes} episodes, raw score): "
          f"{describe_choice(choice.summary)} as {folder / BEST}: {entry['mean']:.2f} ± {entry['std']:.2f}",
          flush=True)
    return result


def _load_resume(path: Path) -> dict[str, Any] | None:
    """The resume state in `path`, or None for a fresh run."""
    if not path.exists():
        return None
    state = load_checkpoint(path, kind="expert")
    if "agent" not in state:
        raise CheckpointError(f"checkpoint {path} has no training state to resume from")
    return state


def _init_torso(q_net: QNetwork, student_path: str) -> None:
    """Copy a student's torso weights into the expert network (Actor-Mimic transfer). A game with fewer observation
    channels than the student (MinAtar games differ) gets the first convolution's weights of its own channels: the
    student zero-pads the missing ones at the end, so its features of this game's observations are unchanged."""
    student = load_checkpoint(student_path, kind="student")
    arch, (channels, *rest) = student["student"]["arch"], student["student"]["obs_shape"]
    own_channels, *own_rest = q_net.spec["obs_shape"]
    if arch != q_net.spec["arch"] or list(rest) != list(own_rest) or own_channels > channels:
        raise RunError(f"--init-from {student_path}: the student's torso ({arch}, {student['student']['obs_shape']}) "
                       f"does not fit this game's network ({q_net.spec}): it needs the same torso and frame size, "
                       f"and at most the student's {channels} channels")
    torso = {k.removeprefix("torso."): v for k, v in student["model"].items() if k.startswith("torso.")}
    first_conv = next(k for k, v in torso.items() if v.dim() == 4)
    torso[first_conv] = torso[first_conv][:, :own_channels]
    q_net.torso.load_state_dict(torso)
