"""scripts/bench_update.py counts exactly the arithmetic of one DQN update (checked by hand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_update.py"


def test_update_flops_match_the_nature_cnn_by_hand() -> None:
    spec = importlib.util.spec_from_file_location("bench_update", SCRIPT)
    bench_update = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_update)
    update, flops = bench_update.dqn_update("fp32")
    update()  # the timed closure runs another update
    macs = {"conv1": 20 * 20 * 32 * (8 * 8 * 4), "conv2": 9 * 9 * 64 * (4 * 4 * 32), "conv3": 7 * 7 * 64 * (3 * 3 * 64),
            "fc": 3136 * 512, "head": 512 * bench_update.ACTIONS}
    forward = sum(macs.values())
    # online forward + target forward + backward (weight gradients everywhere, input gradients except conv1's)
    per_sample = forward + forward + (2 * forward - macs["conv1"])
    assert flops == 2 * bench_update.BATCH * per_sample
