"""Plumbing shared by the training loops: device, seeding, run folders, logging, progress, signals."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import signal
import sys
import time
from collections import deque
from pathlib import Path
from types import FrameType
from typing import Any, Mapping

import numpy as np
import torch

from actormimic.config import dump_config


class RunError(RuntimeError):
    """A problem the user can fix (bad input, missing file); the CLI exits with code 2."""


class Interrupted(Exception):
    """The run stopped on SIGINT/SIGTERM after saving a checkpoint; the CLI exits with code 130."""


def select_device(name: str, cpu_threads: int | None = None) -> torch.device:
    """'auto' -> cuda when present, else cpu; 'cuda' without a GPU is an error.

    On the CPU, `cpu_threads` >= 1 sets torch's thread count; 0 starts with one thread and leaves
    the choice to a `ThreadTuner` (see `thread_tuner`).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device cuda was requested but torch sees no CUDA device (use --device auto or cpu)")
    if name == "cpu" and cpu_threads is not None:
        torch.set_num_threads(max(1, cpu_threads))
    keep_freed_memory()
    return torch.device(name)


FREED_MEMORY_KEPT = {"kept": False}  # whether keep_freed_memory() took effect in this process


def keep_freed_memory() -> bool:
    """Stop glibc's malloc from returning freed blocks of up to 32 MiB to the kernel (for the rest of the
    process); False where this is not glibc.

    By default glibc serves each large block (a convolution's activations, a replay batch, a vector env's
    observations) with a fresh mmap, or trims the heap top soon after it is freed, so every update
    page-faults its memory in again: ~35,000 faults/s in a Nature-CNN trainer on the CPU.  Fixed
    thresholds keep that memory for reuse.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        FREED_MEMORY_KEPT["kept"] = bool(libc.mallopt(m_mmap_threshold, 32 << 20)
                                         and libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        pass
    return FREED_MEMORY_KEPT["kept"]


class ThreadTuner:
    """Chooses torch's CPU thread count by timing the training loop itself.

    Each candidate runs for `trial_s` seconds; the one with the most agent steps per second is kept
    for `hold_s` seconds, then all are timed again.  Measured on the 2-core dev box (Nature-CNN
    update, 8 ALE envs): two threads make a training step 1.6x faster when the machine is otherwise
    idle, but 2.6x slower than one thread as soon as another busy process shares the cores (an
    OpenMP barrier waits for its descheduled thread), so no fixed choice is right.
    """

    def __init__(self, candidates: list[int], trial_s: float = 3.0, hold_s: float = 120.0) -> None:
        self.candidates = list(dict.fromkeys(candidates))
        self.trial_s, self.hold_s = trial_s, hold_s
        self.rates: dict[int, float] = {}
        self._trial = 0  # index of the candidate being timed; len(candidates) while holding the best
        self._since: float | None = None
        self._steps = 0
        torch.set_num_threads(self.candidates[0])

    @property
    def threads(self) -> int:
        """The thread count in use."""
        return torch.get_num_threads()

    def step(self, steps: int) -> None:
        """Count `steps` agent steps done since the previous call; switch threads when a phase ends."""
        now = time.perf_counter()
        if self._since is None:
            self._since = now
            return
        self._steps += steps
        elapsed = now - self._since
        if self._trial < len(self.candidates) and elapsed >= self.trial_s:
            self.rates[self.candidates[self._trial]] = self._steps / elapsed
            self._trial += 1
            if self._trial == len(self.candidates):
                torch.set_num_threads(max(self.rates, key=self.rates.__getitem__))
            else:
                torch.set_num_threads(self.candidates[self._trial])
        elif self._trial == len(self.candidates) and elapsed >= self.hold_s:
            self._trial = 0
            torch.set_num_threads(self.candidates[0])
        else:
            return
        self._since, self._steps = now, 0


def thread_tuner(device: torch.device, cpu_threads: int) -> ThreadTuner | None:
    """A tuner between 1 thread and all cores for `cpu_threads` 0 on a multi-core CPU, else None."""
    cores = os.cpu_count() or 1
    if device.type != "cpu" or cpu_threads != 0 or cores == 1:
        return None
    return ThreadTuner([1, cores])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state, for checkpoints."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def prepare_run_dir(path: str | Path, *, resume: bool, overwrite: bool, marker: str) -> Path:
    """Create the run folder; refuse to reuse a non-empty one unless resuming or overwriting."""
    path = Path(path)
    if resume and overwrite:
        raise RunError("--resume and --overwrite exclude each other")
    if resume:
        if not (path / marker).exists():
            raise RunError(f"--resume: {path / marker} does not exist (nothing to resume)")
        return path
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise RunError(f"run folder {path} is not empty: pass --resume to continue it or --overwrite to replace it")
        for child in sorted(path.rglob("*"), reverse=True):
            child.unlink() if child.is_file() or child.is_symlink() else child.rmdir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_config(config: Any, folder: Path) -> None:
    """Print the resolved config and save it as config.yaml in the run folder."""
    text = dump_config(config)
    print(f"resolved config ({folder / 'config.yaml'}):\n{text}", flush=True)
    write_text_atomic(folder / "config.yaml", text)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file atomically, as :func:`write_bytes_atomic` does."""
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a file via a temporary name and rename, creating missing parent folders.

    A failed write (a full disk, no permission) leaves any old file as it was, removes the temporary
    file and raises :class:`RunError` naming the path.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise RunError(f"could not write {path}: {error}") from error


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, indented."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


