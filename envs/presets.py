"""Environment presets: every preprocessing / protocol setting in one frozen record.

A :class:`Preset` is the single source of truth for how an environment is built. The vector
env passes *every* field explicitly to the backend (never relying on backend defaults), and
``Preset.to_dict()`` is what runs save next to checkpoints so that a teacher and its student
can be checked for protocol compatibility.

Presets
-------
``nature``  (Mnih et al. 2015 "DQN Nature" protocol, as implemented by the usual
            baselines / SB3 ``AtariWrapper`` stacks)
    * sticky actions 0 (deterministic emulator; stochasticity from no-op starts),
    * frame skip 4 with max-pool over the last two frames,
    * up to 30 no-ops at the start of each game (note: ALE's C++ vector env draws
      ``U{0, ..., noop_max-1}`` no-ops, gymnasium's ``AtariPreprocessing`` ``U{1, ..., noop_max}``),
    * 84x84 grayscale (INTER_AREA resize), stack of 4,
    * ``episodic_life=True``: a life loss is a *learning* terminal only; the game goes on
      (no reset, frame stack kept), the score episode continues,
    * 108,000-frame cap (30 min of play),
    * minimal action set,
    * rewards clipped to their sign for learning (raw scores are always reported),
    * ``fire_reset=True``: FIRE is pressed once at the start of every *game* (full reset) for
      games whose minimal action set contains FIRE. This is what the standard
      baselines/SB3 wrapper stacks do; DeepMind's original code did not. Because a life loss
      does not reset the game here, FIRE is *not* pressed automatically after a life loss -
      the agent must learn to press it (as with any sticky/no-reset protocol).

``machado``  (Machado et al. 2018, "Revisiting the ALE", recommended protocol)
    * sticky actions with probability 0.25 (the stochasticity source, so no no-op starts
      and no FIRE reset),
    * no life-loss signal: only game over ends an episode,
    * full 18-action set (the paper's recommendation: the agent should not be told which
      actions are meaningful),
    * full games capped at 108,000 frames (as in Dopamine's sticky-action setup).
    * Deviation, deliberate: Machado et al.'s own DQN baselines used frame skip 5; we keep
      frame skip 4 + max-pool and the 84x84x4 stack so that networks (and teachers) are
      interchangeable with the ``nature`` preset. Rewards are sign-clipped for learning.

``minatar``  (Young & Tian 2019 MinAtar defaults)
    * sticky actions 0.1 and difficulty ramping on (MinAtar's ``Environment`` defaults),
    * no frame skip, no max-pool, no no-ops, no FIRE reset, no life signal (MinAtar games
      have no lives), stack 1 (the MinAtar state already encodes motion in trail channels),
    * observations are the (C, 10, 10) 0/1 channels, no resize,
    * rewards not clipped (MinAtar rewards are already small integers),
    * minimal action set of each game (MinAtar's "v1" gym ids); the MinAtar paper's agents
      used all 6 actions - use ``dataclasses.replace(p, full_action_space=True)`` for that,
    * episode cap 27,000 MinAtar steps: MinAtar itself has no cap; we use the same number of
      *decisions* as Atari's 108,000 frames / frame skip 4, so evaluation always terminates.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["Preset", "PRESETS", "get_preset", "PLATFORMS"]

PLATFORMS = ("ale", "minatar")


@dataclass(frozen=True)
class Preset:
    """Every setting of an environment protocol. Immutable; derive variants with
    ``dataclasses.replace``.

    Attributes:
        name: preset name (free text for derived presets).
        sticky_action_prob: probability that the emulator repeats the previous action
            (ALE: per emulator frame; MinAtar: per MinAtar step, as MinAtar does).
        frame_skip: emulator frames per agent step (action repeat).
        max_pool: max-pool the last two frames of each skip (ALE only).
        noop_max: up to this many no-ops at the start of each game (0 = none).
        fire_reset: press FIRE once at the start of each game when FIRE is in the game's
            action set (ALE only).
        episodic_life: a life loss is a learning terminal (``terminated``) without resetting
            the game; the score episode continues until game over.
        full_action_space: full 18-action set (ALE) / all 6 actions (MinAtar) instead of the
            game's minimal set.
        max_episode_frames: per-game cap in emulator frames (ALE) or MinAtar steps; reaching it
            sets ``truncated``. 0 or negative disables the cap.
        clip_rewards: ``StepResult.reward`` is ``sign(raw_reward)``.
        frame_stack: number of stacked frames in an observation (zero-padded after a reset).
        grayscale: grayscale (1 channel per frame) vs RGB (3) for ALE.
        image_size: square observation side (ALE resize target; MinAtar is always 10).
        platform: "ale" or "minatar"; a preset only builds games of its platform.
        difficulty_ramping: MinAtar difficulty ramping (ignored for ALE).
    """

    name: str
    sticky_action_prob: float
    frame_skip: int
    max_pool: bool
    noop_max: int
    fire_reset: bool
    episodic_life: bool
    full_action_space: bool
    max_episode_frames: int
    clip_rewards: bool
    frame_stack: int
    grayscale: bool
    image_size: int = 84
    platform: str = "ale"
    difficulty_ramping: bool = True

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise ValueError(f"Preset.platform must be one of {PLATFORMS}, got {self.platform!r}")
        if not 0.0 <= float(self.sticky_action_prob) <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {self.sticky_action_prob}")
        for field in ("frame_skip", "frame_stack", "image_size"):
            v = getattr(self, field)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"Preset.{field} must be a positive int, got {v!r}")
        for field in ("noop_max", "max_episode_frames"):
            v = getattr(self, field)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"Preset.{field} must be an int, got {v!r}")
        if self.noop_max < 0:
            raise ValueError(f"Preset.noop_max must be >= 0, got {self.noop_max}")

    @property
    def is_minatar(self) -> bool:
        return self.platform == "minatar"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON/YAML serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preset":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown Preset fields: {sorted(unknown)}")
        return cls(**dict(d))


PRESETS: dict[str, Preset] = {
    "nature": Preset(
        name="nature",
        sticky_action_prob=0.0,
        frame_skip=4,
        max_pool=True,
        noop_max=30,
        fire_reset=True,
        episodic_life=True,
        full_action_space=False,
        max_episode_frames=108_000,
        clip_rewards=True,
        frame_stack=4,
        grayscale=True,
        image_size=84,
        platform="ale",
    ),
    "machado": Preset(
        name="machado",
        sticky_action_prob=0.25,
        frame_skip=4,
        max_pool=True,
        noop_max=0,
        fire_reset=False,
        episodic_life=False,
        full_action_space=True,
        max_episode_frames=108_000,
        clip_rewards=True,
        frame_stack=4,
        grayscale=True,
        image_size=84,
        platform="ale",
    ),
    "minatar": Preset(
        name="minatar",
        sticky_action_prob=0.1,
        frame_skip=1,
        max_pool=False,
        noop_max=0,
        fire_reset=False,
        episodic_life=False,
        full_action_space=False,
        max_episode_frames=27_000,
        clip_rewards=False,
        frame_stack=1,
        grayscale=False,
        image_size=10,
        platform="minatar",
        difficulty_ramping=True,
    ),
}


def get_preset(name: "str | Preset") -> Preset:
    """Preset by name (case-insensitive). A :class:`Preset` passes through unchanged."""
    if isinstance(name, Preset):
        return name
    if not isinstance(name, str):
        raise TypeError(f"preset must be a name or a Preset, got {type(name).__name__}")
    key = name.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    close = difflib.get_close_matches(key, list(PRESETS), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)}){hint}")
