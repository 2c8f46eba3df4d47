"""Tests for actormimic.runtime: the CPU thread tuner (a fake clock stands in for the machine), file writing."""

from __future__ import annotations

import pytest
import torch

from actormimic import runtime
from actormimic.runtime import ThreadTuner, thread_tuner, write_json


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A clock the test advances by hand; torch's thread count is restored afterwards."""
    now = [0.0]
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: now[0])
    threads = torch.get_num_threads()
    yield now
    torch.set_num_threads(threads)


def run(tuner: ThreadTuner, clock: list[float], seconds_per_step: dict[int, float], duration: float) -> list[int]:
    """Drive the tuner for `duration` fake seconds, one agent step per call; the thread counts seen."""
    seen = []
    end = clock[0] + duration
    while clock[0] < end:
        seen.append(tuner.threads)
        clock[0] += seconds_per_step[tuner.threads]
        tuner.step(1)
    return seen


def test_tuner_keeps_the_faster_count_and_re_times_it(fake_clock: list[float]) -> None:
    tuner = ThreadTuner([1, 2], trial_s=3.0, hold_s=60.0)
    idle = {1: 0.1, 2: 0.06}  # an idle machine: two threads faster
    seen = run(tuner, fake_clock, idle, 10.0)
    assert seen[0] == 1 and 2 in seen and tuner.threads == 2
    assert tuner.rates[2] > tuner.rates[1]
    busy = {1: 0.1, 2: 0.26}  # another process arrives: two threads 2.6x slower
    seen = run(tuner, fake_clock, busy, 70.0)
    assert tuner.threads == 1 and seen.count(2) > seen.count(1)  # held 2 until the re-timing, then chose 1
    assert set(run(tuner, fake_clock, busy, 50.0)) == {1}  # holds 1 until the next trial round


def test_tuner_only_for_auto_threads_on_a_multicore_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 4)
    threads = torch.get_num_threads()
    try:
        tuner = thread_tuner(torch.device("cpu"), 0)
        assert tuner is not None and tuner.candidates == [1, 4] and tuner.threads == 1
        assert thread_tuner(torch.device("cpu"), 2) is None
        assert thread_tuner(torch.device("cuda"), 0) is None
        monkeypatch.setattr(runtime.os, "cpu_count", lambda: 1)
        assert thread_tuner(torch.device("cpu"), 0) is None
    finally:
        torch.set_num_threads(threads)


def test_write_json_makes_missing_folders_and_leaves_no_temporary(tmp_path) -> None:
    path = tmp_path / "a" / "b" / "out.json"
    write_json(path, {"x": 1})
    write_json(path, {"x": 2})
    assert path.read_text() == '{\n  "x": 2\n}\n'
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_parallel_experts_take_one_gpu_each_round_robin(monkeypatch: pytest.MonkeyPatch) -> None:
    from actormimic.train_experts import gpu_per_job

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert gpu_per_job(3, torch.device("cuda")) == [0, 1, 0]
    assert gpu_per_job(3, torch.device("cpu")) == [None, None, None]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert gpu_per_job(2, torch.device("cuda")) == [None, None]  # one GPU: shared, as the device says
