#!/usr/bin/env python
"""Env-layer throughput next to bare ``ale_py`` ``AtariVectorEnv`` in the same run.

    python scripts/bench_env.py [--game Breakout] [--num-envs 8] [--seconds 20] [--json OUT]
        [--loop 16:Atlantis,Boxing,Breakout ... [--loop-threads 0 2] [--loop-staging none torch numpy]]

Bare and wrapped envs are timed in interleaved repeats (bare/layer, then layer/bare, ...) so that
load from other processes hits both alike; the ratio uses the totals. Both use the same
settings (the layer's preset, passed explicitly to the bare env) and uniform random actions.
Also reports MinAtar steps/s. Numbers are env steps per second (num_envs per vector step).

Each ``--loop ENVS:GAME,GAME,...`` times the env layer alone the way the training loops step it
(one vector env of ENVS envs per game, all sends, then all receives): the ceiling of a trainer's
env steps/s on this host. Once per ``--loop-threads`` value (ALE worker threads per game; 0:
ale-py's default, min(ENVS, CPU count)) and ``--loop-staging`` value (what happens to each received
batch: nothing; a torch ``copy_`` into a staging buffer, which torch spreads over its OpenMP threads;
``np.copyto``, one thread), in two interleaved rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from actormimic.runtime import write_json  # noqa: E402
from envs import get_preset, make_vector, resolve_game  # noqa: E402
from envs.games import ale_rom_id  # noqa: E402


def _bare_env(game: str, preset, num_envs: int, num_threads: int):
    from ale_py.vector_env import AtariVectorEnv

    p = preset
    return AtariVectorEnv(
        ale_rom_id(game), num_envs, batch_size=num_envs, num_threads=num_threads,
        max_num_frames_per_episode=p.max_episode_frames,
        repeat_action_probability=p.sticky_action_prob, full_action_space=p.full_action_space,
        img_height=p.image_size, img_width=p.image_size, grayscale=p.grayscale,
        stack_num=p.frame_stack, frameskip=p.frame_skip, maxpool=p.max_pool,
        noop_max=p.noop_max, episodic_life=False, life_loss_info=False,
        reward_clipping=False, use_fire_reset=p.fire_reset,
    )


def _time_loop(step, actions: np.ndarray, seconds: float) -> tuple[int, float]:
    """Run ``step`` for about ``seconds``; return (vector steps, elapsed)."""
    n = 0
    k = len(actions)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(50):
            step(actions[n % k])
            n += 1
        if time.perf_counter() >= deadline:
            break
    return n, time.perf_counter() - t0


def bench_atari(game: str, preset_name: str, num_envs: int, seconds: float, repeats: int,
                num_threads: int, seed: int) -> dict:
    preset = get_preset(preset_name)
    layer = make_vector(game, preset, num_envs, seed, num_threads=num_threads)
    bare = _bare_env(game, preset, num_envs, num_threads)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, layer.n_actions, size=(1024, num_envs)).astype(np.int64)
    layer.reset()
    bare.reset(seed=seed)
    # warm-up
    _time_loop(layer.step, actions, 0.5)
    _time_loop(bare.step, actions, 0.5)
    per = seconds / (2 * repeats)
    rows = []
    tot = {"bare": [0, 0.0], "layer": [0, 0.0]}
    for r in range(repeats):
        order = (("bare", bare.step), ("layer", layer.step))
        for name, fn in (order if r % 2 == 0 else order[::-1]):  # alternate who goes first
            n, dt = _time_loop(fn, actions, per)
            tot[name][0] += n
            tot[name][1] += dt
            rows.append({"repeat": r, "which": name, "env_steps_per_s": n * num_envs / dt})
    overhead_us = _layer_overhead_us(layer, num_envs)
    layer.close()
    bare.close()
    bare_sps = tot["bare"][0] * num_envs / tot["bare"][1]
    layer_sps = tot["layer"][0] * num_envs / tot["layer"][1]
    by = {(row["repeat"], row["which"]): row["env_steps_per_s"] for row in rows}
    pair = [by[(r, "layer")] / by[(r, "bare")] for r in range(repeats)]
    return {"game": game, "preset": preset.name, "num_envs": num_envs, "num_threads": num_threads,
            "bare_env_steps_per_s": bare_sps, "layer_env_steps_per_s": layer_sps,
            "ratio_layer_over_bare": layer_sps / bare_sps,
            "median_pair_ratio": float(np.median(pair)),
            "layer_overhead_us_per_vector_step": overhead_us,
            "bare_us_per_vector_step": 1e6 * num_envs / bare_sps, "repeats": rows}


def _layer_overhead_us(layer, num_envs: int, iters: int = 5000) -> float:
    """Python-side cost of the layer per vector step (action checks + bookkeeping), measured on
    synthetic backend outputs so that emulator noise does not enter."""
    obs = np.zeros((num_envs,) + layer.obs_shape, dtype=np.uint8)
    lives = np.full(num_envs, 3, dtype=np.int32)
    actions = np.zeros(num_envs, dtype=np.int64)
    send, post = layer._backend_send, layer._postprocess
    layer._backend_send = lambda a: None  # time the checks only
    state = (layer._needs_reset.copy(), layer._lives, layer._ep_return.copy(), layer._ep_length.copy())
    try:
        t0 = time.perf_counter()
        for _ in range(iters):
            layer.send(actions)
            layer._pending = False
            post(obs, np.zeros(num_envs, np.float32), np.zeros(num_envs, bool),
                 np.zeros(num_envs, bool), lives)
        dt = time.perf_counter() - t0
    finally:
        layer._backend_send = send
        layer._needs_reset, layer._lives, layer._ep_return, layer._ep_length = state
    return 1e6 * dt / iters


def bench_minatar(game: str, num_envs: int, seconds: float, seed: int) -> dict:
    env = make_vector(game, "minatar", num_envs, seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, env.n_actions, size=(1024, num_envs)).astype(np.int64)
    env.reset()
    _time_loop(env.step, actions, 0.3)
    n, dt = _time_loop(env.step, actions, seconds)
    env.close()
    return {"game": game, "num_envs": num_envs, "env_steps_per_s": n * num_envs / dt}


STAGINGS = ("none", "torch", "numpy")


def _stager(staging: str, env) -> Callable[[np.ndarray], None]:
    """What a loop does with each received batch of observations before its host-to-device copy: nothing, a
    torch copy_ into a (pinned, with CUDA) buffer (parallel over torch's OpenMP threads), or np.copyto into it."""
    buffer = torch.empty((env.num_envs, *env.obs_shape), dtype=torch.uint8, pin_memory=torch.cuda.is_available())
    view = buffer.numpy()
    return {"none": lambda obs: None, "torch": lambda obs: buffer.copy_(torch.from_numpy(obs)),
            "numpy": lambda obs: np.copyto(view, obs)}[staging]


def _time_lockstep(envs: list, staging: str, seconds: float, seed: int) -> tuple[int, float]:
    """(iterations, seconds) of stepping one vector env per game together: all sends, then all receives, each
    received batch staged as `staging` says."""
    stagers = [_stager(staging, env) for env in envs]
    rng = np.random.default_rng(seed)
    actions = [rng.integers(0, e.n_actions, size=(256, e.num_envs)) for e in envs]

    def step(i: int) -> None:
        for env, acts in zip(envs, actions):
            env.send(acts[i % 256])
        for env, stage in zip(envs, stagers):
            stage(env.recv().obs)

    _time_loop(step, np.arange(256), 0.5)  # warm-up
    return _time_loop(step, np.arange(256), seconds)


def bench_loop(games: list[str], preset_name: str, num_envs: int, threads: list[int], stagings: list[str],
               seconds: float, seed: int) -> dict:
    """Env steps/s over all `games` stepped together, per ALE thread setting and staging (two interleaved rounds;
    the envs of each thread setting are made once, since making them takes longer than timing them)."""
    envs = {t: [make_vector(g, preset_name, num_envs, seed + i, num_threads=t) for i, g in enumerate(games)]
            for t in threads}
    for per_game in envs.values():
        for env in per_game:
            env.reset()
    totals = {(t, s): [0, 0.0] for t in threads for s in stagings}
    for _ in range(2):
        for t, s in totals:
            n, dt = _time_lockstep(envs[t], s, seconds / 2, seed)
            totals[t, s][0] += n
            totals[t, s][1] += dt
    for per_game in envs.values():
        for env in per_game:
            env.close()
    rows = [{"ale_threads_per_game": t, "staging": s, "env_steps_per_s_all_games": n * num_envs * len(games) / dt}
            for (t, s), (n, dt) in totals.items()]
    return {"games": games, "num_envs_per_game": num_envs, "torch_threads": torch.get_num_threads(), "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--game", default="Breakout")
    ap.add_argument("--preset", default="nature")
    ap.add_argument("--num-envs", type=int, default=8)
    ap.add_argument("--num-threads", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=20.0, help="total ALE timing (bare + layer); 0 skips it")
    ap.add_argument("--repeats", type=int, default=10, help="interleaved bare/layer repeats")
    ap.add_argument("--minatar-game", default="MinAtar/Breakout")
    ap.add_argument("--minatar-seconds", type=float, default=3.0, help="0 skips MinAtar")
    ap.add_argument("--loop", nargs="+", default=[], metavar="ENVS:GAME,GAME",
                    help="time the env layer alone as a training loop steps it (see above)")
    ap.add_argument("--loop-threads", type=int, nargs="+", default=[0], help="ALE threads per game for --loop")
    ap.add_argument("--loop-staging", nargs="+", choices=STAGINGS, default=["none"],
                    help="for --loop: what is done with each received batch of observations (see _stager)")
    ap.add_argument("--loop-seconds", type=float, default=4.0,
                    help="seconds per --loop spec and setting (threads x staging)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write results to this JSON file")
    args = ap.parse_args(argv)

    game = resolve_game(args.game)
    out = {"host": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "machine": platform.machine()}}
    if args.seconds > 0:
        a = bench_atari(game, args.preset, args.num_envs, args.seconds, args.repeats,
                        args.num_threads, args.seed)
        out["atari"] = a
        print(f"{game} [{a['preset']}] num_envs={args.num_envs}: "
              f"bare AtariVectorEnv {a['bare_env_steps_per_s']:.0f} env steps/s, "
              f"env layer {a['layer_env_steps_per_s']:.0f} env steps/s, "
              f"ratio {a['ratio_layer_over_bare']:.3f} (median of paired repeats "
              f"{a['median_pair_ratio']:.3f})")
        print(f"  layer Python overhead {a['layer_overhead_us_per_vector_step']:.1f} us per vector step "
              f"vs {a['bare_us_per_vector_step']:.0f} us per bare vector step")
        for row in a["repeats"]:
            print(f"  repeat {row['repeat']} {row['which']:>5}: {row['env_steps_per_s']:.0f}")
    if args.minatar_seconds > 0:
        m = bench_minatar(resolve_game(args.minatar_game), args.num_envs, args.minatar_seconds, args.seed)
        out["minatar"] = m
        print(f"{m['game']} num_envs={args.num_envs}: {m['env_steps_per_s']:.0f} env steps/s")
    out["loop"] = []
    for spec in args.loop:
        envs, _, names = spec.partition(":")
        result = bench_loop([resolve_game(g) for g in names.split(",")], args.preset, int(envs), args.loop_threads,
                            args.loop_staging, args.loop_seconds, args.seed)
        out["loop"].append(result)
        for row in result["rows"]:
            print(f"loop pattern, {len(result['games'])} game(s) x {envs} envs, ALE threads per game "
                  f"{row['ale_threads_per_game'] or 'default'}, staging {row['staging']} "
                  f"(torch threads {result['torch_threads']}): {row['env_steps_per_s_all_games']:.0f} env steps/s")
    if args.json:
        write_json(Path(args.json), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
