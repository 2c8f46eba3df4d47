"""Throughput benchmarks against a peer measured in the same run.

    python scripts/bench.py experts --game Breakout --seconds 120 --json OUT.json
        our trainer (once per --precisions entry) vs Stable-Baselines3's DQN (both plain DQN, same Nature CNN, batch 32,
        one update per 4 agent steps, Adam 1e-4, torch's default thread count unless --sb3-threads; run
        first, so with glibc's default malloc): env steps/s after learning starts, and the ratios. Atari:
        SB3 as RL-Zoo runs it (one env, its own wrappers); MinAtar: SB3 through scripts/sb3_peer.py on our
        env layer and network with our run's config (so the same --num-envs, the first value, and --set
        overrides).
    python scripts/bench.py distill --games MinAtar/Breakout MinAtar/SpaceInvaders --seconds 60
        distillation env steps/s (all games together) with ce and with cc, and the time of one
        student update with each loss, in the same run.
    --profile N (either benchmark): after learning starts and a warm-up, profile N loop iterations
        with torch.profiler and report where an iteration's wall time goes (acting, env send and
        wait, replay add, replay draw and update launches), the GPU's busy time, and the top CPU ops and
        device kernels; the run stops after the window (its steps/s are then not comparable).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from actormimic.config import DistillConfig, ExpertsConfig, load_config
from actormimic.runtime import FREED_MEMORY_KEPT, write_json
from actormimic.train_experts import train_one_game
from agents.checkpoint import load_checkpoint
from envs import is_minatar, resolve_game, safe_name


PROFILED_PHASES = {  # label: (module, attribute path) of the methods a profiled iteration is split into
    "act": [("agents.dqn", "DQN.act"), ("agents.amn", "ActorMimicLearner.act")],
    "send (one action fetch for all games, env send)": [("actormimic.train_experts", "send_all"),
                                                         ("actormimic.distill", "send_all")],
    "env recv (wait for the env threads)": [("envs.vector", "VectorEnv.recv")],
    "replay add (distill: with the experts' outputs)": [("actormimic.replay", "ReplayBuffer.add")],
    "replay draw and update (launch or eager)": [("agents.dqn", "DQN.update"),
                                                 ("agents.amn", "ActorMimicLearner.update")],
}


@contextmanager
def loop_profiler(iterations: int, skip: int = 30) -> Iterator[dict[str, Any]]:
    """Profile `iterations` loop iterations once `skip` have run after learning started; fills the yielded dict.

    Hooks RunClock.expired (called once per loop iteration) to step the window and to end the run after
    it, and labels the phases of PROFILED_PHASES with record_function."""
    import importlib

    from torch.profiler import ProfilerActivity, profile, record_function

    from actormimic.loop import RunClock

    report: dict[str, Any] = {}
    if iterations <= 0:
        yield report
        return
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    state: dict[str, Any] = {"seen": 0, "profiler": None, "start": 0.0, "done": False}
    originals: list[tuple[Any, str, Callable[..., Any]]] = []

    def labelled(label: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with record_function(f"phase/{label}"):
                return method(*args, **kwargs)
        return wrapper

    for label, targets in PROFILED_PHASES.items():
        for module_name, path in targets:
            owner_name, _, method_name = path.rpartition(".")
            module = importlib.import_module(module_name)
            owner = getattr(module, owner_name) if owner_name else module
            originals.append((owner, method_name, getattr(owner, method_name)))
            setattr(owner, method_name, labelled(label, getattr(owner, method_name)))
    expired = RunClock.expired

    def hooked(clock: RunClock) -> bool:
        if state["done"]:
            return True
        if clock._learning is not None:
            state["seen"] += 1
            if state["seen"] == skip:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                state["profiler"] = profile(activities=activities)
                state["profiler"].__enter__()
                state["start"] = time.perf_counter()
            elif state["seen"] == skip + iterations:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                wall = time.perf_counter() - state["start"]
                state["profiler"].__exit__(None, None, None)
                report.update(summarize_profile(state["profiler"], wall, iterations))
                state["done"] = True
                return True
        return expired(clock)

    RunClock.expired = hooked  # type: ignore[method-assign]
    try:
        yield report
    finally:
        RunClock.expired = expired  # type: ignore[method-assign]
        for owner, method_name, method in originals:
            setattr(owner, method_name, method)


def summarize_profile(prof: Any, wall_s: float, iterations: int) -> dict[str, Any]:
    """Per-iteration milliseconds: wall, GPU kernels, each labelled phase, top CPU ops and kernels."""
    events = prof.key_averages()

    def ms(microseconds: float) -> float:
        return microseconds / 1e3 / iterations

    def device_us(event: Any) -> float:
        return float(getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)))

    phases = {e.key.removeprefix("phase/"): ms(e.cpu_time_total) for e in events if e.key.startswith("phase/")}
    ops = [e for e in events if not e.key.startswith("phase/")]
    top_cpu = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:15]
    kernels = sorted((e for e in ops if device_us(e) > 0), key=lambda e: -device_us(e))[:10]
    return {
        "iterations": iterations, "wall_ms_per_iteration": wall_s * 1e3 / iterations,
        "device_busy_ms_per_iteration": ms(sum(device_us(e) for e in ops)),
        "phases_ms_per_iteration": phases,
        "top_self_cpu_ms_per_iteration": {e.key: ms(e.self_cpu_time_total) for e in top_cpu},
        "calls_per_iteration_of_top_cpu_ops": {e.key: e.count / iterations for e in top_cpu},
        "top_device_ms_per_iteration": {e.key[:80]: ms(device_us(e)) for e in kernels},
    }


def device_name() -> str:
    """The device that `auto` selects, in words."""
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


DEFAULT_THREADS = torch.get_num_threads()  # before our trainer sets its own


def bench_config(game: str, seconds: float, learning_starts: int, num_envs: int, overrides: list[str]
                 ) -> ExpertsConfig:
    """The expert config both trainers run: `seconds` after learning starts, no evaluation, plain DQN as SB3's
    (`--set double=true` times ours as Double DQN)."""
    return load_config(ExpertsConfig, None, [
        f"games=['{game}']", f"preset={'minatar' if is_minatar(game) else 'nature'}", "steps=100000000",
        f"num_envs={num_envs}", "replay_capacity=100000", f"learning_starts={learning_starts}", "double=false",
        f"time_limit_minutes={(seconds + 10) / 60}", "eval.interval=0", "eval.episodes=1", "eval.final_episodes=0",
        "log_interval=30", "checkpoint_interval=100000000", *overrides,
    ])


def describe_updates(batch_size: int, updates_per_step: float) -> str:
    """A trainer's replay ratio in words, e.g. "batch 32, 0.25 per agent step (8 samples per agent step)"."""
    samples = batch_size * updates_per_step
    return f"batch {batch_size}, {updates_per_step:g} per agent step ({samples:g} samples per agent step)"


