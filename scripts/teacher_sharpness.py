"""How sharp is an expert as a distillation teacher? Its action gaps and its softmax(Q/T) at several T.

Usage: python scripts/teacher_sharpness.py EXPERT.pt [--temperatures 1 0.1 0.01] [--episodes 4] [--json OUT]

The expert plays `--episodes` episodes under its preset's protocol (greedy, with the protocol's epsilon); on a
uniform sample of the states it visits (up to 4,096) this reports the median spread of its Q-values (largest
minus smallest), the median gap between its best two, and, per temperature T, the median and mean largest
probability and the median entropy of softmax(Q/T) against the uniform policy's: how far from uniform the
targets of a student distilled at T are (README, "Choosing T").
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from actormimic.evaluation import evaluate_and_sample, get_protocol
from actormimic.runtime import write_json
from agents.checkpoint import load_checkpoint
from agents.networks import q_network_from


def teacher_sharpness(path: str, temperatures: list[float], episodes: int, seed: int) -> dict[str, Any]:
    """The expert's action gaps and its teacher policy's sharpness per temperature, on states it visited."""
    data = load_checkpoint(path, kind="expert")
    network = q_network_from(data).eval()
    protocol = get_protocol(data["preset"]["name"], data["game"], episodes=episodes)
    with torch.no_grad():
        _, states = evaluate_and_sample(lambda obs: network(obs).argmax(-1), data["action_ids"], data["game"],
                                        protocol, seed=seed)
        q = network(states).double()
    top2 = q.topk(2, dim=1).values
    k = q.shape[1]
    result: dict[str, Any] = {"game": data["game"], "states": len(q), "actions": k, "uniform_prob": 1 / k,
                              "uniform_entropy": math.log(k),
                              "median_q_spread": float((q.amax(1) - q.amin(1)).median()),
                              "median_top2_gap": float((top2[:, 0] - top2[:, 1]).median()), "temperatures": {}}
    for t in temperatures:
        teacher = torch.distributions.Categorical(logits=q / t)
        top = teacher.probs.amax(1)
        result["temperatures"][f"{t:g}"] = {"median_top_prob": float(top.median()), "mean_top_prob": float(top.mean()),
                                            "median_entropy": float(teacher.entropy().median())}
    return result


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, measure, print (and optionally write) the numbers."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("expert", help="an expert.pt or expert-best.pt written by train-experts")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.1, 0.01], metavar="T")
    parser.add_argument("--episodes", type=int, default=4, help="episodes the expert plays")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if any(t <= 0 for t in args.temperatures):
        parser.error("--temperatures must be positive")
    r = teacher_sharpness(args.expert, args.temperatures, args.episodes, args.seed)
    print(f"{r['game']}: {r['states']} states, {r['actions']} actions; median Q spread {r['median_q_spread']:.4g}, "
          f"median gap between the best two {r['median_top2_gap']:.4g}")
    print(f"| T | median top probability | mean top probability | median entropy |\n|---|---|---|---|\n"
          f"| uniform | {r['uniform_prob']:.3f} | {r['uniform_prob']:.3f} | {r['uniform_entropy']:.3f} |")
    for t, s in r["temperatures"].items():
        print(f"| {t} | {s['median_top_prob']:.3f} | {s['mean_top_prob']:.3f} | {s['median_entropy']:.3f} |")
    if args.json:
        write_json(Path(args.json), r)


if __name__ == "__main__":
    main()
