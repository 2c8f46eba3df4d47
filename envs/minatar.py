"""MinAtar vector env: N ``minatar.Environment`` instances stepped in numpy.

* Each env is seeded with its own seed (``derive_seeds(seed, N)``) via
  ``Environment.seed``, which seeds both the game dynamics and MinAtar's sticky-action draw.
* Sticky actions are MinAtar's own (``Environment.act`` repeats the previous action with
  probability ``preset.sticky_action_prob``); difficulty ramping per the preset.
* Observations are channels-first uint8 0/1: ``(frame_stack * C, 10, 10)``; with a stack > 1
  frames are zero-padded after a reset, like the ALE backend.
* ``preset.frame_skip`` > 1 repeats the action (rewards summed, stops at a terminal);
  ``preset.max_episode_frames`` caps an episode in MinAtar steps.
* MinAtar games have no lives: ``lives`` is constant, so ``episodic_life`` has no effect.
* ``send`` stores the actions; the stepping happens in ``recv`` (pure Python/numpy, cheap).
"""

from __future__ import annotations

import logging

import numpy as np

from .games import MINATAR_ACTION_TO_ALE, minatar_action_indices, minatar_env_name
from .presets import Preset
from .vector import VectorEnv

__all__ = ["MinAtarVectorEnv", "import_minatar"]


def import_minatar():
    """Import ``minatar`` without its "Cannot import matplotlib/seaborn" warning."""
    prev = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        import minatar
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "MinAtar games need the 'minatar' package (pip install 'minatar>=1.0.15')"
        ) from e
    finally:
        logging.disable(prev)
    return minatar


class MinAtarVectorEnv(VectorEnv):
    def __init__(self, game: str, preset: Preset, num_envs: int, seed: int):
        super().__init__(game, preset, num_envs, seed)
        minatar = import_minatar()
        self._module = minatar_env_name(game)
        self._envs = [
            minatar.Environment(self._module,
                                sticky_action_prob=float(preset.sticky_action_prob),
                                difficulty_ramping=bool(preset.difficulty_ramping))
            for _ in range(self.num_envs)
        ]
        h, w, c = (int(x) for x in self._envs[0].state_shape())
        self.frame_channels = c
        self._stack = int(preset.frame_stack)
        self.obs_shape = (self._stack * c, h, w)
        self._frame_shape = (c, h, w)
        # index in the game's action set -> MinAtar action index (into n,l,u,r,d,f)
        self._minatar_actions = np.asarray(
            minatar_action_indices(self._module, bool(preset.full_action_space)), dtype=np.int64)
        assert tuple(MINATAR_ACTION_TO_ALE[i] for i in self._minatar_actions) == self.action_ids
        self._skip = int(preset.frame_skip)
        self._cap = int(preset.max_episode_frames)
        self._steps = np.zeros(self.num_envs, dtype=np.int64)  # MinAtar steps in this episode
        self._obs = np.zeros((self.num_envs, self._stack) + self._frame_shape, dtype=np.uint8)
        self._actions: np.ndarray | None = None
        self._zero_lives = np.zeros(self.num_envs, dtype=np.int32)

    def _frame(self, i: int) -> np.ndarray:
        return self._envs[i].state().transpose(2, 0, 1)  # bool (C, H, W) view

    def _reset_one(self, i: int) -> None:
        self._envs[i].reset()
        self._steps[i] = 0
        self._obs[i] = 0
        self._obs[i, -1] = self._frame(i)

    def _out(self) -> np.ndarray:
        return self._obs.reshape((self.num_envs,) + self.obs_shape).copy()

    def _backend_reset(self, seeds):
        for i in range(self.num_envs):
            if seeds is not None:
                self._envs[i].seed(int(seeds[i]))
            self._reset_one(i)
        return self._out(), self._zero_lives

    def _backend_send(self, actions):
        self._actions = self._minatar_actions[actions]

    def _backend_recv(self):
        n = self.num_envs
        raw = np.zeros(n, dtype=np.float32)
        term = np.zeros(n, dtype=bool)
        trunc = np.zeros(n, dtype=bool)
        if self._stack > 1:
            self._obs[:, :-1] = self._obs[:, 1:]
        acts = self._actions
        resets = self._needs_reset
        for i in range(n):
            if resets[i]:
                self._reset_one(i)
                continue
            env = self._envs[i]
            a = int(acts[i])
            r_sum = 0.0
            done = False
            for _ in range(self._skip):
                r, done = env.act(a)
                r_sum += float(r)
                self._steps[i] += 1
                if done or (self._cap > 0 and self._steps[i] >= self._cap):
                    break
            raw[i] = r_sum
            term[i] = bool(done)
            trunc[i] = self._cap > 0 and self._steps[i] >= self._cap
            self._obs[i, -1] = self._frame(i)
        self._actions = None
        return self._out(), raw, term, trunc, self._zero_lives

    def _backend_close(self):
        self._envs = []
