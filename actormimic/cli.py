"""The `actormimic` command line: train-experts, distill, evaluate, quickstart, doctor.

Exit codes: 0 success, 1 the run failed, 2 bad input (config, arguments, files), 130 interrupted
(after writing a resume checkpoint).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from actormimic.config import ConfigError, DistillConfig, ExpertsConfig, QuickstartConfig, load_config

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


def _add_run_options(parser: argparse.ArgumentParser, default_out: str) -> None:
    """Options shared by the training commands."""
    parser.add_argument("--config", metavar="FILE", help="YAML config (see configs/); defaults otherwise")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                        help="override a config key, e.g. --set lr=3e-4 --set eval.episodes=5 (repeatable)")
    parser.add_argument("--games", nargs="+", metavar="G", help="games, e.g. Pong Breakout MinAtar/Breakout")
    parser.add_argument("--steps", type=int, metavar="N",
                        help="agent steps per game (one agent step = frame-skip emulator frames)")
    parser.add_argument("--seed", type=int, metavar="S", help="random seed")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="training device (default auto)")
    parser.add_argument("--out", default=default_out, metavar="DIR", help=f"run folder (default {default_out})")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue the run saved in --out with its own config (OUT/config.yaml); only its "
                       "length, logging, checkpoint interval, device, threads and final evaluation may change")
    group.add_argument("--overwrite", action="store_true", help="delete a non-empty --out first")


def _flag_overrides(args: argparse.Namespace, names: Sequence[str]) -> list[str]:
    """Turn explicit CLI flags into config overrides (flags win over --set and the file)."""
    overrides = list(args.overrides)
    for name in names:
        value = getattr(args, name, None)
        if value is None:
            continue
        if isinstance(value, list):
            value = "[" + ", ".join(f"'{v}'" for v in value) + "]"
        overrides.append(f"{name}={value}")
    return overrides


def _config_file(args: argparse.Namespace) -> str | None:
    """--config, or on --resume without it the run's own config.yaml."""
    saved = Path(args.out) / "config.yaml"
    return args.config or (str(saved) if args.resume and saved.is_file() else None)


def _cmd_train_experts(args: argparse.Namespace) -> None:
    overrides = _flag_overrides(args, ["games", "steps", "seed", "device"])
    if args.init_from:
        overrides.append(f"init_from={args.init_from}")
    config = load_config(ExpertsConfig, _config_file(args), overrides)
    from actormimic.train_experts import train_experts

    train_experts(config, args.out, resume=args.resume, overwrite=args.overwrite, parallel=args.parallel)


def _cmd_distill(args: argparse.Namespace) -> None:
    overrides = _flag_overrides(args, ["games", "steps", "seed", "device", "loss", "temperature"])
    config = load_config(DistillConfig, _config_file(args), overrides)
    from actormimic.distill import distill

    distill(config, args.out, experts=args.experts or [], resume=args.resume, overwrite=args.overwrite)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from actormimic.evaluation import evaluate_checkpoint

    evaluate_checkpoint(
        args.checkpoint, games=args.games, protocol=args.protocol, episodes=args.episodes, epsilon=args.epsilon,
        seed=args.seed, out=args.out, device=args.device, human_table=args.human_table,
    )


def _cmd_quickstart(args: argparse.Namespace) -> None:
    from actormimic.quickstart import quickstart

    config_path = _config_file(args)
    if config_path is None:
        from actormimic.quickstart import default_config_path

        config_path = default_config_path()
    config = load_config(QuickstartConfig, config_path, args.overrides)
    quickstart(config, args.out, resume=args.resume, overwrite=args.overwrite)