def ours_experts(game: str, seconds: float, learning_starts: int, num_envs: int,
                 overrides: list[str], profile: int = 0) -> dict[str, Any]:
    """Our trainer for `seconds` after learning starts; steps/s from its own clock."""
    config = bench_config(game, seconds, learning_starts, num_envs, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / safe_name(game)
        folder.mkdir()
        with loop_profiler(profile) as report:
            train_one_game(config, game, folder)
        counters = load_checkpoint(folder / "expert.pt", kind="expert")["counters"]
    throughput = counters["throughput"]
    steps, seconds = throughput["steps_after_learning_starts"], throughput["seconds_after_learning_starts"]
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / max(seconds, 1e-9), "num_envs": num_envs,
            "cpu_threads": config.cpu_threads or "auto (timed 1 vs all cores)",
            "torch_threads_at_end": torch.get_num_threads(), "precision": config.precision,
            "algorithm": "double DQN" if config.double else "plain DQN",
            "updates": describe_updates(config.batch_size, config.updates_per_step),
            **({"profile": report} if profile else {})}


def timed_sb3_learn(model: Any, seconds: float, learning_starts: int) -> tuple[int, float]:
    """Run `model.learn` until `seconds` have passed after `learning_starts` agent steps; (steps, seconds) since."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Timer(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.start: tuple[float, int] | None = None
            self.result: tuple[int, float] = (0, 0.0)

        def _on_step(self) -> bool:
            if self.num_timesteps < learning_starts:
                return True
            now = time.perf_counter()
            if self.start is None:
                self.start = (now, self.num_timesteps)
            self.result = (self.num_timesteps - self.start[1], now - self.start[0])
            return self.result[1] < seconds

    timer = Timer()
    model.learn(total_timesteps=10**9, callback=timer)
    return timer.result


def sb3_experts(game: str, seconds: float, learning_starts: int, threads: int) -> dict[str, Any]:
    """SB3 DQN (RL-Zoo Atari settings: 1 env, train_freq 4, batch 32, Adam 1e-4) for `seconds` after learning starts."""
    import gymnasium as gym
    import ale_py
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    torch.set_num_threads(threads)
    env = VecFrameStack(make_atari_env(f"{game}NoFrameskip-v4", n_envs=1, seed=0), n_stack=4)
    model = DQN("CnnPolicy", env, learning_rate=1e-4, buffer_size=100_000, learning_starts=learning_starts,
                batch_size=32, train_freq=4, gradient_steps=1, target_update_interval=1000,
                exploration_fraction=0.1, exploration_final_eps=0.01, optimize_memory_usage=False, verbose=0,
                device="auto", seed=0)
    steps, elapsed = timed_sb3_learn(model, seconds, learning_starts)
    return {"steps": steps, "seconds": elapsed, "steps_per_s": steps / max(elapsed, 1e-9), "num_envs": 1,
            "torch_threads": threads, "setup": "RL-Zoo Atari wrappers, 1 env", "updates": describe_updates(32, 0.25)}


def sb3_peer_experts(game: str, seconds: float, learning_starts: int, num_envs: int, overrides: list[str],
                     threads: int) -> dict[str, Any]:
    """SB3 DQN through scripts/sb3_peer.py (our env layer, network and the same config as our run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sb3_peer", Path(__file__).with_name("sb3_peer.py"))
    sb3_peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sb3_peer)
    config = bench_config(game, seconds, learning_starts, num_envs, [*overrides, f"cpu_threads={threads}"])
    model = sb3_peer.build_model(config, game)[0]
    steps, elapsed = timed_sb3_learn(model, seconds, learning_starts)
    return {"steps": steps, "seconds": elapsed, "steps_per_s": steps / max(elapsed, 1e-9), "num_envs": num_envs,
            "torch_threads": threads, "setup": "scripts/sb3_peer.py: our env layer and network, DummyVecEnv",
            "updates": describe_updates(config.batch_size, config.updates_per_step)}


