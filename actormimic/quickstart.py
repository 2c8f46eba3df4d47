"""`actormimic quickstart`: experts -> CE and CC students -> one score table and learning curves."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from actormimic.config import QuickstartConfig, dump_config
from actormimic.distill import STUDENT, distill
from actormimic.reports import load_runs, plot_learning_curves, score_table, to_csv, to_markdown
from actormimic.runtime import RunError, write_json, write_text_atomic
from actormimic.train_experts import train_experts

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def default_config_path() -> Path:
    """configs/quickstart-gpu.yaml on a CUDA machine, configs/quickstart.yaml otherwise."""
    path = CONFIGS / ("quickstart-gpu.yaml" if torch.cuda.is_available() else "quickstart.yaml")
    if not path.is_file():
        raise RunError(f"default quickstart config {path} not found; pass --config FILE")
    return path


def quickstart(config: QuickstartConfig, out: str, *, resume: bool = False, overwrite: bool = False) -> None:
    """Run every stage (skipping finished ones with --resume) and print the comparison table."""
    root = Path(out)
    if root.exists() and any(root.iterdir()) and not (resume or overwrite):
        raise RunError(f"{root} is not empty: pass --resume to reuse finished stages or --overwrite")
    started = time.perf_counter()
    if not resume:  # what `quickstart --out DIR --resume` reloads; a resume never rewrites it
        write_text_atomic(root / "config.yaml", dump_config(config))
    experts_dir = root / "experts"
    print(f"== 1/3 training experts for {', '.join(config.experts.games)} -> {experts_dir}", flush=True)
    train_experts(config.experts, str(experts_dir), resume=resume, overwrite=overwrite)
    student_dirs = []
    for i, loss in enumerate(config.losses):
        folder = root / f"student-{loss}"
        student_dirs.append(folder)
        print(f"== 2/3 distilling a student with the {loss} loss ({i + 1}/{len(config.losses)}) -> {folder}",
              flush=True)
        if resume and (folder / "eval.json").exists():
            print(f"{folder / 'eval.json'} exists; skipping", flush=True)
            continue
        student_config = dataclasses.replace(config.distill, loss=loss, games=config.experts.games,
                                             preset=config.experts.preset)
        distill(student_config, str(folder), experts=[str(experts_dir)],
                resume=resume and (folder / STUDENT).exists(), overwrite=overwrite or resume)
    print("== 3/3 score table and learning curves", flush=True)
    runs = load_runs([experts_dir, *student_dirs])
    table = score_table(runs)
    markdown = to_markdown(table)
    write_text_atomic(root / "scores.md", markdown)
    write_text_atomic(root / "scores.csv", to_csv(table))
    write_json(root / "scores.json", table)
    plot_learning_curves([*(experts_dir / p.name for p in sorted(experts_dir.iterdir()) if p.is_dir()),
                          *student_dirs], root / "curves.png")
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{markdown}\nquickstart finished in {minutes:.1f} min. Results in {root}/:\n"
          f"  scores.md / scores.csv / scores.json  the table above\n"
          f"  curves.png                            evaluation score vs steps per game\n"
          f"  experts/<game>/expert-best.pt, student-<loss>/student.pt  checkpoints\n"
          f"Watch the runs with: tensorboard --logdir {root}", flush=True)