def _cmd_doctor(args: argparse.Namespace) -> None:
    from actormimic.doctor import doctor

    doctor()


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="actormimic",
        description="Actor-Mimic on Atari: DQN experts, a multitask student distilled with "
        "cross-entropy or the continuous-categorical likelihood, and evaluation under named protocols.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train-experts", help="train one DQN expert per game",
                       description="Train one Double-DQN expert per game; writes OUT/<game>/expert.pt, "
                       "expert-best.pt, tb/ and eval.json. --steps counts agent steps per game "
                       "(one agent step = the preset's frame skip in emulator frames).")
    _add_run_options(p, "runs/experts")
    p.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="train N games at once as separate processes, one GPU each (round-robin) when several "
                        "are visible (default 1: one after another)")
    p.add_argument("--init-from", metavar="STUDENT", help="initialise each expert's torso from a student.pt (transfer)")
    p.set_defaults(func=_cmd_train_experts)

    p = sub.add_parser("distill", help="distill a multitask student from the experts",
                       description="Distill one multitask Actor-Mimic student from the experts' Boltzmann "
                       "policies softmax(Q/T) with the chosen loss; writes OUT/student.pt, tb/ and eval.json.")
    _add_run_options(p, "runs/student")
    p.add_argument("--experts", nargs="+", metavar="DIR|GAME=PATH",
                   help="a train-experts output folder or one of RL-Zoo's dqn-<Game>NoFrameskip-v4.zip files, or "
                   "GAME=PATH pairs (expert.pt or SB3 DQN .zip)")
    p.add_argument("--loss", choices=("ce", "cc", "kl", "mse", "seed-cc"), help="distillation loss")
    p.add_argument("--temperature", type=float, metavar="T", help="teacher temperature T in softmax(Q/T)")
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("evaluate", help="score an expert or a student under a named protocol",
                       description="Evaluate a checkpoint (expert.pt or student.pt) under a named protocol and "
                       "print a Markdown table of raw, human-normalized and expert-normalized scores.")
    p.add_argument("checkpoint", help="expert.pt, expert-best.pt, student.pt or a Stable-Baselines3 DQN .zip")
    p.add_argument("--games", nargs="+", metavar="G", help="narrow a student to these games")
    p.add_argument("--protocol", choices=("auto", "nature", "machado", "minatar"), default="auto",
                   help="nature: 30 no-ops, eps 0.05, 18k-frame cap; machado: sticky 0.25, eps 0.01, "
                   "108k frames; minatar: MinAtar defaults; auto: minatar for MinAtar, machado for a machado-trained "
                   "checkpoint, else nature")
    p.add_argument("--episodes", type=int, metavar="N", help="episodes per game (default: the protocol's, 30)")
    p.add_argument("--epsilon", type=float, metavar="E", help="override the protocol's epsilon")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="evaluation seed (results are deterministic)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--human-table", choices=("agent57", "nature"), default="agent57",
                   help="human reference scores for human-normalized scores")
    p.add_argument("--out", metavar="FILE.json", help="write the results as JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("quickstart", help="the whole pipeline end to end on a small budget",
                       description="Train experts, distill a CE and a CC student, evaluate all of them and "
                       "print one table. On CPU: MinAtar games, about 16 minutes on 2 cores.")
    p.add_argument("--config", metavar="FILE", help="quickstart config (default: configs/quickstart[-gpu].yaml)")
    p.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override a key, e.g. --set experts.steps=100000")
    p.add_argument("--out", default="runs/quickstart", metavar="DIR", help="output folder")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="reuse finished stages in --out")
    group.add_argument("--overwrite", action="store_true", help="delete a non-empty --out first")
    p.set_defaults(func=_cmd_quickstart)

    p = sub.add_parser("doctor", help="check the installation (versions, ROMs, device)",
                       description="Print versions of torch, gymnasium, ale-py, stable-baselines3, whether the "
                       "Atari ROMs and MinAtar are found, the device and the core count; exit 2 if something "
                       "required is missing.")
    p.set_defaults(func=_cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    from actormimic.runtime import Interrupted, RunError
    from agents.checkpoint import CheckpointError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    handlers: list[tuple[type[BaseException], int, Callable[[BaseException], str]]] = [
        (ConfigError, EXIT_BAD_INPUT, lambda e: f"config error: {e}"),
        (CheckpointError, EXIT_BAD_INPUT, lambda e: f"checkpoint error: {e}"),
        (RunError, EXIT_BAD_INPUT, lambda e: f"error: {e}"),
        (Interrupted, EXIT_INTERRUPTED, lambda e: f"interrupted: {e}"),
    ]
    try:
        args.func(args)
    except tuple(h[0] for h in handlers) as error:
        code, message = next((c, m(error)) for t, c, m in handlers if isinstance(error, t))
        print(f"actormimic {args.command}: {message}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print(f"actormimic {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def run(argv: Any = None) -> None:
    """`python -m actormimic` support."""
    sys.exit(main(argv))
