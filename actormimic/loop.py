"""Building blocks shared by the expert and the student loops: one game's env-to-replay stream,
the replay-ratio credit and interval triggers."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from actormimic.replay import ReplayBuffer
from actormimic.runtime import Monitor
from envs import VectorEnv


class GameStream:
    """One game's vector env feeding its replay buffer, with the current observations on the device.

    `send_all` starts the env steps of all streams (the one host synchronisation of a step: fetching
    actions), so the caller can run updates while the env threads work; `recv` stores the transition (and the
    replay its payload, e.g. an expert's Q-values of the observation acted in).
    """

    def __init__(self, env: VectorEnv, replay: ReplayBuffer, device: torch.device):
        self.env, self.replay, self.device = env, replay, device
        self.game = env.game
        self.obs: torch.Tensor = torch.empty(0)
        self._actions: torch.Tensor | None = None
        pin = device.type == "cuda"
        self._host_obs = torch.empty((env.num_envs, *env.obs_shape), dtype=torch.uint8, pin_memory=pin)
        self._host_view = self._host_obs.numpy()

    def reset(self, seed: int) -> None:
        """Reset every env and start new episodes in the replay."""
        obs = self.env.reset(seed=seed)
        self.obs = self._to_device(obs)
        self.replay.start(self.obs)

    def send(self, actions: torch.Tensor, host_actions: np.ndarray) -> None:
        """Start stepping with `actions` (indices into the game's action set) and their host copy (`send_all`)."""
        self._actions = actions
        self.env.send(host_actions)

    def recv(self, monitor: Monitor | None, step: int) -> int:
        """Finish the step: move the new observations to the device, store the step (the replay takes its
        newest frames from the device copy), report finished games."""
        result = self.env.recv()
        self.obs = self._to_device(result.obs)
        self.replay.add(self._actions, result.reward, result.terminated, result.truncated, result.autoreset,
                        self.obs)
        if monitor is not None:
            clipped = self.env.preset.clip_rewards
            for ended in result.finished:
                monitor.episode(self.game, step, ended.raw_return, ended.length,
                                ended.clipped_return if clipped else None)
        return self.env.num_envs

    def _to_device(self, obs: np.ndarray) -> torch.Tensor:
        """Host-to-device copy through a pinned staging buffer (asynchronous on CUDA).

        The staging copy is numpy's, on this thread: torch's `copy_` of a batch this size runs on torch's
        OpenMP threads, which then spin-wait on the cores the env threads need (README, "Env threads and
        torch's OpenMP threads").  The buffer is rewritten only after the next action fetch has synchronised
        the stream, so the previous asynchronous copy out of it has finished."""
        if self.device.type == "cpu":
            return torch.from_numpy(obs)
        np.copyto(self._host_view, obs)
        return self._host_obs.to(self.device, non_blocking=True)

    def close(self) -> None:
        """Close the env."""
        self.env.close()


def send_all(streams: list[GameStream], actions: list[torch.Tensor]) -> None:
    """Start every stream's step, fetching all their actions in one host synchronisation."""
    host = torch.cat(actions).cpu().numpy()
    offsets = np.cumsum([len(a) for a in actions])[:-1]
    for stream, device_actions, host_actions in zip(streams, actions, np.split(host, offsets)):
        stream.send(device_actions, host_actions)


class UpdateCredit:
    """Turns agent steps into whole gradient updates at a fractional replay ratio."""

    def __init__(self, updates_per_step: float) -> None:
        self.rate, self.credit = updates_per_step, 0.0

    def earn(self, steps: int) -> int:
        """Add `steps` agent steps and return the number of updates now due."""
        self.credit += steps * self.rate
        due = int(self.credit)
        self.credit -= due
        return due


class Every:
    """Fires once each time a step counter crosses a multiple of `interval` (0: never)."""

    def __init__(self, interval: int, start: int = 0) -> None:
        self.interval = interval
        self.next = (start // interval + 1) * interval if interval > 0 else None
        self.fired_at: int | None = None  # the step of the last firing

    def __call__(self, step: int) -> bool:
        if self.next is None or step < self.next:
            return False
        self.next = (step // self.interval + 1) * self.interval
        self.fired_at = step
        return True


class RunClock:
    """Wall-clock limit of a run, counting the seconds it trained before it was resumed, and the env throughput
    measured once learning has started."""

    def __init__(self, limit_minutes: float, spent: float = 0.0) -> None:
        self.start = time.perf_counter() - spent
        self.limit = limit_minutes * 60 if limit_minutes > 0 else None
        self._learning: tuple[float, int] | None = None

    def spent(self) -> float:
        """Seconds of training so far, resumed runs' earlier ones included."""
        return time.perf_counter() - self.start

    def record(self, counters: dict[str, Any]) -> None:
        """Write the seconds spent and the throughput into a run's counters (saved with its checkpoints)."""
        counters["seconds"] = self.spent()
        counters["throughput"] = self.throughput(counters["step"])

    def expired(self) -> bool:
        """True when the time limit has passed."""
        return self.limit is not None and self.spent() >= self.limit

    def seconds_left(self) -> float | None:
        """Seconds until the time limit, or None without one."""
        return None if self.limit is None else max(0.0, self.limit - self.spent())

    def learning(self, step: int) -> None:
        """Note the step of the first update (idempotent)."""
        if self._learning is None:
            self._learning = (time.perf_counter(), step)

    def throughput(self, step: int) -> dict[str, float]:
        """Agent steps and seconds since the first update (what benchmarks compare)."""
        if self._learning is None:
            return {"steps_after_learning_starts": 0, "seconds_after_learning_starts": 0.0}
        started, first = self._learning
        return {"steps_after_learning_starts": step - first,
                "seconds_after_learning_starts": time.perf_counter() - started}
