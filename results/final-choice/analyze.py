"""Summarize run.sh's evaluations: for final evaluations of n episodes (disjoint n-episode slices of the seed-101
pool), how often the last network is kept, the reference score (seed 777) of the kept network on average, and the
score such a final evaluation would report for it: its own selection score (the higher of the two slice means) or
a fresh slice of the kept network (the next slice of its pool)."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folders", nargs="+", help="OUT folders of run.sh")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    returns: dict[str, dict[tuple[str, int], np.ndarray]] = defaultdict(dict)
    for file in sorted(f for folder in args.folders for f in Path(folder).glob("*.json")):
        tag, checkpoint, seed = file.stem.split("__")
        (entry,) = json.loads(file.read_text())["games"].values()
        returns[tag][(checkpoint, int(seed))] = np.array(entry["returns"], float)
    rows = []
    print("| run | reference: best periodic | reference: last | n | P(last kept) | reference of the kept one "
          "| reported: selection score | reported: fresh slice |")
    print("|---|---|---|---|---|---|---|---|")
    for tag, r in returns.items():
        best, last = r[("expert-best", 777)].mean(), r[("expert", 777)].mean()
        pool_best, pool_last = r[("expert-best", 101)], r[("expert", 101)]
        for n in (n for n in (10, 30, 100) if n <= len(pool_best)):
            count = len(pool_best) // n
            means = {name: [pool[i * n:(i + 1) * n].mean() for i in range(count)]
                     for name, pool in (("best", pool_best), ("last", pool_last))}
            keep_last = [means["last"][i] > means["best"][i] for i in range(count)]
            kept = float(np.mean([last if k else best for k in keep_last]))
            selection = float(np.mean([max(means["best"][i], means["last"][i]) for i in range(count)]))
            fresh = float(np.mean([means["last" if k else "best"][(i + 1) % count] for i, k in enumerate(keep_last)]))
            rows.append({"run": tag, "best": best, "last": last, "episodes": n, "p_last": float(np.mean(keep_last)),
                         "kept": kept, "reported_selection": selection, "reported_fresh": fresh})
            print(f"| {tag} | {best:.2f} | {last:.2f} | {n} | {np.mean(keep_last):.2f} | {kept:.2f} | {selection:.2f} "
                  f"| {fresh:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
