"""Vectorised environments with one interface for ALE (C++ threads) and MinAtar (numpy).

Semantics shared by both backends (see :class:`StepResult`):

* Autoreset is "next step" (gymnasium ``AutoresetMode.NEXT_STEP``): the step that ends a game
  (game over or cap) returns that game's last observation; on the following step the env
  ignores the action, resets, and returns the first observation of the new game with
  ``autoreset=True`` and reward 0.
* A life loss under ``preset.episodic_life`` sets ``terminated`` (a learning terminal) but
  neither ``game_over`` nor a reset: the game, the frame stack and the score go on, and the
  next step is a normal step.
* After a reset the frame stack is zero-padded before the first frame (like gymnasium's
  ``FrameStackObservation(padding_type="zero")``): obs[-1] is the first frame, the rest 0.

What ``ale_py.vector_env.AtariVectorEnv`` (ale-py 0.12.1) does itself, and why we don't use
some of its options:

* ``episodic_life=True`` there marks a life loss as terminal AND autoresets the whole game on
  the next step (``reset_game``, lives back to full, no-ops, FIRE), i.e. the agent never plays
  past its first life. We therefore always pass ``episodic_life=False, life_loss_info=False``
  and derive life losses here from ``info["lives"]`` (vectorised).
* ``reward_clipping`` is always off there; we clip here so that raw scores stay available.
* ``max_num_frames_per_episode`` counts emulator frames (the ALE setting), so the preset's
  ``max_episode_frames`` is passed unchanged. It counts every emulator frame of the game,
  including the no-op / FIRE start frames (as gymnasium's ``ALE/*-v5`` does), and the last step
  before the cap may run fewer than ``frame_skip`` frames.
* Its no-op start draws ``U{0..noop_max-1}`` no-ops (minus one when it presses FIRE), whereas
  gymnasium's ``AtariPreprocessing`` draws ``U{1..noop_max}``.
* Its reset observation is already zero-padded (verified in tests), so no fix-up is needed.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .games import check_preset_game, game_action_ids
from .presets import Preset

__all__ = ["Finished", "StepResult", "VectorEnv", "AtariVectorEnvLayer", "make_vector", "derive_seeds"]


class Finished(NamedTuple):
    """One full game (score episode) that ended: its env, raw score, length in agent steps, and the sum of
    its learning rewards (the clipped score when the preset clips rewards); both sums run across life losses."""

    index: int
    raw_return: float
    length: int
    clipped_return: float


@dataclass
class StepResult:
    """One vector step; every array has length ``num_envs``.

    Attributes:
        obs: (N, *obs_shape) uint8. On an autoreset step, the first observation of a new game.
        reward: float32 learning reward (``sign(raw_reward)`` when the preset clips).
        raw_reward: float32 unclipped game score change.
        terminated: learning terminal: game over, or a life loss when ``preset.episodic_life``.
        truncated: the episode cap was reached at this step.
        autoreset: this step was a reset step (action ignored, reward 0).
        game_over: a full game (score episode) ended at this step (game over or cap).
        finished: a :class:`Finished` record for each game that ended at this step.
        life_loss: at least one life was lost at this step (whatever the preset).
    """

    obs: np.ndarray
    reward: np.ndarray
    raw_reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    autoreset: np.ndarray
    game_over: np.ndarray
    finished: list[Finished] = field(default_factory=list)
    life_loss: np.ndarray | None = None


def derive_seeds(seed: int, n: int) -> np.ndarray:
    """``n`` decorrelated non-negative int32 seeds from one seed (deterministic)."""
    ss = np.random.SeedSequence(int(seed))
    return (ss.generate_state(n, dtype=np.uint32) & np.uint32(0x7FFFFFFF)).astype(np.int64)


class VectorEnv(abc.ABC):
    """Common interface. Subclasses set the attributes below and implement the hooks."""

    game: str
    preset: Preset
    num_envs: int
    action_ids: tuple[int, ...]
    n_actions: int
    obs_shape: tuple[int, int, int]
    frame_channels: int
    seed: int

    def __init__(self, game: str, preset: Preset, num_envs: int, seed: int) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.game = game
        self.preset = preset
        self.num_envs = int(num_envs)
        self.seed = int(seed)
        self.action_ids = game_action_ids(game, preset)
        self.n_actions = len(self.action_ids)
        self._was_reset = False
        self._pending = False
        self._closed = False
        n = self.num_envs
        self._needs_reset = np.zeros(n, dtype=bool)
        self._ep_return = np.zeros(n, dtype=np.float64)
        self._ep_clipped = np.zeros(n, dtype=np.float64)
        self._ep_length = np.zeros(n, dtype=np.int64)
        self._clip = bool(preset.clip_rewards)
        self._episodic_life = bool(preset.episodic_life)

    # ------------------------------------------------------------------ public API
    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset all envs. The first reset uses the constructor seed when ``seed`` is None;
        later ``reset()`` calls continue each env's random stream."""
        self._check_open()
        if self._pending:  # drain an outstanding send so the backend is in a clean state
            self._backend_recv()
            self._pending = False
        if seed is None and not self._was_reset:
            seed = self.seed
        if seed is not None:
            self.seed = int(seed)
        seeds = None if seed is None else derive_seeds(seed, self.num_envs)
        obs, lives = self._backend_reset(seeds)
        self._was_reset = True
        self._needs_reset[:] = False
        self._ep_return[:] = 0.0
        self._ep_clipped[:] = 0.0
        self._ep_length[:] = 0
        self._lives = lives
        return obs

    def send(self, actions: np.ndarray) -> None:
        """Start a step with ``actions`` (N,) ints: indices into this game's action set."""
        self._check_open()
        if not self._was_reset:
            raise RuntimeError("call reset() before send()/step()")
        if self._pending:
            raise RuntimeError("send() called twice without recv()")
        a = np.asarray(actions)
        if a.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {a.shape}")
        if a.dtype.kind not in "iu":
            raise TypeError(f"actions must be integers, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() >= self.n_actions):
            raise ValueError(f"actions must be in [0, {self.n_actions}), got {a.min()}..{a.max()}")
        self._backend_send(a)
        self._pending = True

    def recv(self) -> StepResult:
        """Finish the step started by :meth:`send`."""
        self._check_open()
        if not self._pending:
            raise RuntimeError("recv() without a preceding send()")
        obs, raw, term, trunc, lives = self._backend_recv()
        self._pending = False
        return self._postprocess(obs, raw, term, trunc, lives)

    def step(self, actions: np.ndarray) -> StepResult:
        self.send(actions)
        return self.recv()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._backend_close()

    def __enter__(self) -> "VectorEnv":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(game={self.game!r}, preset={self.preset.name!r}, "
                f"num_envs={self.num_envs}, n_actions={self.n_actions}, obs_shape={self.obs_shape})")

    # ------------------------------------------------------------------ shared bookkeeping
    def _postprocess(self, obs, raw, term, trunc, lives) -> StepResult:
        """Vectorised: autoreset flags, life losses, clipping, full-game returns."""
        auto = self._needs_reset
        if auto.any():
            raw[auto] = 0.0  # the reset step carries no reward
        life_loss = lives < self._lives
        life_loss &= ~auto
        self._lives = lives
        game_over = term | trunc
        terminated = (term | life_loss) if self._episodic_life else term
        reward = np.sign(raw) if self._clip else raw.copy()
        self._ep_return += raw
        self._ep_clipped += reward
        self._ep_length += ~auto
        finished: list[Finished] = []
        if game_over.any():
            idx = np.flatnonzero(game_over)
            finished = [Finished(int(i), float(self._ep_return[i]), int(self._ep_length[i]),
                                 float(self._ep_clipped[i])) for i in idx]
            self._ep_return[idx] = 0.0
            self._ep_clipped[idx] = 0.0
            self._ep_length[idx] = 0
        self._needs_reset = game_over.copy()  # callers may mutate the result's arrays
        return StepResult(obs=obs, reward=reward, raw_reward=raw, terminated=terminated,
                          truncated=trunc, autoreset=auto, game_over=game_over,
                          finished=finished, life_loss=life_loss)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("environment is closed")

    # ------------------------------------------------------------------ backend hooks
    @abc.abstractmethod
    def _backend_reset(self, seeds: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Reset all envs (seeded per env if ``seeds``); return (obs, lives int array)."""

    @abc.abstractmethod
    def _backend_send(self, actions: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _backend_recv(self):
        """Return (obs uint8, raw_reward float32 (writable), terminated bool (game over only),
        truncated bool, lives int array); autoreset rows carry the new game's first obs."""

    @abc.abstractmethod
    def _backend_close(self) -> None: ...


class AtariVectorEnvLayer(VectorEnv):
    """ALE games on ``ale_py.vector_env.AtariVectorEnv`` (C++ worker threads, C++ preprocessing),
    synchronous batches (batch_size == num_envs), results in env order."""

    def __init__(self, game: str, preset: Preset, num_envs: int, seed: int, *, num_threads: int = 0):
        from ale_py.vector_env import AtariVectorEnv
        from gymnasium.vector import AutoresetMode

        from .games import ale_rom_id

        super().__init__(game, preset, num_envs, seed)
        p = preset
        self.frame_channels = 1 if p.grayscale else 3
        self.obs_shape = (p.frame_stack * self.frame_channels, p.image_size, p.image_size)
        cap = int(p.max_episode_frames) if p.max_episode_frames > 0 else 0
        self._env = AtariVectorEnv(
            ale_rom_id(game),
            self.num_envs,
            batch_size=self.num_envs,
            num_threads=int(num_threads),
            thread_affinity_offset=-1,
            max_num_frames_per_episode=cap,
            repeat_action_probability=float(p.sticky_action_prob),
            full_action_space=bool(p.full_action_space),
            continuous=False,
            autoreset_mode=AutoresetMode.NEXT_STEP,
            img_height=int(p.image_size),
            img_width=int(p.image_size),
            grayscale=bool(p.grayscale),
            stack_num=int(p.frame_stack),
            frameskip=int(p.frame_skip),
            maxpool=bool(p.max_pool),
            noop_max=int(p.noop_max),
            episodic_life=False,  # handled here: the C++ option resets the game on life loss
            life_loss_info=False,  # life losses are derived from info["lives"]
            reward_clipping=False,  # clipped here; raw scores are kept
            use_fire_reset=bool(p.fire_reset),
        )
        self._ale = self._env.ale
        backend_ids = tuple(int(a.value) for a in self._ale.get_action_set())
        if backend_ids != self.action_ids:
            raise RuntimeError(f"action set mismatch for {game}: {backend_ids} vs {self.action_ids}")
        self._paddle = np.ones(self.num_envs, dtype=np.float32)
        self._order = np.arange(self.num_envs, dtype=np.int32)

    def _fix_obs(self, obs: np.ndarray) -> np.ndarray:
        if self.frame_channels == 1:
            return obs
        # RGB: (N, stack, H, W, 3) -> (N, stack*3, H, W)
        n, s, h, w, c = obs.shape
        return np.ascontiguousarray(obs.transpose(0, 1, 4, 2, 3).reshape(n, s * c, h, w))

    def _backend_reset(self, seeds):
        if seeds is None:
            obs, info = self._env.reset()
        else:
            obs, info = self._env.reset(seed=seeds)
        obs, info = self._reorder(obs, info)
        return self._fix_obs(obs), np.asarray(info["lives"])

    def _backend_send(self, actions):
        self._ale.send(actions, self._paddle)

    def _backend_recv(self):
        obs, reward, term, trunc, info = self._ale.recv()
        env_id = info["env_id"]
        if not np.array_equal(env_id, self._order):  # defensive; sync mode returns in order
            perm = np.argsort(env_id)
            obs, reward, term, trunc = obs[perm], reward[perm], term[perm], trunc[perm]
            lives = np.asarray(info["lives"])[perm]
        else:
            lives = info["lives"]
        return (self._fix_obs(obs), reward.astype(np.float32), term.astype(bool, copy=False),
                trunc.astype(bool, copy=False), lives)

    def _reorder(self, obs, info):
        env_id = np.asarray(info["env_id"])
        if np.array_equal(env_id, self._order):
            return obs, info
        perm = np.argsort(env_id)
        return obs[perm], {k: np.asarray(v)[perm] for k, v in info.items()}

    def _backend_close(self):
        self._env.close()
        self._ale = None
        self._env = None  # drop the C++ vector env (its threads stop on destruction)


def make_vector(game: str, preset: "str | Preset", num_envs: int, seed: int, *,
                num_threads: int = 0) -> VectorEnv:
    """Build ``num_envs`` copies of ``game`` under ``preset``, seeded deterministically.

    ``num_threads`` (ALE only): C++ worker threads; 0 = min(num_envs, CPU count).
    A preset of the wrong platform raises ``ValueError``.
    """
    canon, p = check_preset_game(game, preset)
    if p.is_minatar:
        from .minatar import MinAtarVectorEnv

        return MinAtarVectorEnv(canon, p, num_envs, seed)
    return AtariVectorEnvLayer(canon, p, num_envs, seed, num_threads=num_threads)
