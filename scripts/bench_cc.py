"""Benchmark forward+backward of the `cc` distillation loss relative to `ce` (same run, same device).

Usage: python scripts/bench_cc.py [--json OUT] [--device cpu|cuda] [--repeats N] [--threads T] [--cnn]
On CUDA each loss step is captured once in a CUDA graph and the replays are timed.  With --cnn
the forward+backward of a Nature-DQN network (4x84x84 -> 18) at the same batch size is timed
too, to put the loss cost in context.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from actormimic.losses import distillation_loss
from actormimic.runtime import write_json

KS = (4, 6, 18)
BATCHES = (32, 256, 4096)


def _inputs(batch: int, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Student logits (leaf, requires grad) and teacher Q-values in the distillation regime."""
    gen = torch.Generator().manual_seed(batch * 100 + k)
    student = (torch.randn(batch, k, generator=gen) * 2.0).to(device).requires_grad_(True)
    teacher = (torch.randn(batch, k, generator=gen) * 2.0).to(device)
    return student, teacher


def _step(kind: str, student: torch.Tensor, teacher: torch.Tensor) -> Callable[[], None]:
    """One forward+backward of the loss, gradient written to student.grad."""

    def run() -> None:
        student.grad = None
        loss, _ = distillation_loss(kind, student, teacher)
        loss.backward()

    return run


def _cnn_step(batch: int, device: torch.device) -> Callable[[], None]:
    """Forward+backward of a Nature-DQN network on random frames (context for the loss timings)."""
    net = nn.Sequential(
        nn.Conv2d(4, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(), nn.Conv2d(64, 64, 3, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, 18),
    ).to(device)  # fmt: skip
    frames = torch.rand(batch, 4, 84, 84, device=device)

    def run() -> None:
        for param in net.parameters():
            param.grad = None
        net(frames).logsumexp(-1).mean().backward()

    return run


def _time_cpu(run: Callable[[], None], repeats: int) -> float:
    """Median wall time in seconds of `repeats` calls after a warm-up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_cuda_graph(run: Callable[[], None], repeats: int) -> float:
    """Median time in seconds of CUDA-graph replays of `run` (captured after side-stream warm-up)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def main() -> None:
    """Run the grid and print (and optionally save) the cc/ce time ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write results to this JSON file")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    parser.add_argument("--cnn", action="store_true", help="also time a Nature-DQN forward+backward per batch size")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("CUDA requested but not available")
        name, timer = torch.cuda.get_device_name(device), _time_cuda_graph
    else:
        name, timer = f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)", _time_cpu
    timing = "CUDA graph replay" if device.type == "cuda" else "wall clock"
    print(f"device: {args.device} / {name}; torch {torch.__version__}; timing {timing}")
    cnn = {b: timer(_cnn_step(b, device), min(args.repeats, 3)) for b in BATCHES} if args.cnn else {}
    header = f"{'K':>3} {'B':>5} {'ce ms':>9} {'cc ms':>9} {'cc/ce':>7}"
    print(header + (f" {'cnn ms':>9} {'cc/cnn':>7}" if cnn else ""))
    rows = []
    for k in KS:
        for batch in BATCHES:
            student, teacher = _inputs(batch, k, device)
            t_ce = timer(_step("ce", student, teacher), args.repeats)
            t_cc = timer(_step("cc", student, teacher), args.repeats)
            row = {"K": k, "B": batch, "ce_s": t_ce, "cc_s": t_cc, "ratio": t_cc / t_ce}
            line = f"{k:>3} {batch:>5} {t_ce * 1e3:9.3f} {t_cc * 1e3:9.3f} {t_cc / t_ce:7.1f}"
            if cnn:
                row.update(cnn_s=cnn[batch], cc_over_cnn=t_cc / cnn[batch])
                line += f" {cnn[batch] * 1e3:9.1f} {t_cc / cnn[batch]:7.3f}"
            rows.append(row)
            print(line, flush=True)
    if args.json:
        meta = {"device": args.device, "device_name": name, "torch": torch.__version__}
        write_json(Path(args.json), {**meta, "threads": torch.get_num_threads(), "results": rows})


if __name__ == "__main__":
    main()
