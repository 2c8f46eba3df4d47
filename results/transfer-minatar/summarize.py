"""Summary of `run.sh`'s target runs, from the student's torso (transfer-<game>-s<seed>), from it rescaled
(rescaled-<game>-s<seed>) and from scratch (scratch-<game>-s<seed>): per run the mean of its periodic evaluations,
that mean over the first 100k agent steps, and the final score of the kept network; per game and start the
evaluation curve averaged over seeds.

    python results/transfer-minatar/summarize.py OUT   (writes results/transfer-minatar/summary.json, prints tables)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from actormimic.reports import read_eval_curves

STARTS = ("transfer", "rescaled", "scratch")
EARLY_STEPS = 100_000


def run_summary(run: Path) -> dict:
    """One run's evaluation curve, its means (all, and up to EARLY_STEPS) and the kept network's final score."""
    (steps, scores), = read_eval_curves(run).values()
    final, = json.loads(next(run.rglob("eval.json")).read_text())["games"].values()
    early = steps <= EARLY_STEPS
    return {"steps": steps.tolist(), "scores": scores.tolist(), "mean_eval": float(scores.mean()),
            "mean_eval_early": float(scores[early].mean()), "final": final["mean"], "final_ci95": final["ci95"]}


def main(out: Path) -> None:
    """Print a table per game; write summary.json next to this script."""
    summary: dict[str, dict[str, dict[str, dict]]] = {}
    for run in sorted(p for p in out.iterdir() if p.is_dir()):
        match = re.fullmatch(rf"({'|'.join(STARTS)})-(\w+)-s(\d+)", run.name)
        if match:
            start, game, seed = match.groups()
            summary.setdefault(game, {}).setdefault(start, {})[f"s{seed}"] = run_summary(run)
    Path(__file__).with_name("summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for game, starts in summary.items():
        print(f"\nMinAtar/{game}\n\n| start | mean of the evaluations, seeds 0 / 1 / 2 (mean) | the same up to "
              f"{EARLY_STEPS // 1000}k steps | kept network, 30 episodes (mean) |\n|---|---|---|---|")
        for start, runs in starts.items():
            values = {k: [r[k] for r in runs.values()] for k in ("mean_eval", "mean_eval_early", "final")}
            cells = [" / ".join(f"{v:.2f}" for v in vs) + f" ({np.mean(vs):.2f})" for vs in values.values()]
            print(f"| {start} | " + " | ".join(cells) + " |")
        steps = next(iter(starts["scratch"].values()))["steps"]
        print("\n| agent steps | " + " | ".join(f"{s // 1000}k" for s in steps) + " |\n|---|" + "---|" * len(steps))
        for start, runs in starts.items():
            curve = np.mean([r["scores"] for r in runs.values()], axis=0)
            print(f"| {start} | " + " | ".join(f"{v:.2f}" for v in curve) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
