"""Typed run configs: dataclasses loaded from YAML, overridden from the CLI, validated up front.

Every field may carry metadata: ``choices`` (allowed values), ``min``/``max`` (inclusive bounds),
``gt`` (strict lower bound) and ``help``. Any problem raises :class:`ConfigError`, whose message
names the file, the dotted key, the bad value and what is allowed; the CLI turns it into exit 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from envs import get_preset

Device = Literal["auto", "cpu", "cuda"]


class ConfigError(ValueError):
    """An invalid config: unknown key, wrong type or impossible value."""


def option(default: Any, help: str, **checks: Any) -> Any:
    """A dataclass field with a help text and validation metadata (choices, min, max, gt)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **checks})
    return field(default=default, metadata={"help": help, **checks})


def cpu_threads_option() -> Any:
    """The `cpu_threads` field shared by the training configs."""
    return option(0, "torch threads on the CPU (0: timed while training, 1 or all cores, whichever runs faster; "
                  "all cores stall when other processes compete for them)", min=0)


def env_threads_option() -> Any:
    """The `env_threads` field shared by the training configs."""
    return option(0, "ALE worker threads per game's vector env (0: one per env, at most one per CPU core; "
                  "MinAtar steps on the main thread)", min=0)


def time_limit_option() -> Any:
    """The `time_limit_minutes` field shared by the training configs."""
    return option(0.0, "stop learning after this many minutes of training, counted across --resume (0: no limit)",
                  min=0.0)


def precision_option() -> Any:
    """The `precision` field shared by the training configs."""
    return option("fp32", "torso arithmetic: fp32, or bf16 autocast (Q head, loss and Adam stay fp32; pays off "
                  "on GPUs and on CPUs with AVX512-BF16/AMX)", choices=("fp32", "bf16"))


# --------------------------------------------------------------------------------------------
# Config sections


@dataclass
class EvalConfig:
    """Periodic evaluation during training (separate envs, the protocol's settings)."""

    interval: int = option(250_000, "agent steps per game between evaluations (0: only at the end)", min=0)
    episodes: int = option(10, "full-game episodes per periodic evaluation", min=1)
    final_episodes: int = option(30, "episodes of the final evaluation written to eval.json; an expert's scores "
                                 "its best periodic and its last network, keeps the better as expert-best.pt and "
                                 "reports its score on as many fresh episodes (0: none; score the checkpoint later "
                                 "with `actormimic evaluate`)", min=0)
    num_envs: int = option(8, "parallel evaluation envs", min=1)
    protocol: str = option("auto", "evaluation protocol (auto: minatar for MinAtar, machado for the machado "
                           "preset, else nature)", choices=("auto", "nature", "machado", "minatar"))
    epsilon: float = option(-1.0, "evaluation epsilon (-1: the protocol's own)", min=-1.0, max=1.0)


