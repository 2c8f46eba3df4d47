"""How close one DQN update is to the machine's arithmetic limit, per precision and thread count.

Usage: python scripts/bench_update.py [--threads 1 2] [--precisions fp32 bf16] [--seconds S] [--json OUT]

For each precision it counts the floating-point operations of one of our DQN updates on a
Nature-CNN (batch 32, Breakout's 4 actions: online forward+backward, target forward, Adam) with
torch's FlopCounterMode, times the update, and times a large matrix product in the same dtype as
the practical peak of the machine. achieved / peak near 1 means the update is compute-bound: a
faster trainer would need fewer operations (or a cheaper dtype), not less overhead.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from actormimic.runtime import write_json
from agents.dqn import DQN
from agents.networks import PRECISIONS, QNetwork, set_precision

BATCH, ACTIONS, GEMM_SIZE = 32, 4, 2048


def best_seconds(fn: Callable[[], Any], seconds: float) -> float:
    """Fastest of repeated calls of fn within about `seconds` (after two warm-up calls)."""
    fn(), fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def dqn_update(precision: str) -> tuple[Callable[[], Any], int]:
    """One DQN update on a fixed random batch, and its floating-point operation count."""
    torch.manual_seed(0)
    net = QNetwork("nature", (4, 84, 84), ACTIONS)
    set_precision(net, precision)
    agent = DQN(net, double=False)
    batch = {"obs": torch.randint(0, 256, (BATCH, 4, 84, 84), dtype=torch.uint8),
             "action": torch.randint(0, ACTIONS, (BATCH,)), "reward": torch.randn(BATCH),
             "next_obs": torch.randint(0, 256, (BATCH, 4, 84, 84), dtype=torch.uint8),
             "done": torch.zeros(BATCH)}
    with FlopCounterMode(display=False) as counter:
        agent.update(batch)
    return lambda: agent.update(batch), counter.get_total_flops()


def gemm(dtype: torch.dtype) -> Callable[[], Any]:
    """A square matrix product in `dtype` (2 * n^3 operations)."""
    a = torch.randn(GEMM_SIZE, GEMM_SIZE).to(dtype)
    b = torch.randn(GEMM_SIZE, GEMM_SIZE).to(dtype)
    return lambda: a @ b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    parser.add_argument("--seconds", type=float, default=5.0, help="timing budget per measurement")
    parser.add_argument("--json", metavar="OUT", help="write the results here")
    args = parser.parse_args()
    rows = []
    print(f"{'precision':>9} {'threads':>7} {'update ms':>9} {'GFLOP/update':>12} {'GFLOP/s':>8} "
          f"{'GEMM GFLOP/s':>12} {'fraction':>8}")
    for precision in args.precisions:
        update, flops = dqn_update(precision)
        for threads in args.threads:
            torch.set_num_threads(threads)
            update_s = best_seconds(update, args.seconds)
            peak = 2 * GEMM_SIZE**3 / best_seconds(gemm(PRECISIONS[precision]), args.seconds)
            row = {"precision": precision, "threads": threads, "update_ms": update_s * 1e3, "update_flops": flops,
                   "achieved_flops_per_s": flops / update_s, "gemm_flops_per_s": peak,
                   "fraction_of_gemm": flops / update_s / peak}
            rows.append(row)
            print(f"{precision:>9} {threads:>7} {update_s * 1e3:9.2f} {flops / 1e9:12.2f} "
                  f"{flops / update_s / 1e9:8.1f} {peak / 1e9:12.1f} {row['fraction_of_gemm']:8.2f}", flush=True)
    if args.json:
        write_json(Path(args.json), {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                                     "batch": BATCH, "results": rows})


if __name__ == "__main__":
    main()
