"""Tests for actormimic.runtime: the CPU thread tuner (a fake clock stands in for the machine), file writing."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from actormimic import runtime
from actormimic.loop import Every, RunClock, UpdateCredit
from actormimic.runtime import RunError, ThreadTuner, thread_tuner, write_json


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


def test_a_full_disk_keeps_the_old_file_and_names_the_path(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "eval.json"
    write_json(path, {"score": 1})
    real_write_bytes = Path.write_bytes

    def full_disk(self: Path, data: bytes) -> int:
        real_write_bytes(self, data[: len(data) // 2])  # part of it lands, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(RunError, match=rf"could not write {re.escape(str(path))}: .*No space left"):
        write_json(path, {"score": 2})
    monkeypatch.undo()
    assert path.read_text() == '{\n  "score": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]


def test_parallel_experts_take_one_gpu_each_round_robin(monkeypatch: pytest.MonkeyPatch) -> None:
    from actormimic.train_experts import gpu_per_job

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert gpu_per_job(3, torch.device("cuda")) == [0, 1, 0]
    assert gpu_per_job(3, torch.device("cpu")) == [None, None, None]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert gpu_per_job(2, torch.device("cuda")) == [None, None]  # one GPU: shared, as the device says


def test_stream_logs_raw_and_clipped_game_returns(tmp_path) -> None:
    """A finished Atari game (rewards clipped) is logged raw and clipped; a MinAtar one (no clipping) raw only."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from actormimic.loop import GameStream
    from actormimic.replay import ReplayBuffer
    from actormimic.runtime import Monitor
    from envs import make_vector

    monitor = Monitor(tmp_path, "test", "nature", 100, interval=1e9)
    for game, preset in (("SpaceInvaders", "nature"), ("MinAtar/Breakout", "minatar")):
        env = make_vector(game, preset, 1, seed=0)
        frame = (env.frame_channels, *env.obs_shape[1:])
        stream = GameStream(env, ReplayBuffer(10_000, 1, frame, env.preset.frame_stack), torch.device("cpu"))
        stream.reset(seed=0)
        for step in range(5000):
            stream.send(torch.zeros(1, dtype=torch.int64), np.zeros(1, dtype=np.int64))
            stream.recv(monitor, step)
            if monitor.scores.get(game):
                break
        stream.close()
    monitor.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/SpaceInvaders/episode_return_raw", "train/SpaceInvaders/episode_return_clipped",
            "train/MinAtar-Breakout/episode_return_raw"} <= tags
    assert "train/MinAtar-Breakout/episode_return_clipped" not in tags