class StopRequested:
    """Turns SIGINT/SIGTERM into a flag the loop checks, so it can checkpoint and exit cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequested":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{signal.Signals(signum).name}: finishing the step, writing a checkpoint ...", file=sys.stderr)


def duration(seconds: float) -> str:
    """A time span for people: 45s, 3m20s, 1h02m; '?' when unknown (infinite)."""
    if not np.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Monitor:
    """TensorBoard scalars plus a throttled progress line (steps/s, updates/s, latest raw scores)."""

    def __init__(self, log_dir: Path, label: str, preset: str, total_steps: int, interval: float) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))
        self.label, self.preset, self.total, self.interval = label, preset, total_steps, interval
        self.scores: dict[str, deque[float]] = {}
        self._last_time = time.perf_counter()
        self._last_steps = 0
        self._last_updates = 0
        self._rate: float | None = None

    def episode(self, game: str, step: int, raw_return: float, length: int,
                clipped_return: float | None = None) -> None:
        """Record one finished full game: its raw score (the progress line's) and, when the preset clips
        rewards, the sum of its clipped rewards."""
        self.scores.setdefault(game, deque(maxlen=20)).append(raw_return)
        tag = game.replace("/", "-")
        self.writer.add_scalar(f"train/{tag}/episode_return_raw", raw_return, step)
        if clipped_return is not None:
            self.writer.add_scalar(f"train/{tag}/episode_return_clipped", clipped_return, step)
        self.writer.add_scalar(f"train/{tag}/episode_length", length, step)

    def scalars(self, values: Mapping[str, float | torch.Tensor], step: int) -> None:
        """Write scalars (0-dim tensors are synchronised here, not in the hot loop)."""
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), step)

    def due(self) -> bool:
        """True when the progress interval has elapsed."""
        return time.perf_counter() - self._last_time >= self.interval

    def progress(self, steps: int, updates: int, extra: str = "", seconds_left: float | None = None
                 ) -> dict[str, float]:
        """Print the progress line and log perf/ scalars; returns the rates. The time left is the steps left at the
        recent rate, or `seconds_left` (a run's time limit) if that is sooner."""
        now = time.perf_counter()
        elapsed = max(now - self._last_time, 1e-9)
        rates = {
            "perf/steps_per_s": (steps - self._last_steps) / elapsed,
            "perf/updates_per_s": (updates - self._last_updates) / elapsed,
        }
        rate = rates["perf/steps_per_s"]
        self._rate = rate if self._rate is None else 0.5 * (self._rate + rate)  # smooths the windows' noise
        left = (self.total - steps) / self._rate if self._rate > 0 else float("inf")
        if seconds_left is not None:
            left = min(left, seconds_left)
        if torch.cuda.is_available():
            rates["perf/gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        self._last_time, self._last_steps, self._last_updates = now, steps, updates
        self.scalars(rates, steps)
        scores = " ".join(
            f"{game}={np.mean(vals):.1f}" for game, vals in self.scores.items() if vals
        ) or "n/a"
        print(
            f"[{self.label}] step {steps:,}/{self.total:,} ({100 * steps / self.total:.1f}%, {duration(left)} left) "
            f"{rates['perf/steps_per_s']:,.0f} steps/s {rates['perf/updates_per_s']:,.0f} updates/s "
            f"{extra} | raw score ({self.preset}, last 20 games): {scores}",
            flush=True,
        )
        return rates

    def close(self) -> None:
        """Flush and close TensorBoard."""
        self.writer.close()
