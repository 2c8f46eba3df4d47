"""Plot evaluation score vs env steps per game from TensorBoard logs, one line per method."""

from __future__ import annotations

import argparse
from pathlib import Path

from actormimic.reports import plot_learning_curves


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, plot the curves to FIG and print what was plotted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders holding TensorBoard event files")
    parser.add_argument("--out", required=True, metavar="FIG", help="figure path (.png or .pdf)")
    parser.add_argument(
        "--labels", nargs="+", metavar="LABEL", help="method label per run folder (default: from eval.json/config)"
    )
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the bands")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plotted = plot_learning_curves(args.run_dirs, out, labels=args.labels, n_boot=args.n_boot)
    for game, methods in plotted.items():
        print(f"{game}: " + ", ".join(f"{method} ({n} runs)" for method, n in methods.items()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
