"""Write a score table (Markdown, CSV, JSON) for the eval.json files under one or more run folders."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from actormimic.reports import load_runs, score_table, to_csv, to_markdown
from actormimic.runtime import write_text_atomic
from actormimic.stats import HUMAN_SCORES


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, build the table, write PREFIX.md/.csv/.json and print it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (searched for eval.json)")
    parser.add_argument("--out", required=True, metavar="PREFIX", help="output prefix: writes PREFIX.md/.csv/.json")
    parser.add_argument("--human-table", default="agent57", choices=sorted(HUMAN_SCORES), help="human reference")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)

    try:
        table = score_table(load_runs(args.run_dirs), human_table=args.human_table, n_boot=args.n_boot, seed=args.seed)
    except (ValueError, FileNotFoundError) as error:  # no eval.json, a corrupt one, mixed protocols
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    prefix = Path(args.out)
    markdown = to_markdown(table)
    outputs = {".md": markdown, ".csv": to_csv(table), ".json": json.dumps(table, indent=2) + "\n"}
    for suffix, text in outputs.items():
        write_text_atomic(Path(f"{prefix}{suffix}"), text)  # makes missing folders
    print(markdown)
    print("wrote " + ", ".join(f"{prefix}{suffix}" for suffix in outputs))


if __name__ == "__main__":
    main()
