"""Which form of the DQN update is fastest on this device: the time per update of candidate variants.

Usage: python scripts/bench_update_variants.py [--device cuda] [--batch 32 128] [--count 1 16]
           [--variants default cudnn-benchmark ...] [--seconds S] [--json OUT]

Each variant is our Double-DQN update (Nature CNN, Breakout's 4 actions, float32, Huber loss, Adam, gradient
clip, hard target sync) on a fixed random batch. On a GPU `count` updates run as one CUDA graph, as in the
trainer, which makes `count` updates per call. The time is the best per-update time over rounds of calls made back
to back. On the session-11 H200 an update took ~1 ms inside the loop, and so capped one batch-32 update per 4 agent
steps near 4,000 env steps/s (README, "GPU: Pong in 8 minutes").

Variants, candidates for the trainer (which runs `default`):
  default          the update as the trainer builds it
  plain            plain DQN (double=false: no online forward of next_obs), the algorithm SB3 runs and the
                   throughput benchmarks time; not a candidate (its target differs), so it has no drift
  cudnn-benchmark  torch.backends.cudnn.benchmark: cuDNN times its algorithms once per convolution shape
  tf32             TF32 matrix products (cuDNN's convolutions use TF32 already by default)
  merged-online    Double DQN's two online forwards (obs and next_obs) as one forward of both batches
  parallel         the three forwards on three CUDA streams, parallel branches of the captured graph (a GPU runs
                   a batch-32 forward far below its capacity); the same as `default` without CUDA
  compiled         the TD loss (its three forwards and the loss) through torch.compile, inside the same graph
Each candidate's row also says how far its loss, gradient norm and mean Q depart from the default's (`drift`).
Global switches are restored after each variant. Rows go to --json as they are measured.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from actormimic.runtime import write_json
from agents.dqn import DQN
from agents.networks import QNetwork

ACTIONS = 4
VARIANTS = ("default", "plain", "cudnn-benchmark", "tf32", "merged-online", "parallel", "compiled")


class MergedOnlineDQN(DQN):
    """Double DQN whose online network sees obs and next_obs in one forward (fewer, larger kernels; the backward
    then runs over both halves, the next_obs half with zero gradient)."""

    def _td_loss(self, b: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        n = len(b["obs"])
        q_both = self.online(torch.cat([b["obs"], b["next_obs"]]))
        with torch.no_grad():
            target = self._bootstrap(b["reward"], b["done"], b["discount"], self.target(b["next_obs"]), q_both[n:])
        return self._loss_of(q_both[:n], b, target)


class ParallelForwardsDQN(DQN):
    """Double DQN whose target forward and online forward of next_obs run on side CUDA streams while the online
    forward of obs runs on the current one; the loss waits for both."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cuda = self.device.type == "cuda"
        self._side = [torch.cuda.Stream(self.device) for _ in range(2)] if cuda else []

    def _td_loss(self, b: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        if not self._side:
            return super()._td_loss(b)
        main = torch.cuda.current_stream(self.device)
        for side in self._side:
            side.wait_stream(main)
        with torch.no_grad():
            with torch.cuda.stream(self._side[0]):
                next_q = self.target(b["next_obs"])
            with torch.cuda.stream(self._side[1]):
                online_next_q = self.online(b["next_obs"])
        q_all = self.online(b["obs"])
        for side in self._side:
            main.wait_stream(side)
        with torch.no_grad():
            target = self._bootstrap(b["reward"], b["done"], b["discount"], next_q, online_next_q)
        return self._loss_of(q_all, b, target)


def random_batch(size: int, device: torch.device, seed: int = 0) -> dict[str, Tensor]:
    """A fixed replay-like batch of Atari shapes."""
    gen = torch.Generator().manual_seed(seed)
    batch = {"obs": torch.randint(0, 256, (size, 4, 84, 84), dtype=torch.uint8, generator=gen),
             "action": torch.randint(0, ACTIONS, (size,), generator=gen),
             "reward": torch.randn(size, generator=gen),
             "next_obs": torch.randint(0, 256, (size, 4, 84, 84), dtype=torch.uint8, generator=gen),
             "done": (torch.rand(size, generator=gen) < 0.1).float()}
    return {k: v.to(device) for k, v in batch.items()}


def make_agent(variant: str, device: torch.device, seed: int = 0) -> DQN:
    """The trainer's Double DQN, the variant's version of it, or plain DQN."""
    torch.manual_seed(seed)
    net = QNetwork("nature", (4, 84, 84), ACTIONS)
    agent_class = {"merged-online": MergedOnlineDQN, "parallel": ParallelForwardsDQN}.get(variant, DQN)
    agent = agent_class(net, double=variant != "plain", device=device)
    if variant == "compiled":
        agent._td_loss = torch.compile(agent._td_loss)  # type: ignore[method-assign]
    return agent


@contextlib.contextmanager
def switches(variant: str) -> Iterator[None]:
    """The variant's global torch switches, restored on exit."""
    saved = torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.benchmark = variant == "cudnn-benchmark"
    torch.backends.cuda.matmul.allow_tf32 = variant == "tf32"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32 = saved


def per_update_seconds(call: Callable[[], Any], updates_per_call: int, seconds: float, device: torch.device
                       ) -> float:
    """Best time per update over rounds of back-to-back calls (each round waits for the device at its end)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(6):  # warm-up, graph capture, first replays
        call()
    sync()
    best, calls, deadline = float("inf"), 1, time.perf_counter() + seconds
    while best == float("inf") or time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(calls):
            call()
        sync()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed / (calls * updates_per_call))
        calls = min(calls * 2, max(1, int(0.2 / max(elapsed / calls, 1e-6))))  # rounds of about 0.2 s
    return best


def frozen_metrics(variant: str, batch: Mapping[str, Tensor], count: int, device: torch.device, calls: int = 8
                   ) -> Tensor:
    """The TD loss, gradient norm and mean Q of the last of `calls` calls (graph replays on a GPU) with a learning
    rate of 0, so that every call sees the initial weights."""
    with switches(variant):
        agent = make_agent(variant, device)
        for group in agent.optimizer.param_groups:
            group["lr"] = 0.0
        for _ in range(calls):
            metrics = agent.update(batch, count=count)
        return torch.stack([metrics[k].float() for k in ("loss/td", "train/grad_norm", "train/q_mean")])


def measure(variant: str, batch_size: int, count: int, device: torch.device, seconds: float,
            references: dict[tuple[int, int], Tensor]) -> dict[str, Any]:
    """One variant at one batch size and updates per call: its time per update, and the largest relative
    difference of its loss, gradient norm and mean Q from the default's on the same weights (float32 rounding gives
    ~1e-6, TF32 ~1e-3; a candidate that computed something else, e.g. by a race between streams, far more). The
    default's metrics are kept in `references` for the next candidate of the same setting."""
    batch = random_batch(batch_size * count, device)
    with switches(variant):
        agent = make_agent(variant, device)
        seconds_per_update = per_update_seconds(lambda: agent.update(batch, count=count), count, seconds, device)
        graphed = any(step._graph is not None for step in agent._steps.values())
    row = {"variant": variant, "batch": batch_size, "updates_per_call": count, "graphed": graphed,
           "update_us": seconds_per_update * 1e6, "us_per_sample": seconds_per_update * 1e6 / batch_size}
    if variant not in ("default", "plain"):
        if (batch_size, count) not in references:
            references[batch_size, count] = frozen_metrics("default", batch, count, device)
        reference = references[batch_size, count]
        difference = (frozen_metrics(variant, batch, count, device) - reference).abs() / reference.abs()
        row["drift_from_default"] = float(difference.max())
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--count", type=int, nargs="+", default=[1, 16], help="updates per call (per CUDA graph)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per measurement")
    parser.add_argument("--json", metavar="OUT", help="write the rows here (rewritten after each row)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    rows: list[dict[str, Any]] = []
    baseline: dict[tuple[int, int], float] = {}
    references: dict[tuple[int, int], Tensor] = {}
    print(f"{name}, torch {torch.__version__}")
    print(f"{'variant':>16} {'batch':>5} {'per call':>8} {'graphed':>7} {'us/update':>9} {'us/sample':>9} "
          f"{'vs default':>10} {'drift':>8}")
    for variant in args.variants:
        for batch_size in args.batch:
            for count in args.count:
                key = (batch_size, count)
                try:
                    row = measure(variant, batch_size, count, device, args.seconds, references)
                except Exception as error:  # a candidate that fails here is a result too; the others still run
                    row = {"variant": variant, "batch": batch_size, "updates_per_call": count,
                           "error": f"{type(error).__name__}: {error}"}
                    print(f"{variant:>16} {batch_size:>5} {count:>8} failed: {row['error']}", flush=True)
                else:
                    if variant == "default":
                        baseline[key] = row["update_us"]
                    row["ratio_to_default"] = row["update_us"] / baseline[key] if key in baseline else None
                    ratio = f"{row['ratio_to_default']:.3f}" if row["ratio_to_default"] is not None else "-"
                    drift = f"{row['drift_from_default']:.1e}" if "drift_from_default" in row else "-"
                    print(f"{variant:>16} {batch_size:>5} {count:>8} {str(row['graphed']):>7} "
                          f"{row['update_us']:9.1f} {row['us_per_sample']:9.2f} {ratio:>10} {drift:>8}", flush=True)
                rows.append(row)
                if args.json:
                    write_json(Path(args.json), {"device": name, "torch": torch.__version__, "rows": rows})


if __name__ == "__main__":
    main()