def bench_experts(args: argparse.Namespace) -> dict[str, Any]:
    """SB3's DQN, then our trainer (once per precision and env count), one after the other in the same process.

    SB3 goes first so that it runs with glibc's default malloc, as its users get it: our trainer's
    `keep_freed_memory` lasts for the rest of the process (the MinAtar peer, our harness, keeps it too)."""
    game = resolve_game(args.game)
    result: dict[str, Any] = {"benchmark": "experts", "game": game, "device": device_name(),
                              "seconds": args.seconds, "our_overrides": args.set, "ours": {}}
    if args.sb3_seconds != 0:
        sb3_seconds = args.seconds if args.sb3_seconds is None else args.sb3_seconds
        if is_minatar(game):
            sb3 = sb3_peer_experts(game, sb3_seconds, args.learning_starts, args.num_envs[0], args.set,
                                   args.sb3_threads)
        else:
            sb3 = sb3_experts(game, sb3_seconds, args.learning_starts, args.sb3_threads)
        result["sb3"] = {**sb3, "malloc_keeps_freed_memory": FREED_MEMORY_KEPT["kept"]}
    for precision in args.precisions:
        for num_envs in args.num_envs:
            label = precision if len(args.num_envs) == 1 else f"{precision}, {num_envs} envs"
            ours = ours_experts(game, args.seconds, args.learning_starts, num_envs,
                                [f"precision={precision}", *args.set], args.profile)
            result["ours"][label] = {**ours, "malloc_keeps_freed_memory": FREED_MEMORY_KEPT["kept"]}
    if "sb3" in result:
        result["ratio_ours_over_sb3"] = {label: ours["steps_per_s"] / max(result["sb3"]["steps_per_s"], 1e-9)
                                         for label, ours in result["ours"].items()}
    return result