FAULTS_PER_UPDATE = """
import resource, sys, torch
from agents.networks import QNetwork
from actormimic.runtime import select_device
if sys.argv[1] == "kept":
    select_device("cpu", 1)
torch.set_num_threads(1)
net = QNetwork("nature", (4, 84, 84), 6)
obs = torch.randint(0, 255, (32, 4, 84, 84), dtype=torch.uint8)
def update():
    net(obs).sum().backward()
for _ in range(10):  # the heap still grows for a few updates (up to ~120 first-touch faults per update
    update()          # over the next 20 after 3 warm-ups; 0-40 over 40 after 10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    update()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_select_device_stops_every_update_from_faulting_its_memory_in_again() -> None:
    """A Nature-CNN update at batch 32 allocates ~20 MB (~5,000 pages); glibc's default malloc hands part of it
    back to the kernel and faults it in again on the next update (200-2,200 faults per update, varying from
    process to process); after select_device almost nothing is faulted in (each variant in a fresh process)."""
    def faults(variant: str) -> float:
        done = subprocess.run([sys.executable, "-c", FAULTS_PER_UPDATE, variant], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parents[1])
        return float(done.stdout.split()[-1])

    assert faults("kept") < 100, faults("default")


def test_update_credit_carries_the_fractional_remainder() -> None:
    credit = UpdateCredit(0.25)
    assert sum(credit.earn(3) for _ in range(100)) == 75  # 300 steps at 0.25 updates per step
    assert UpdateCredit(2.0).earn(4) == 8


def test_every_fires_once_per_crossed_multiple_without_drift() -> None:
    every = Every(10)
    assert [s for s in range(4, 100, 4) if every(s)] == [12, 20, 32, 40, 52, 60, 72, 80, 92]
    assert every.fired_at == 92
    resumed = Every(10, start=25)
    assert [s for s in (28, 30, 33, 40) if resumed(s)] == [30, 40]
    assert not any(Every(0)(s) for s in range(0, 100, 7))


def test_stream_stores_the_payload_of_the_observation_acted_in() -> None:
    """The payload (a teacher's Q-values in distill) sampled with a transition is payload(batch.obs), not that of
    the next observation."""
    import numpy as np
    import torch

    from actormimic.loop import GameStream
    from actormimic.replay import ReplayBuffer
    from envs import make_vector

    env = make_vector("MinAtar/Breakout", "minatar", 2, seed=0)
    frame = (env.frame_channels, *env.obs_shape[1:])
    payload = lambda obs: obs.flatten(1).float()  # noqa: E731  (identifies the frame exactly)
    replay = ReplayBuffer(1000, 2, frame, env.preset.frame_stack, payload=payload,
                          payload_shape=(int(np.prod(env.obs_shape)),))
    stream = GameStream(env, replay, torch.device("cpu"))
    stream.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(100):
        actions = rng.integers(0, env.n_actions, 2)
        stream.send(torch.as_tensor(actions), actions)
        stream.recv(None, 0)
    stream.close()
    batch = replay.sample(256, torch.Generator().manual_seed(0))
    torch.testing.assert_close(batch.payload, payload(batch.obs))


def test_progress_line_says_the_time_left(tmp_path, fake_clock: list[float], capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    """Steps left at the smoothed recent rate, or the time limit's seconds when that is sooner."""
    monitor = runtime.Monitor(tmp_path, "Pong", "nature", 10_000, interval=10.0)
    fake_clock[0] = 10.0
    rates = monitor.progress(1_000, 250)  # 100 steps/s: 9,000 steps left take 1m30s
    assert rates["perf/steps_per_s"] == 100 and rates["perf/updates_per_s"] == 25
    fake_clock[0] = 20.0
    monitor.progress(4_000, 1_000)  # 300 steps/s, smoothed with the window before to 200: 6,000 left take 30s
    fake_clock[0] = 30.0
    monitor.progress(4_000, 1_000, seconds_left=12.0)  # stalled (rate 100 after smoothing: 1m00s), limit sooner
    monitor.close()
    still = runtime.Monitor(tmp_path / "still", "Pong", "nature", 10_000, interval=10.0)
    fake_clock[0] = 40.0
    still.progress(0, 0, "eps 1.000")  # no step yet: no rate to tell
    still.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[Pong] step 1,000/10,000 (10.0%, 1m30s left) 100 steps/s 25 updates/s")
    assert "(40.0%, 30s left)" in lines[1] and "(40.0%, 12s left)" in lines[2]
    assert "(0.0%, ? left)" in lines[3] and "eps 1.000 | raw score (nature, last 20 games): n/a" in lines[3]
    assert [runtime.duration(s) for s in (0.4, 59.6, 200, 3_725, float("inf"))] == ["0s", "1m00s", "3m20s", "1h02m",
                                                                                     "?"]


def test_run_clock_counts_the_seconds_trained_before_a_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("actormimic.loop.time.perf_counter", lambda: now[0])
    clock = RunClock(1.0, spent=50.0)  # a 1-minute limit, 50 s of it used before the run was interrupted
    assert clock.seconds_left() == 10.0 and not clock.expired()
    now[0] += 10.0
    counters = {"step": 800}
    clock.record(counters)
    assert clock.expired() and clock.seconds_left() == 0.0 and counters["seconds"] == 60.0
    assert counters["throughput"] == {"steps_after_learning_starts": 0, "seconds_after_learning_starts": 0.0}
    assert RunClock(0.0).seconds_left() is None and not RunClock(0.0).expired()
