"""Game names and action sets.

Canonical game ids
------------------
* ALE games: the bare CamelCase name as gymnasium's ``ALE/<Name>-v5`` uses it
  ("Pong", "Breakout", "SpaceInvaders", "MsPacman", "TicTacToe3D").
* MinAtar games: ``"MinAtar/<Name>"`` ("MinAtar/Breakout", "MinAtar/SpaceInvaders").

Actions
-------
Every game exposes its actions as ALE action ids (ints 0..17, ``ale_py.Action`` values), in
the order of the backend's action set, so that one student can cover several games with a
union of actions. MinAtar's actions ``n, l, u, r, d, f`` map to NOOP=0, LEFT=4, UP=2,
RIGHT=3, DOWN=5, FIRE=1.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Iterable, Sequence

from .presets import Preset, get_preset

__all__ = [
    "ALE_ACTION_NAMES",
    "MINATAR_GAMES",
    "MINATAR_ACTION_TO_ALE",
    "resolve_game",
    "is_minatar",
    "safe_name",
    "ale_rom_id",
    "minatar_env_name",
    "list_games",
    "check_preset_game",
    "game_action_ids",
    "minatar_action_indices",
    "union_actions",
    "action_index_map",
]

#: ALE action id -> name (ale_py.Action order).
ALE_ACTION_NAMES: tuple[str, ...] = (
    "NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT",
    "DOWNLEFT", "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE",
    "DOWNRIGHTFIRE", "DOWNLEFTFIRE",
)

#: MinAtar module name -> canonical id.
MINATAR_GAMES: dict[str, str] = {
    "asterix": "MinAtar/Asterix",
    "breakout": "MinAtar/Breakout",
    "freeway": "MinAtar/Freeway",
    "seaquest": "MinAtar/Seaquest",
    "space_invaders": "MinAtar/SpaceInvaders",
}

#: MinAtar's action_map is ['n', 'l', 'u', 'r', 'd', 'f']; index -> ALE id.
MINATAR_ACTION_TO_ALE: tuple[int, ...] = (0, 4, 2, 3, 5, 1)

_MINATAR_PREFIX = "minatar/"


def _key(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


@functools.lru_cache(maxsize=None)
def _ale_tables() -> tuple[dict[str, str], dict[str, str]]:
    """(normalized key -> canonical name, canonical name -> ROM id) over ALE's shipped ROMs."""
    from ale_py import roms

    key_to_name: dict[str, str] = {}
    name_to_rom: dict[str, str] = {}
    for rom in roms.get_all_rom_ids():
        name = rom.title().replace("_", "")  # same rule as ale_py's gymnasium registration
        key_to_name[_key(rom)] = name
        name_to_rom[name] = rom
    return key_to_name, name_to_rom


_MINATAR_KEYS = {_key(m): canon for m, canon in MINATAR_GAMES.items()}


def _strip_decorations(s: str) -> str:
    s = s.strip()
    if s.lower().startswith("ale/"):
        s = s[4:]
    s = re.sub(r"-v\d+$", "", s)
    s = re.sub(r"(NoFrameskip|Deterministic)$", "", s)
    return s