def bench_distill(args: argparse.Namespace) -> dict[str, Any]:
    """Distillation throughput and update time with ce and cc (experts: fresh random networks; no evaluation)."""
    from actormimic.distill import distill
    from agents.experts import save_expert
    from agents.networks import QNetwork, arch_for_obs_shape
    from envs import get_preset, make_vector

    games = [resolve_game(g) for g in args.games]
    preset = "minatar" if is_minatar(games[0]) else "nature"
    result: dict[str, Any] = {"benchmark": "distill", "games": games, "device": device_name(),
                              "seconds": args.seconds, "our_overrides": args.set, "losses": {}}
    shapes: dict[str, tuple[int, ...]] = {}
    action_ids: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        experts = []
        for game in games:
            env = make_vector(game, get_preset(preset), 1, 0)
            shapes[game], action_ids[game] = env.obs_shape, list(env.action_ids)
            network = QNetwork(arch_for_obs_shape(env.obs_shape), env.obs_shape, env.n_actions)
            path = Path(tmp) / f"{safe_name(game)}.pt"
            save_expert(path, network, game=game, preset=env.preset.to_dict(), action_ids=env.action_ids)
            experts.append(f"{game}={path}")
            env.close()
        for loss in ("ce", "cc"):
            config = load_config(DistillConfig, None, [
                f"games={games}", f"preset={preset}", "steps=100000000", f"loss={loss}",
                f"num_envs={args.num_envs}", f"learning_starts={args.learning_starts}", "replay_capacity=50000",
                f"time_limit_minutes={args.seconds / 60}", "eval.interval=0", "eval.final_episodes=0",
                "log_interval=30", "checkpoint_interval=100000000", *args.set,
            ])
            out = Path(tmp) / f"student-{loss}"
            with loop_profiler(args.profile) as report:
                distill(config, str(out), experts=experts)
            counters = load_checkpoint(out / "student.pt", kind="student")["counters"]
            throughput = counters["throughput"]
            steps = throughput["steps_after_learning_starts"] * len(games)
            result["losses"][loss] = {
                "env_steps_per_s_all_games": steps / max(throughput["seconds_after_learning_starts"], 1e-9),
                "updates": counters["updates"], **throughput,
                "update_ms": update_ms(shapes, action_ids, config, args.update_repeats),
                **({"profile": report} if args.profile else {}),
            }
    ce, cc = (result["losses"][k]["env_steps_per_s_all_games"] for k in ("ce", "cc"))
    result["cc_over_ce_time"] = ce / max(cc, 1e-9)
    result["cc_over_ce_update_time"] = result["losses"]["cc"]["update_ms"] / result["losses"]["ce"]["update_ms"]
    return result


def update_ms(shapes: dict[str, tuple[int, ...]], action_ids: dict[str, list[int]], config: DistillConfig,
              repeats: int) -> float:
    """Milliseconds per student update (the mixed-game batch of `config`) on random frames and Q-values."""
    from types import SimpleNamespace

    from actormimic.distill import build_learner
    from actormimic.runtime import select_device

    device = select_device(config.device, config.cpu_threads or 1)
    games = list(shapes)
    learner = build_learner(config, shapes, action_ids, device)
    share = max(1, config.batch_size // len(games))
    batches = {g: SimpleNamespace(obs=torch.randint(0, 2, (share, *shapes[g]), dtype=torch.uint8, device=device),
                                  payload=torch.randn(share, len(action_ids[g]), device=device)) for g in games}
    for step in range(10):  # warm-up (and CUDA-graph capture)
        learner.update(batches, step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(repeats):
        learner.update(batches, step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    """CLI."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("experts", help="our expert trainer vs SB3 DQN")
    p.add_argument("--game", default="Breakout")
    p.add_argument("--num-envs", type=int, nargs="+", default=[8], help="our trainer once per value")
    p.add_argument("--learning-starts", type=int, default=2000)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                   help="run our trainer once with each torso precision")
    p.add_argument("--sb3-threads", type=int, default=DEFAULT_THREADS,
                   help=f"torch threads for SB3 (default: torch's own default here, {DEFAULT_THREADS})")
    p.add_argument("--sb3-seconds", type=float, default=None,
                   help="SB3's measured seconds (default: --seconds; 0: skip SB3, no ratio)")
    p.set_defaults(func=bench_experts)
    p = sub.add_parser("distill", help="distillation throughput with ce and cc")
    p.add_argument("--games", nargs="+", default=["MinAtar/Breakout", "MinAtar/SpaceInvaders"])
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--update-repeats", type=int, default=300, help="timed student updates per loss")
    p.set_defaults(func=bench_distill)
    for p in sub.choices.values():
        p.add_argument("--seconds", type=float, default=60.0,
                       help="SB3 runs this long after learning starts; our trainer stops this long after its start "
                       "(+10 s for experts), replay fill included; each result's 'seconds' is its own window after "
                       "learning starts, which its steps/s count")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for our run")
        p.add_argument("--json", metavar="OUT", help="write the results here")
        p.add_argument("--profile", type=int, default=0, metavar="N",
                       help="profile N loop iterations after learning starts (see above); 0: off")
    args = parser.parse_args()
    result = args.func(args)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json(Path(args.json), result)


if __name__ == "__main__":
    main()
