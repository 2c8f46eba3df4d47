"""Summary of `run.sh`'s runs: per run the mean of its periodic evaluations, the area under the curve and the final
score of the kept network, env steps/s after learning starts (two runs sharing the two cores); per game and seed
batch 128 against batch 32.

    python results/batch-minatar/summarize.py RUNS_DIR   (writes results/batch-minatar/summary.json, prints a table)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

from actormimic.reports import read_eval_curves
from agents.checkpoint import load_checkpoint


def main(runs: Path) -> None:
    """Read every b<batch>-<game>-s<seed> run under `runs`; print a Markdown table; write summary.json."""
    summary = {}
    for run in sorted(runs.glob("b*-*-s*")):
        batch, variant, game, seed = re.fullmatch(r"b(\d+)([a-z0-9]*)-(\w+)-s(\d+)", run.name).groups()
        (steps, scores), = read_eval_curves(run).values()
        final = json.loads(next(run.rglob("eval.json")).read_text())["games"]
        entry, = final.values()
        throughput = load_checkpoint(next(run.rglob("expert.pt")), kind="expert")["counters"]["throughput"]
        summary[run.name] = {"batch": int(batch), "variant": variant, "game": game, "seed": int(seed),
                             "n_evals": len(scores),
                             "mean_eval": float(scores.mean()),
                             "auc": float(np.trapezoid(scores, steps) / (steps[-1] - steps[0])),
                             "final": entry["mean"], "final_ci95": entry["ci95"],
                             "env_steps_per_s": throughput["steps_after_learning_starts"]
                             / throughput["seconds_after_learning_starts"]}
    out = Path(__file__).with_name("summary.json")
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print("| game | batch (variant) | mean of the evaluations, seeds 0 / 1 / 2 (mean) | "
          "area under the curve / steps (mean) | kept network, 30 episodes (mean) | env steps/s |")
    print("|---|---|---|---|---|---|")
    for game in sorted({e["game"] for e in summary.values()}):
        for batch, variant in sorted({(e["batch"], e["variant"]) for e in summary.values()}):
            rows = sorted((e for e in summary.values()
                           if e["game"] == game and (e["batch"], e["variant"]) == (batch, variant)),
                          key=lambda e: e["seed"])
            if not rows:
                continue
            cells = [" / ".join(f"{e[k]:.1f}" for e in rows) + f" ({np.mean([e[k] for e in rows]):.1f})"
                     for k in ("mean_eval", "auc", "final")]
            speeds = [e["env_steps_per_s"] for e in rows]
            label = f"{batch} ({variant})" if variant else str(batch)
            print(f"| MinAtar/{game} | {label} | " + " | ".join(cells) + f" | {min(speeds):,.0f}-{max(speeds):,.0f} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
