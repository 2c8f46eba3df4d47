"""Does bfloat16 change an expert's decisions? Its float32 greedy actions against its bf16-torso ones.

Usage: python scripts/precision_check.py EXPERT.pt [--episodes 8] [--seed 0] [--json OUT]

The expert plays `--episodes` episodes of its game under its preset's protocol in float32; a uniform
sample of the states it visits (`StateReservoir`) is then scored with the same weights run under
`precision: bf16` (the torso under bfloat16 autocast, as in training). Reports the bf16 network's
fidelity to the float32 one (agreement with its greedy action, regret in its Q units), the float32
action gap (best minus second-best Q), the bf16 error of the Q-values, and the share of states
whose action gap is at most twice that state's largest bf16 error (only there can bf16 flip the
greedy action, so this share is at least 1 - agreement).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch

from actormimic.evaluation import evaluate_and_sample, fidelity_of_actions, get_protocol
from actormimic.runtime import write_json
from agents.checkpoint import load_checkpoint
from agents.networks import q_network_from, set_precision


def precision_check(path: str, episodes: int, seed: int) -> dict[str, float | int]:
    """Scores of the float32 expert and the bf16-vs-float32 comparison on the states it visited."""
    data = load_checkpoint(path, kind="expert")
    fp32 = q_network_from(data).eval()
    bf16 = copy.deepcopy(fp32)
    set_precision(bf16, "bf16")
    protocol = get_protocol(data["preset"]["name"], data["game"], episodes=episodes)
    returns, states = evaluate_and_sample(lambda obs: fp32(obs).argmax(-1), data["action_ids"], data["game"],
                                          protocol, seed=seed)
    with torch.no_grad():
        q32, q16 = fp32(states), bf16(states)
    top2 = q32.topk(2, dim=1).values
    gap = top2[:, 0] - top2[:, 1]
    error = (q16 - q32).abs().amax(dim=1)
    result = fidelity_of_actions(q16.argmax(-1), q32)
    return {"game": data["game"], "protocol": protocol.name, "fp32_mean_return": float(np.mean(returns)),
            **{f"bf16_{key}": value for key, value in result.items()},
            "median_action_gap": float(gap.median()), "median_bf16_q_error": float(error.median()),
            "share_flippable": float((gap <= 2 * error).float().mean()),
            "median_abs_q": float(q32.abs().median())}


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the check, print (and optionally write) the numbers."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("expert", help="an expert.pt written by train-experts")
    parser.add_argument("--episodes", type=int, default=8, help="episodes the float32 expert plays")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    result = precision_check(args.expert, args.episodes, args.seed)
    for key, value in result.items():
        print(f"{key:>24}: {value:.4g}" if isinstance(value, float) else f"{key:>24}: {value}")
    if args.json:
        write_json(Path(args.json), result)


if __name__ == "__main__":
    main()
