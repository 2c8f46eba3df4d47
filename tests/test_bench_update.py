"""scripts/bench_update.py counts exactly the arithmetic of one DQN update (checked by hand)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

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


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPT.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_update_variants_are_the_same_double_dqn_update() -> None:
    """The benchmark's candidate forms of the update compute DQN's loss and gradients."""
    variants = _load("bench_update_variants")
    batch = variants.random_batch(6, torch.device("cpu"))
    grads = {}
    for variant in ("default", "merged-online", "parallel"):  # parallel: the default's code path without CUDA
        agent = variants.make_agent(variant, torch.device("cpu"))
        loss, q_mean = agent._td_loss(agent._batch_tensors(batch))
        loss.backward()
        grads[variant] = (loss.detach(), q_mean, [p.grad.clone() for p in agent.online.parameters()])
    loss_a, q_a, g_a = grads["default"]
    for variant in ("merged-online", "parallel"):
        loss_b, q_b, g_b = grads[variant]
        torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(q_b, q_a, rtol=1e-5, atol=1e-6)
        for a, b in zip(g_a, g_b):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_variants_script_writes_a_row_per_setting(tmp_path: Path) -> None:
    variants = _load("bench_update_variants")
    out = tmp_path / "rows.json"
    variants.main(["--device", "cpu", "--variants", "default", "merged-online", "plain", "--batch", "4", "--count",
                   "1", "2", "--seconds", "0.05", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["variant"], r["updates_per_call"]) for r in rows] == [
        ("default", 1), ("default", 2), ("merged-online", 1), ("merged-online", 2), ("plain", 1), ("plain", 2)]
    assert all(r["update_us"] > 0 and r["graphed"] is False for r in rows)
    assert rows[0]["ratio_to_default"] == 1.0 and rows[2]["ratio_to_default"] > 0
    assert "drift_from_default" not in rows[0] and all(r["drift_from_default"] < 1e-5 for r in rows[2:4])
    assert "drift_from_default" not in rows[4]  # plain DQN computes another target: not a candidate
    assert variants.make_agent("plain", torch.device("cpu")).double is False


def test_variants_script_records_a_failing_candidate_and_goes_on(tmp_path: Path, monkeypatch) -> None:
    variants = _load("bench_update_variants")
    measure = variants.measure

    def fails_for_tf32(variant, *args):  # noqa: ANN001, ANN202
        if variant == "tf32":
            raise RuntimeError("capture failed")
        return measure(variant, *args)

    monkeypatch.setattr(variants, "measure", fails_for_tf32)
    out = tmp_path / "rows.json"
    variants.main(["--device", "cpu", "--variants", "default", "tf32", "merged-online", "--batch", "4", "--count",
                   "1", "--seconds", "0.01", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["default", "tf32", "merged-online"]
    assert rows[1]["error"] == "RuntimeError: capture failed" and "update_us" in rows[2]