@dataclass
class ExpertsConfig:
    """`actormimic train-experts`: one Double-DQN expert per game."""

    games: list[str] = option(["Breakout"], "games to train, one expert each")
    preset: str = option("nature", "environment preset", choices=("nature", "machado", "minatar"))
    steps: int = option(10_000_000, "agent steps per game (one step = frame-skip frames)", min=1)
    seed: int = option(0, "random seed", min=0)
    device: str = option("auto", "training device", choices=("auto", "cpu", "cuda"))
    num_envs: int = option(8, "parallel training envs per game", min=1)
    env_threads: int = env_threads_option()
    cpu_threads: int = cpu_threads_option()
    arch: str = option("auto", "Q-network torso (auto: from the observation shape)",
                       choices=("auto", "nature", "minatar"))
    dueling: bool = option(False, "dueling Q head")
    replay_capacity: int = option(1_000_000, "replay size in transitions", min=1)
    n_step: int = option(1, "n-step returns", min=1, max=20)
    batch_size: int = option(32, "minibatch size", min=1)
    learning_starts: int = option(80_000, "agent steps before the first update", min=0)
    updates_per_step: float = option(0.25, "gradient updates per agent step (replay ratio / batch)", gt=0.0)
    lr: float = option(1e-4, "Adam learning rate", gt=0.0)
    adam_eps: float = option(1.5e-4, "Adam epsilon", gt=0.0)
    gamma: float = option(0.99, "discount", min=0.0, max=1.0)
    loss: str = option("huber", "TD loss", choices=("huber", "mse"))
    max_grad_norm: float = option(10.0, "gradient-norm clip", gt=0.0)
    double: bool = option(True, "Double DQN target")
    target_update: str = option("hard", "target network update", choices=("hard", "polyak"))
    target_update_interval: int = option(1_000, "agent steps between hard target updates", min=1)
    tau: float = option(0.005, "Polyak rate per update", gt=0.0, max=1.0)
    epsilon_start: float = option(1.0, "initial exploration epsilon", min=0.0, max=1.0)
    epsilon_end: float = option(0.01, "final exploration epsilon", min=0.0, max=1.0)
    epsilon_fraction: float = option(0.1, "fraction of steps over which epsilon decays", min=0.0, max=1.0)
    cuda_graph: bool = option(True, "capture the update and the replay sampling in CUDA graphs on GPU")
    precision: str = precision_option()
    time_limit_minutes: float = time_limit_option()
    checkpoint_interval: int = option(500_000, "agent steps between resume checkpoints", min=1)
    log_interval: float = option(10.0, "seconds between progress lines and perf scalars", gt=0.0)
    init_from: str = option("", "student.pt whose torso initialises each expert (transfer)")
    eval: EvalConfig = field(default_factory=EvalConfig)

    def check(self) -> None:
        """Cross-field checks."""
        _check_replay(self.batch_size, self.replay_capacity, self.num_envs, self.preset, self.n_step)


@dataclass
class DistillConfig:
    """`actormimic distill`: one multitask student from the experts' Boltzmann policies."""

    games: list[str] = option(["Pong", "Breakout"], "games the student learns")
    experts: dict[str, str] = option({}, "GAME: expert file (expert.pt or SB3 .zip), or set --experts DIR")
    preset: str = option("nature", "environment preset", choices=("nature", "machado", "minatar"))
    steps: int = option(1_000_000, "agent steps per game (all games step together)", min=1)
    seed: int = option(0, "random seed", min=0)
    device: str = option("auto", "training device", choices=("auto", "cpu", "cuda"))
    num_envs: int = option(4, "parallel envs per game", min=1)
    env_threads: int = env_threads_option()
    cpu_threads: int = cpu_threads_option()
    loss: str = option("ce", "distillation loss", choices=("ce", "cc", "kl", "mse", "seed-cc"))
    temperature: float = option(1.0, "softmax temperature T of the teacher policy softmax(Q/T)", gt=0.0)
    temperature_on: str = option("teacher", "T divides the teacher only (Actor-Mimic) or both (seed paper)",
                                 choices=("teacher", "both"))
    target_smoothing: float = option(0.0, "mix this share of the uniform policy into the teacher's target "
                                     "softmax(Q/T), pulling it off the simplex faces (0: off; mse ignores it)",
                                     min=0.0, max=0.5)
    feature_beta: float = option(0.0, "weight of Actor-Mimic feature regression (0: off)", min=0.0)
    per_game_heads: bool = option(False, "one output head per game instead of the union of actions")
    replay_capacity: int = option(100_000, "replay size per game in transitions", min=1)
    batch_size: int = option(32, "minibatch size (all games together)", min=1)
    game_weights: dict[str, float] = option({}, "share of each game in a minibatch (default equal)")
    learning_starts: int = option(10_000, "agent steps per game before the first update", min=0)
    updates_per_step: float = option(0.25, "updates per agent step of one game", gt=0.0)
    lr: float = option(1e-4, "Adam learning rate", gt=0.0)
    adam_eps: float = option(1e-8, "Adam epsilon", gt=0.0)
    max_grad_norm: float = option(10.0, "gradient-norm clip", gt=0.0)
    epsilon_start: float = option(0.1, "student's initial exploration epsilon", min=0.0, max=1.0)
    epsilon_end: float = option(0.1, "student's final exploration epsilon", min=0.0, max=1.0)
    epsilon_fraction: float = option(0.1, "fraction of steps over which epsilon decays", min=0.0, max=1.0)
    schedule: str = option("mixed", "mixed: every minibatch mixes all games; blocks: round-robin blocks",
                           choices=("mixed", "blocks"))
    block_steps: int = option(100_000, "agent steps per game block (schedule: blocks)", min=1)
    cuda_graph: bool = option(True, "capture the update and the replay sampling in CUDA graphs on GPU")
    precision: str = precision_option()
    time_limit_minutes: float = time_limit_option()
    checkpoint_interval: int = option(250_000, "agent steps between resume checkpoints", min=1)
    log_interval: float = option(10.0, "seconds between progress lines and perf scalars", gt=0.0)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def check(self) -> None:
        """Cross-field checks."""
        _require(len(self.games) > 0, "games", self.games, "at least one game")
        _check_replay(self.batch_size, self.replay_capacity, self.num_envs, self.preset, 1)  # one game's replay
        if self.schedule == "mixed":
            _require(self.batch_size >= len(self.games), "batch_size", self.batch_size,
                     f"at least one sample per game ({len(self.games)}) with schedule: mixed")
        for game, weight in self.game_weights.items():  # the keys are matched to the games in distill()
            _require(weight > 0, f"game_weights.{game}", weight, "> 0")


