"""Table of held-out fidelity per loss and learning rate from fidelity_offline.py JSON files.

Usage: python results/distill-lr-offline/summarize.py FILE.json ... > table.md
Runs of the same loss and learning rate (several files or seeds) are averaged; the last column is
the lowest regret a run reached at any of its measurements, averaged the same way.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np


def main(paths: list[str]) -> None:
    runs: dict[tuple[str, float], list[dict]] = defaultdict(list)
    games: list[str] = []
    for path in paths:
        result = json.load(open(path))
        games = result["games"]
        lr = float(next(o.split("=", 1)[1] for o in result["overrides"] if o.startswith("lr=")))
        for loss, loss_runs in result["runs"].items():
            runs[(loss, lr)].extend(loss_runs)
    short = [g.split("/")[-1] for g in games]
    print("| loss | lr | seeds | " + " | ".join(f"{g} agreement / regret (lowest)" for g in short) + " |")
    print("|---|---|---:|" + "---|" * len(games))
    for (loss, lr), group in sorted(runs.items()):
        cells = []
        for game in games:
            final = [run["curve"][-1][game] for run in group]
            lowest = np.mean([min(p[game]["regret"] for p in run["curve"]) for run in group])
            cells.append(f"{np.mean([f['agreement'] for f in final]):.3f} / {np.mean([f['regret'] for f in final]):.4f}"
                         f" ({lowest:.4f})")
        print(f"| {loss} | {lr:g} | {len(group)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
