"""Compare two groups of runs: Mean/Median/IQM with stratified-bootstrap CIs and P(A > B)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from actormimic.reports import comparison_markdown, compare_groups, load_runs, plot_comparison
from actormimic.stats import HUMAN_SCORES


def _group_name(runs: list[dict], default: str) -> str:
    """The group's method if all its runs share one, else ``default``."""
    methods = {run["method"] for run in runs}
    return methods.pop() if len(methods) == 1 else default


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, compare the groups, print the table and write PREFIX.json and PREFIX.png."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--a", nargs="+", required=True, metavar="RUN_DIR", help="run folders of group A")
    parser.add_argument("--b", nargs="+", required=True, metavar="RUN_DIR", help="run folders of group B")
    parser.add_argument("--names", nargs=2, metavar=("NAME_A", "NAME_B"), help="group names (default: methods)")
    parser.add_argument("--out", required=True, metavar="PREFIX", help="output prefix: writes PREFIX.json/.png")
    parser.add_argument("--human", action="store_true", help="use human-normalized instead of expert-normalized scores")
    parser.add_argument("--human-table", default="agent57", choices=sorted(HUMAN_SCORES), help="human reference")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)

    try:
        runs_a, runs_b = load_runs(args.a), load_runs(args.b)
        names = tuple(args.names) if args.names else (_group_name(runs_a, "A"), _group_name(runs_b, "B"))
        if names[0] == names[1]:
            names = ("A", "B")
        result = compare_groups(runs_a, runs_b, names=names,
                                normalization="human_normalized" if args.human else "expert_normalized",
                                human_table=args.human_table, n_boot=args.n_boot, seed=args.seed)
    except (ValueError, FileNotFoundError) as error:  # no eval.json, mixed protocols, no game scored in both
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    prefix = Path(args.out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{prefix}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_comparison(result, f"{prefix}.png")
    print(comparison_markdown(result))
    print(f"wrote {prefix}.json, {prefix}.png")


if __name__ == "__main__":
    main()
