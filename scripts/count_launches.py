"""Torch ops a training command dispatches per loop iteration outside the steps a GPU captures as CUDA graphs:
on a GPU each is about one kernel launch (views aside), so this estimates the loop's launch overhead on any
device. A captured step counts as one replay plus its input copies and output clones.

    python scripts/count_launches.py train-experts --config configs/experts/atari.yaml --games Breakout ...
    python scripts/count_launches.py distill --config configs/distill/minatar.yaml --experts DIR ...

(the arguments of `actormimic`; set eval.interval=0 and eval.final_episodes=0 so that only the loop runs).
Prints the median over the last 20 iterations and the ops that make it up.
"""

from __future__ import annotations

import collections
import sys
from typing import Any
from unittest.mock import patch

from torch.utils._python_dispatch import TorchDispatchMode

import actormimic.distill
import actormimic.loop
import actormimic.train_experts
from actormimic.cli import main as cli
from agents.graphs import GraphedStep

WINDOW = 20


class OpCounter(TorchDispatchMode):
    """Counts dispatched ops by name, except inside captured steps (`inside` > 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if not self.inside:
            self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def main(argv: list[str]) -> None:
    """Run `actormimic ARGV` counting ops; print the per-iteration count and its breakdown."""
    counter, snapshots = OpCounter(), []

    def captured(self: GraphedStep, inputs: dict[str, Any]) -> dict[str, Any]:
        """What a CUDA replay costs: input copies, one launch, output clones (one when the metrics are stacked)."""
        counter.ops["<graph input copies>"] += len(inputs)
        counter.ops["<graph replay>"] += 1
        counter.inside += 1
        try:
            self.zero_grad()
            outputs = self.step(inputs)
        finally:
            counter.inside -= 1
        stacked = len(outputs) > 1 and all(v.dim() == 0 for v in outputs.values())
        counter.ops["<graph output clones>"] += 1 if stacked else len(outputs)
        return outputs

    send_all = actormimic.loop.send_all

    def counted_send_all(*args: Any) -> None:  # once per loop iteration
        snapshots.append(counter.ops.copy())
        send_all(*args)

    with (patch.object(GraphedStep, "__call__", captured),
          patch.object(actormimic.train_experts, "send_all", counted_send_all),
          patch.object(actormimic.distill, "send_all", counted_send_all), counter):
        if cli(argv):
            raise SystemExit(f"the command failed: actormimic {' '.join(argv)}")
    if len(snapshots) <= WINDOW:
        raise SystemExit(f"only {len(snapshots)} loop iterations ran; run more steps")
    per_iteration = sorted(sum((b - a).values()) for a, b in zip(snapshots[-WINDOW - 1:], snapshots[-WINDOW:]))
    print(f"ops per loop iteration outside captured steps (median of the last {WINDOW}): {per_iteration[WINDOW // 2]}")
    for name, count in (snapshots[-1] - snapshots[-WINDOW - 1]).most_common():
        print(f"  {count / WINDOW:7.1f}  {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