def resolve_game(name: str) -> str:
    """Canonical game id for any common spelling.

    ALE: "Pong", "pong", "ALE/Pong-v5", "PongNoFrameskip-v4", "space_invaders" -> "SpaceInvaders".
    MinAtar: "MinAtar/breakout", "minatar/space_invaders", "MinAtar/SpaceInvaders-v1"
    -> "MinAtar/SpaceInvaders". Unknown names raise ``ValueError`` with close matches.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"game name must be a non-empty string, got {name!r}")
    raw = name.strip()
    if raw.lower().startswith(_MINATAR_PREFIX):
        base = _strip_decorations(raw[len(_MINATAR_PREFIX):])
        k = _key(base)
        if k in _MINATAR_KEYS:
            return _MINATAR_KEYS[k]
        close = difflib.get_close_matches(k, list(_MINATAR_KEYS), n=3, cutoff=0.5)
        cands = [_MINATAR_KEYS[c] for c in close]
        known = ", ".join(MINATAR_GAMES.values())
        hint = f"; did you mean {', '.join(cands)}?" if cands else ""
        raise ValueError(f"unknown MinAtar game {name!r} (known: {known}){hint}")

    key_to_name, _ = _ale_tables()
    k = _key(_strip_decorations(raw))
    if k in key_to_name:
        return key_to_name[k]
    close = difflib.get_close_matches(k, list(key_to_name), n=5, cutoff=0.6)
    cands = [key_to_name[c] for c in close]
    # A MinAtar game named without its prefix is a common slip: suggest both.
    if k in _MINATAR_KEYS:
        cands.append(_MINATAR_KEYS[k])
    hint = f"; did you mean {', '.join(cands)}?" if cands else ""
    raise ValueError(f"unknown game {name!r}{hint}")


def is_minatar(game: str) -> bool:
    """True for MinAtar games (any accepted spelling)."""
    return resolve_game(game).startswith("MinAtar/")


def safe_name(game: str) -> str:
    """Canonical id with "/" replaced by "-" (folder names, TensorBoard tags)."""
    return resolve_game(game).replace("/", "-")


def ale_rom_id(game: str) -> str:
    """ALE ROM id (snake_case, e.g. "space_invaders") of an ALE game."""
    canon = resolve_game(game)
    if canon.startswith("MinAtar/"):
        raise ValueError(f"{canon} is a MinAtar game, not an ALE ROM")
    return _ale_tables()[1][canon]


def minatar_env_name(game: str) -> str:
    """MinAtar module name (e.g. "space_invaders") of a MinAtar game."""
    canon = resolve_game(game)
    for mod, c in MINATAR_GAMES.items():
        if c == canon:
            return mod
    raise ValueError(f"{canon} is not a MinAtar game")


def list_games(platform: str = "ale") -> list[str]:
    """Canonical ids of all games of a platform ("ale" or "minatar")."""
    if platform == "minatar":
        return list(MINATAR_GAMES.values())
    if platform == "ale":
        return sorted(_ale_tables()[1])
    raise ValueError(f"unknown platform {platform!r}")


def check_preset_game(game: str, preset: "str | Preset") -> tuple[str, Preset]:
    """Resolve both; ``ValueError`` if the preset's platform does not match the game's."""
    canon = resolve_game(game)
    p = get_preset(preset)
    game_minatar = canon.startswith("MinAtar/")
    if game_minatar != p.is_minatar:
        kind = "MinAtar" if game_minatar else "ALE"
        raise ValueError(
            f"preset {p.name!r} (platform {p.platform!r}) cannot build {kind} game {canon!r}"
        )
    return canon, p


@functools.lru_cache(maxsize=None)
def _ale_action_set(rom: str, full: bool) -> tuple[int, ...]:
    import ale_py
    from ale_py import roms

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.loadROM(roms.get_rom_path(rom))
    acts = ale.getLegalActionSet() if full else ale.getMinimalActionSet()
    return tuple(int(a.value) for a in acts)


@functools.lru_cache(maxsize=None)
def minatar_action_indices(module: str, full: bool) -> tuple[int, ...]:
    """MinAtar action indices (into n,l,u,r,d,f) of a game's action set, in MinAtar's order."""
    if full:
        return tuple(range(6))
    from .minatar import import_minatar

    env = import_minatar().Environment(module, sticky_action_prob=0.0)
    return tuple(int(a) for a in env.minimal_action_set())


def game_action_ids(game: str, preset: "str | Preset") -> tuple[int, ...]:
    """ALE action ids of a game's action set under a preset, in the backend's order.

    Index ``i`` of an agent's output for this game means ALE action ``game_action_ids(...)[i]``.
    """
    canon, p = check_preset_game(game, preset)
    if p.is_minatar:
        idx = minatar_action_indices(minatar_env_name(canon), p.full_action_space)
        return tuple(MINATAR_ACTION_TO_ALE[i] for i in idx)
    return _ale_action_set(ale_rom_id(canon), p.full_action_space)


def union_actions(action_sets: Iterable[Sequence[int]]) -> tuple[int, ...]:
    """Sorted union of several games' ALE action ids."""
    out: set[int] = set()
    for s in action_sets:
        for a in s:
            a = int(a)
            if not 0 <= a < len(ALE_ACTION_NAMES):
                raise ValueError(f"invalid ALE action id {a}")
            out.add(a)
    return tuple(sorted(out))


def action_index_map(union: Sequence[int], game_actions: Sequence[int]) -> list[int]:
    """For each of a game's actions, its index in ``union`` (to gather a student's logits)."""
    pos = {int(a): i for i, a in enumerate(union)}
    if len(pos) != len(union):
        raise ValueError(f"union has duplicate actions: {tuple(union)}")
    missing = [int(a) for a in game_actions if int(a) not in pos]
    if missing:
        names = [ALE_ACTION_NAMES[a] if 0 <= a < len(ALE_ACTION_NAMES) else str(a) for a in missing]
        raise ValueError(f"game actions {missing} ({', '.join(names)}) are not in the union {tuple(union)}")
    return [pos[int(a)] for a in game_actions]
