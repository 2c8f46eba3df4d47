"""Environment layer: presets, game names/action sets, and vectorised ALE / MinAtar envs.

This package must not import ``actormimic`` or ``agents``.
"""

from .games import (
    ALE_ACTION_NAMES,
    MINATAR_GAMES,
    action_index_map,
    game_action_ids,
    is_minatar,
    list_games,
    resolve_game,
    safe_name,
    union_actions,
)
from .presets import PRESETS, Preset, get_preset
from .vector import Finished, StepResult, VectorEnv, make_vector

__all__ = [
    "ALE_ACTION_NAMES",
    "Finished",
    "MINATAR_GAMES",
    "PRESETS",
    "Preset",
    "StepResult",
    "VectorEnv",
    "action_index_map",
    "game_action_ids",
    "get_preset",
    "is_minatar",
    "list_games",
    "make_vector",
    "resolve_game",
    "safe_name",
    "union_actions",
]
