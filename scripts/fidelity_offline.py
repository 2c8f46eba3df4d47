"""Compare distillation losses without reinforcement-learning noise: fit students to a fixed state set.

Usage:
  python scripts/fidelity_offline.py --config configs/distill/minatar.yaml --experts runs/experts \
      --loss ce cc --seeds 0 1 --updates 60000 --out results/offline.json

For every game the expert plays `--steps` vector steps (`--envs` envs, epsilon 0.1, as the student
acts in `distill`) once to collect training states and once more, with another seed, for held-out
states; each stores the expert's Q-values. Then, per loss and seed, a fresh student of the config
(same network, batch mixing, learning rate, temperature) is trained on the training states only, and
every `--every` updates its `fidelity` (agreement with the expert's greedy action and the expert's
regret, `actormimic.evaluation.fidelity`) is measured on the held-out states, and under "train" on as many
of the training states. No environment steps and no evaluation episodes: the only differences between runs
are the loss and the seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import types
from pathlib import Path

import numpy as np
import torch

from actormimic.config import DistillConfig, load_config
from actormimic.distill import batch_shares, build_learner, expert_paths, load_teacher, resolve_names
from actormimic.evaluation import fidelity_of_actions
from actormimic.losses import LOSS_KINDS
from actormimic.runtime import write_json
from agents.experts import Expert
from envs import get_preset, make_vector

COLLECT_EPSILON = 0.1


def collect(expert: Expert, game: str, preset: str, envs: int, steps: int, seed: int) -> tuple[torch.Tensor, ...]:
    """States an epsilon-greedy expert visits in `steps` vector steps, and its Q-values there."""
    env = make_vector(game, preset, envs, seed)
    generator = torch.Generator().manual_seed(seed)
    try:
        obs = torch.as_tensor(env.reset(seed=seed))
        states = []
        for _ in range(steps):
            states.append(obs)
            greedy = expert.q_values(obs).argmax(-1)
            explore = torch.rand(envs, generator=generator) < COLLECT_EPSILON
            actions = torch.where(explore, torch.randint(env.n_actions, (envs,), generator=generator), greedy)
            obs = torch.as_tensor(env.step(actions.numpy()).obs)
    finally:
        env.close()
    states_t = torch.cat(states)
    return states_t, torch.cat([expert.q_values(part) for part in states_t.split(4096)])


def train_one(config: DistillConfig, data: dict, updates: int, every: int, seed: int) -> list[dict]:
    """Fit one student to the training states; its held-out fidelity per game every `every` updates."""
    torch.manual_seed(seed)
    learner = build_learner(config, {g: tuple(d["obs_shape"]) for g, d in data.items()},
                            {g: d["action_ids"] for g, d in data.items()}, torch.device("cpu"))
    student, shares = learner.student, batch_shares(config)
    generator = torch.Generator().manual_seed(seed)
    curve = []
    for update in range(1, updates + 1):
        batches = {}
        for game, share in shares.items():
            states, q = data[game]["train"]
            rows = torch.randint(len(states), (share,), generator=generator)
            batches[game] = types.SimpleNamespace(obs=states[rows], payload=q[rows])
        learner.update(batches, update)
        if update % every == 0 or update == updates:
            point: dict = {"updates": update, "train": {}}
            for game, d in data.items():
                point[game] = fidelity_on(student, game, *d["test"])
                held_out = len(d["test"][0])  # as many training states: is a gap underfitting or generalization?
                point["train"][game] = fidelity_on(student, game, *(t[:held_out] for t in d["train"]))
            curve.append(point)
    return curve


@torch.no_grad()
def fidelity_on(student: torch.nn.Module, game: str, states: torch.Tensor, q: torch.Tensor) -> dict:
    """Agreement and regret of the student's greedy actions against the expert's Q-values on `states`."""
    actions = torch.cat([student.logits(part, game).argmax(-1) for part in states.split(4096)])
    return fidelity_of_actions(actions, q)


def markdown(result: dict) -> str:
    """Final held-out agreement / regret per game, mean over seeds, one row per loss."""
    games = result["games"]
    lines = ["| loss | seeds | " + " | ".join(f"{g} agreement | regret" for g in games) + " |",
             "|---|---:|" + "---:|---:|" * len(games)]
    for loss, runs in result["runs"].items():
        finals = [run["curve"][-1] for run in runs]
        cells = []
        for game in games:
            cells.append(f"{np.mean([f[game]['agreement'] for f in finals]):.3f}")
            cells.append(f"{np.mean([f[game]['regret'] for f in finals]):.4f}")
        lines.append(f"| {loss} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/distill/minatar.yaml")
    parser.add_argument("--experts", nargs="+", required=True, help="train-experts folder(s) or GAME=PATH")
    parser.add_argument("--loss", nargs="+", default=["ce", "cc"], choices=LOSS_KINDS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--updates", type=int, default=60_000)
    parser.add_argument("--every", type=int, default=10_000, help="updates between held-out measurements")
    parser.add_argument("--steps", type=int, default=3000, help="vector steps of training states per game")
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="JSON with every curve (and OUT.md with the final table)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = resolve_names(load_config(DistillConfig, args.config, args.set))
    games = config.games
    preset = get_preset(config.preset).name
    paths = expert_paths(games, args.experts, config.experts)
    data = {}
    for game in games:
        probe = make_vector(game, preset, 1, 0)
        teacher = load_teacher(paths[game], game, preset, probe, torch.device("cpu"))
        data[game] = {"obs_shape": list(probe.obs_shape), "action_ids": list(probe.action_ids),
                      "train": collect(teacher, game, preset, args.envs, args.steps, seed=11),
                      "test": collect(teacher, game, preset, args.envs, max(1, args.steps // 3), seed=12)}
        probe.close()
    result = {"games": games, "config": args.config, "overrides": args.set, "updates": args.updates,
              "states": {g: [len(d["train"][0]), len(d["test"][0])] for g, d in data.items()}, "runs": {}}
    for loss in args.loss:
        for seed in args.seeds:
            start = time.perf_counter()
            curve = train_one(dataclasses.replace(config, loss=loss), data, args.updates, args.every, seed)
            result["runs"].setdefault(loss, []).append({"seed": seed, "curve": curve,
                                                        "seconds": time.perf_counter() - start})
            print(f"{loss} seed {seed}: " + "  ".join(
                f"{g} agreement {curve[-1][g]['agreement']:.3f} regret {curve[-1][g]['regret']:.4f}" for g in games),
                flush=True)
    table = markdown(result)
    print(table)
    if args.out:
        write_json(Path(args.out), result)
        Path(args.out).with_suffix(".md").write_text(table)
    return result


if __name__ == "__main__":
    main()
