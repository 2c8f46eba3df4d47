"""Replay throughput (transitions/s) of add and of sample at batch 32 and 256, for Atari and MinAtar shapes."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from actormimic.replay import ReplayBuffer
from actormimic.runtime import write_json

CASES = {
    "atari": {"frame_shape": (1, 84, 84), "stack": 4, "num_envs": 8, "actions": 18},
    "minatar": {"frame_shape": (10, 10, 10), "stack": 1, "num_envs": 8, "actions": 6},
}


def sync(device: torch.device) -> None:
    """Wait for queued device work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_case(case: dict, capacity: int, device: torch.device, seconds: float) -> dict[str, float]:
    """Fill a buffer once (timing add), then time sampling for about ``seconds`` per batch size."""
    n, c, stack = case["num_envs"], case["frame_shape"][0], case["stack"]
    first_pixels = lambda obs: obs.flatten(1)[:, :case["actions"]].float()  # noqa: E731  (a stand-in for Q-values)
    buf = ReplayBuffer(capacity, n, case["frame_shape"], stack, device, n_step=3, payload=first_pixels,
                       payload_shape=(case["actions"],))
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (16, n, stack * c, *case["frame_shape"][1:]), dtype=np.uint8)
    ends = rng.random((16, n)) < 0.02
    step = (rng.integers(0, case["actions"], n), rng.standard_normal(n).astype(np.float32))
    buf.start(obs[0])
    steps = buf.rows + 16
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        j = i % 16
        buf.add(*step, ends[j], np.zeros(n, bool), ends[j - 1], obs[j])
    sync(device)
    out = {"add": steps * n / (time.perf_counter() - t0), "len": len(buf)}
    g = torch.Generator(device).manual_seed(0)
    for batch in (32, 256):
        buf.sample(batch, g)
        sync(device)
        iters, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(10):
                buf.sample(batch, g)
            sync(device)
            iters += 10
        out[f"sample_{batch}"] = iters * batch / (time.perf_counter() - t0)
    return out


def main() -> None:
    """Run every case and print (and optionally save) transitions/s."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=1.0, help="timing window per sample batch size")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", default=None, help="write results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = {"device": str(device), "capacity": args.capacity, "threads": torch.get_num_threads()}
    for name, case in CASES.items():
        results[name] = bench_case(case, args.capacity, device, args.seconds)
        r = results[name]
        print(f"{name:8s} add {r['add']:>10,.0f}/s  sample@32 {r['sample_32']:>10,.0f}/s  "
              f"sample@256 {r['sample_256']:>10,.0f}/s  (n_step 3, len {r['len']:,})")
    if args.json:
        write_json(Path(args.json), results)


if __name__ == "__main__":
    main()