@dataclass
class QuickstartConfig:
    """`actormimic quickstart`: experts, a CE student and a CC student, evaluated side by side."""

    experts: ExpertsConfig = field(default_factory=ExpertsConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    losses: list[str] = option(["ce", "cc"], "student losses to compare")

    def check(self) -> None:
        """Cross-section checks."""
        for loss in self.losses:
            _require(loss in ("ce", "cc", "kl", "mse", "seed-cc"), "losses", loss, "ce, cc, kl, mse, seed-cc")


# --------------------------------------------------------------------------------------------
# Loading, overriding, validating


def load_config(cls: type, path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Any:
    """Build `cls` from a YAML file and `key.sub=value` overrides, then validate everything."""
    source = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{source}: config file not found") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{source}: not valid YAML: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of keys to values")
        data = loaded or {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. lr=3e-4 or eval.episodes=5)")
        _set_dotted(data, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    try:
        return _build(cls, data, "")
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


# what a resumed run may change: its length, its pace of logging and saving, where it runs, the final evaluation
RESUMABLE = ("steps", "time_limit_minutes", "log_interval", "checkpoint_interval", "device", "cpu_threads",
             "env_threads", "cuda_graph", "eval.num_envs", "eval.final_episodes")


def check_resumed_config(saved: Any, config: Any, source: str | Path) -> None:
    """ConfigError naming every key outside RESUMABLE where `config` differs from the run's `saved` config."""
    old, new = _flatten(config_to_dict(saved)), _flatten(config_to_dict(config))
    changed = [key for key in sorted(old.keys() | new.keys())
               if key not in RESUMABLE and old.get(key, "<unset>") != new.get(key, "<unset>")]
    if changed:
        details = "; ".join(f"{key}: {old.get(key, '<unset>')!r} there, {new.get(key, '<unset>')!r} now"
                            for key in changed)
        raise ConfigError(f"--resume continues the run of {source} with its own config, but {details} "
                          f"(leave out --config to use it; a resume may change only {', '.join(RESUMABLE)})")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'eval': {'episodes': 5}} -> {'eval.episodes': 5}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain YAML-ready data."""
    return dataclasses.asdict(config)


def dump_config(config: Any) -> str:
    """The config as YAML text (what gets printed and saved with a run)."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set data['a']['b'] = value for key 'a.b'."""
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
    node[last] = value


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Construct dataclass `cls` from a mapping, checking keys, types and ranges."""
    if not isinstance(data, dict):
        raise ConfigError(f"key {prefix.rstrip('.') or '<top>'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown key {prefix}{key}{hint} (allowed: {', '.join(fields)})")
    values = {}
    for name, spec in fields.items():
        if name not in data:
            continue
        key = prefix + name
        if dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], data[name], key + ".")
        else:
            values[name] = _check_value(key, data[name], hints[name], spec.metadata)
    config = cls(**values)
    if hasattr(config, "check"):
        try:
            config.check()
        except ConfigError as error:
            raise ConfigError(f"{prefix}{error}") from None
    return config


def _check_value(key: str, value: Any, hint: Any, meta: typing.Mapping[str, Any]) -> Any:
    """Coerce `value` to the annotated type and apply the field's checks."""
    value = _coerce(key, value, hint)
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        _fail(key, value, f"one of {', '.join(map(str, choices))}")
    if "min" in meta and value < meta["min"]:
        _fail(key, value, f">= {meta['min']}")
    if "max" in meta and value > meta["max"]:
        _fail(key, value, f"<= {meta['max']}")
    if "gt" in meta and value <= meta["gt"]:
        _fail(key, value, f"> {meta['gt']}")
    return value


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check `value` against a simple type hint (bool, int, float, str, list[T], dict[str, T])."""
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1]
        if isinstance(value, str):
            value = [part for part in value.replace(",", " ").split() if part]
        if not isinstance(value, (list, tuple)):
            _fail(key, value, "a list")
        return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            _fail(key, value, "a mapping")
        return {str(k): _coerce(f"{key}.{k}", v, item) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"config field {key}: unions are not supported")
    if hint is bool:
        if not isinstance(value, bool):
            _fail(key, value, "true or false")
        return value
    if hint in (int, float) and isinstance(value, str):
        value = _parse_number(value)  # YAML 1.1 reads "1e-4" as a string
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            _fail(key, value, "an integer")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            _fail(key, value, "a number")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            _fail(key, value, "a string")
        return str(value)
    raise TypeError(f"config field {key}: unsupported type {hint}")


def _parse_number(text: str) -> Any:
    """A number from text like '1e-4' or '10_000', else the text unchanged."""
    try:
        return int(text.replace("_", ""))
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _fail(key: str, value: Any, allowed: str) -> typing.NoReturn:
    """Raise the standard message: key, bad value, what is allowed."""
    raise ConfigError(f"key {key}: invalid value {value!r} (allowed: {allowed})")


def sampleable_transitions(capacity: int, num_envs: int, stack: int, n_step: int) -> int:
    """How many transitions a full replay can sample: its rows whose frame stack and n-step window are both
    complete (actormimic.replay), times the env columns."""
    return (capacity // num_envs - stack - n_step + 1) * num_envs


def _check_replay(batch_size: int, capacity: int, num_envs: int, preset: str, n_step: int) -> None:
    """A replay of `capacity` over `num_envs` env columns that can hold `batch_size` sampleable transitions."""
    _require(batch_size <= capacity, "batch_size", batch_size, f"at most replay_capacity ({capacity})")
    _require(capacity >= num_envs * (n_step + 8), "replay_capacity", capacity,
             f"at least num_envs * (n_step + 8) = {num_envs * (n_step + 8)}")
    sampleable = sampleable_transitions(capacity, num_envs, get_preset(preset).frame_stack, n_step)
    _require(batch_size <= sampleable, "batch_size", batch_size,
             f"at most {sampleable}, what a full replay of {capacity} over {num_envs} envs can sample")


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Cross-field check helper."""
    if not ok:
        _fail(key, value, allowed)
