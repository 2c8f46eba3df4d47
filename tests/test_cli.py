"""The CLI shell: help texts, config validation (exit 2 naming the key), doctor, run folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actormimic.cli import build_parser, main
from actormimic.config import ConfigError, DistillConfig, ExpertsConfig, QuickstartConfig, dump_config, load_config
from actormimic.distill import batch_shares, resolve_weights
from actormimic.runtime import RunError

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("train-experts", "distill", "evaluate", "quickstart", "doctor")


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert f"actormimic {command}" in text
    parser = build_parser()
    assert "train-experts" in parser.format_help()


def test_console_script_help_runs_in_a_subprocess() -> None:
    result = subprocess.run([sys.executable, "-m", "actormimic", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0
    assert all(command in result.stdout for command in COMMANDS)


def test_train_experts_help_says_what_a_step_is(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train-experts", "--help"])
    assert "frame-skip" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("overrides", "key", "allowed"),
    [
        (["lrr=0.1"], "lrr", "did you mean lr"),
        (["batch_size=many"], "batch_size", "an integer"),
        (["lr=-1"], "lr", "> 0.0"),
        (["preset=atari"], "preset", "nature, machado, minatar"),
        (["eval.episodes=0"], "eval.episodes", ">= 1"),
        (["dueling=3"], "dueling", "true or false"),
        (["batch_size=64", "replay_capacity=32"], "batch_size", "at most replay_capacity"),
        (["preset=minatar", "num_envs=4", "replay_capacity=2000", "batch_size=1998"], "batch_size",
         "at most 1996, what a full replay of 2000 over 4 envs can sample"),
        (["steps=-5"], "steps", ">= 1"),
    ],
)
def test_bad_values_name_the_key(overrides: list[str], key: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(ExpertsConfig, None, overrides)
    assert f" {key}" in str(error.value) and allowed in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "key", "allowed"),
    [
        (["games=[Pong, Breakout]", "batch_size=64", "replay_capacity=40"], "batch_size", "at most replay_capacity"),
        (["games=[Pong, Breakout, Asterix]", "batch_size=2"], "batch_size", "at least one sample per game"),
        (["game_weights={Pong: 0}"], "game_weights.Pong", "> 0"),
    ],
)
def test_bad_distill_values_name_the_key(overrides: list[str], key: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(DistillConfig, None, overrides)
    assert f" {key}" in str(error.value) and allowed in str(error.value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=8), st.integers(1, 256))
def test_batch_shares_fill_the_batch_in_proportion(weights: list[float], batch_size: int) -> None:
    games = [f"g{i}" for i in range(len(weights))]
    if batch_size < len(games):
        return
    config = DistillConfig(games=games, batch_size=batch_size, replay_capacity=1000,
                           game_weights=dict(zip(games, weights)))
    shares = batch_shares(config)
    assert sum(shares.values()) == batch_size and min(shares.values()) >= 1
    exact = [w / sum(weights) * batch_size for w in weights]
    if min(exact) >= 1:
        assert all(abs(shares[g] - x) < 1 for g, x in zip(games, exact))
    for g, h in zip(games, games[1:]):
        if config.game_weights[g] == config.game_weights[h]:
            assert abs(shares[g] - shares[h]) <= 1


def test_game_weights_follow_the_resolved_game_names() -> None:
    games = ["Pong", "Breakout"]
    assert resolve_weights({"PongNoFrameskip-v4": 3.0}, games) == {"Pong": 3.0}
    config = DistillConfig(games=games, batch_size=32, game_weights=resolve_weights({"pong": 3.0}, games))
    assert batch_shares(config) == {"Pong": 24, "Breakout": 8}
    for unknown in ("Asterix", "Foo"):
        with pytest.raises(RunError, match=rf"game_weights.{unknown}: .*allowed: Pong, Breakout"):
            resolve_weights({unknown: 1.0}, games)


def test_bad_config_file_exits_2_naming_file_key_and_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("games: [MinAtar/Breakout]\npreset: minatar\ngamma: 1.5\n")
    code = main(["train-experts", "--config", str(config), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(config) in err and "gamma" in err and "1.5" in err and "<= 1.0" in err
    assert not (tmp_path / "run").exists(), "no work may start on a bad config"


def test_unknown_key_in_file_and_wrong_type_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("loss: cc\ntemprature: 2\n")
    assert main(["distill", "--config", str(config), "--out", str(tmp_path / "s")]) == 2
    assert "temprature" in capsys.readouterr().err
    assert main(["distill", "--set", "temperature=hot", "--out", str(tmp_path / "s")]) == 2
    assert "temperature" in capsys.readouterr().err


def test_unknown_game_exits_2_with_close_matches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train-experts", "--games", "Breakuot", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "Breakout" in capsys.readouterr().err


def test_cli_flags_override_the_file(tmp_path: Path) -> None:
    config = load_config(ExpertsConfig, ROOT / "configs" / "smoke.yaml", ["steps=123", "eval.episodes=4"])
    assert config.steps == 123 and config.eval.episodes == 4 and config.games == ["MinAtar/Breakout"]


def test_every_shipped_config_loads() -> None:
    kinds = {"experts": ExpertsConfig, "distill": DistillConfig}
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        cls = kinds.get(path.parent.name, QuickstartConfig if path.name.startswith("quickstart") else ExpertsConfig)
        config = load_config(cls, path)
        assert load_config(cls, None, []) is not None
        assert dump_config(config)


def test_resolved_config_round_trips_through_yaml(tmp_path: Path) -> None:
    config = load_config(DistillConfig, None, ["loss=cc", "game_weights={Pong: 2.0}", "eval.interval=7"])
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_config(config))
    assert load_config(DistillConfig, saved) == config


def test_doctor_reports_versions_and_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for name in ("torch", "gymnasium", "ale_py", "stable_baselines3", "Atari ROMs", "device (auto)", "CPU cores"):
        assert name in out


def test_doctor_fails_when_a_requirement_is_missing(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import actormimic.doctor as doctor

    monkeypatch.setattr(doctor, "REQUIRED", doctor.REQUIRED + ("a_module_that_is_not_there",))
    assert main(["doctor"]) == 2
    captured = capsys.readouterr()
    assert "a_module_that_is_not_there" in captured.err and "MISSING" in captured.out


def test_run_folder_is_not_silently_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "something").write_text("precious")
    code = main(["train-experts", "--config", str(ROOT / "configs" / "smoke.yaml"), "--out", str(out)])
    assert code == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "something").read_text() == "precious"

