"""Read evaluation run folders and TensorBoard logs; build score tables, comparisons and plots.

A run folder holds one or more ``eval.json`` files (found recursively) with the schema::

    {"protocol": {"name": "nature" | "machado" | "minatar", ...settings},
     "checkpoint": PATH, "kind": "expert" | "student", "method": "expert" | "ce" | "cc" | ...,
     "seed": int,
     "games": {GAME: {"returns": [...], "mean": m, "std": s, "ci95": [lo, hi], "random": r | null,
                      "expert_mean": e | null, "human_normalized": h | null,
                      "human_normalized_nature": h | null, "expert_normalized": e | null}},
     "aggregate": {...}}

An expert's eval.json also has "final_choice": {"chosen": "best" | "last", "episodes": n, "selection_seed": s,
"report_seed": s', "candidates": {NAME: {"step", "mean", "ci95"}}} (train_experts.final_choice): the candidates'
selection scores; "games" holds the kept network's score on the report seed's episodes (fresh ones when there
were two candidates). The tables read only "games".

Tables group runs by ``method``; the runs of one method with the same ``seed`` are merged (an
expert folder has one eval.json per game), so each (method, seed) pair is one run of the
stratified bootstrap. A table never mixes evaluation protocols.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from actormimic.runtime import write_bytes_atomic
from actormimic.stats import (
    RANDOM_SCORES,
    aggregate,
    bootstrap_mean_ci,
    expert_normalized,
    human_normalized,
    probability_of_improvement,
    summarize_returns,
)

EVAL_FILE = "eval.json"
NORMALIZATIONS = ("expert_normalized", "human_normalized")
HUMAN_KEYS = {"agent57": "human_normalized", "nature": "human_normalized_nature"}  # human table -> entry key
FIDELITY_KEYS = ("agreement", "regret")  # a student against its expert, see evaluation.fidelity
_EVAL_TAG = re.compile(r"^eval/(?P<game>.+)/score$")

RunKey = tuple[str, int]


def game_result(
    game: str,
    returns: Sequence[float],
    random: float | None = None,
    expert_mean: float | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    fidelity: dict | None = None,
) -> dict:
    """Per-game eval.json entry; ``random`` defaults to the published random score when the game has one.

    ``fidelity`` (a student's agreement with / regret against its expert, see evaluation.fidelity) is stored
    under that key when given.
    """
    summary = summarize_returns(returns, n_boot=n_boot, seed=seed)
    random = RANDOM_SCORES.get(game) if random is None else random
    return {
        "returns": [float(r) for r in returns],
        "mean": summary["mean"],
        "std": summary["std"],
        "ci95": summary["ci95"],
        "random": random,
        "expert_mean": expert_mean,
        "human_normalized": human_normalized(game, summary["mean"], "agent57"),
        "human_normalized_nature": human_normalized(game, summary["mean"], "nature"),
        "expert_normalized": expert_normalized(summary["mean"], expert_mean, random),
        **({"fidelity": fidelity} if fidelity is not None else {}),
    }


def validate_eval_result(result: dict, source: str = "eval result") -> None:
    """Raise ValueError naming ``source`` if ``result`` lacks a field the reports rely on."""
    protocol = result.get("protocol")
    if not isinstance(protocol, dict) or not isinstance(protocol.get("name"), str):
        raise ValueError(f"{source}: 'protocol' must be an object with a string 'name'")
    if not isinstance(result.get("method"), str):
        raise ValueError(f"{source}: 'method' must be a string")
    if not isinstance(result.get("seed"), int):
        raise ValueError(f"{source}: 'seed' must be an integer")
    games = result.get("games")
    if not isinstance(games, dict) or not games:
        raise ValueError(f"{source}: 'games' must be a non-empty object")
    for game, entry in games.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("returns"), list) or not entry["returns"]:
            raise ValueError(f"{source}: game {game!r} needs a non-empty 'returns' list")


def load_runs(paths: Iterable[str | Path]) -> list[dict]:
    """Load every eval.json under the given folders (or the given files), adding its location as "path"."""
    runs: list[dict] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        # glob's ** follows symlinked folders (Path.rglob does not before Python 3.13)
        files = [path] if path.is_file() else sorted(map(Path, glob.glob(f"{glob.escape(str(path))}/**/{EVAL_FILE}",
                                                                        recursive=True)))
        if not files:
            raise FileNotFoundError(f"no {EVAL_FILE} found under {path}")
        for file in files:
            if file.resolve() in seen:
                continue
            seen.add(file.resolve())
            try:
                result = json.loads(file.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{file}: not an evaluation JSON file ({error})") from None
            validate_eval_result(result, str(file))
            runs.append({**result, "path": str(file)})
    return runs


# the settings that change what a score measures; "episodes" only changes its precision
_SCORE_SETTINGS = ("name", "epsilon", "sticky_action_prob", "noop_max", "max_episode_frames", "frame_skip",
                   "full_action_space", "fire_reset", "episodic_life")


def check_protocol(runs: Sequence[dict]) -> dict:
    """The protocol shared by all runs (episodes as "lo-hi" when the counts differ); ValueError naming the
    setting and both runs if any score-defining setting differs (one missing from an older file is not compared)."""
    if not runs:
        raise ValueError("no runs given")
    for key in _SCORE_SETTINGS:
        having = [run for run in runs if key in run["protocol"]]
        for run in having[1:]:
            if run["protocol"][key] != having[0]["protocol"][key]:
                raise ValueError(
                    f"cannot mix evaluation protocols in one table: {key}={having[0]['protocol'][key]!r} "
                    f"({having[0].get('path', '?')}) and {key}={run['protocol'][key]!r} ({run.get('path', '?')})"
                )
    first = runs[0]["protocol"]
    episodes = sorted({run["protocol"]["episodes"] for run in runs if "episodes" in run["protocol"]})
    return {**first, "episodes": f"{episodes[0]}-{episodes[-1]}"} if len(episodes) > 1 else first


def _merge_runs(runs: Sequence[dict]) -> dict[RunKey, dict[str, dict]]:
    """Merge the games of runs sharing (method, seed); ValueError if a game appears twice for one pair."""
    merged: dict[RunKey, dict[str, dict]] = {}
    for run in runs:
        games = merged.setdefault((run["method"], run["seed"]), {})
        for game, entry in run["games"].items():
            if game in games:
                raise ValueError(
                    f"game {game!r} evaluated twice for method {run['method']!r} seed {run['seed']} "
                    f"(again in {run.get('path', '?')}); put the runs in separate tables"
                )
            games[game] = entry
    return merged


def _normalized(game: str, entry: dict, normalization: str, human_table: str) -> float | None:
    """Normalized mean return of one run's game entry."""
    score = float(np.mean(entry["returns"]))
    if normalization == "human_normalized":
        return human_normalized(game, score, human_table)
    if normalization == "expert_normalized":
        random = entry.get("random")
        random = RANDOM_SCORES.get(game) if random is None else random
        return expert_normalized(score, entry.get("expert_mean"), random)
    raise ValueError(f"unknown normalization {normalization!r}; choose from {NORMALIZATIONS}")


def _scored_games(runs: dict[RunKey, dict[str, dict]], normalization: str, human_table: str) -> list[str]:
    """Sorted games that every run has a normalized score for."""
    games = sorted(set().union(*runs.values()))
    return [
        g
        for g in games
        if all(g in run and _normalized(g, run[g], normalization, human_table) is not None for run in runs.values())
    ]


def _score_matrix(
    runs: dict[RunKey, dict[str, dict]], games: Sequence[str], normalization: str, human_table: str
) -> np.ndarray:
    """(runs, games) matrix of normalized scores; every run must have a score for every game."""
    rows = [[_normalized(g, run[g], normalization, human_table) for g in games] for run in runs.values()]
    return np.array(rows, dtype=float).reshape(len(rows), len(games))


def _aggregate_entry(
    runs: dict[RunKey, dict[str, dict]], normalization: str, human_table: str, n_boot: int, seed: int
) -> dict | None:
    """Aggregate metrics over the games every run has a normalized score for, or None without such games."""
    games = _scored_games(runs, normalization, human_table)
    if not games:
        return None
    matrix = _score_matrix(runs, games, normalization, human_table)
    return {"games": games, "n_runs": len(runs), **aggregate(matrix, n_boot=n_boot, seed=seed)}


def score_table(runs: Sequence[dict], human_table: str = "agent57", n_boot: int = 2000, seed: int = 0) -> dict:
    """Per-method, per-game scores across seeds plus stratified-bootstrap aggregates of normalized scores.

    Per game: "mean" is the mean over seeds of each seed's mean return, "ci95" the bootstrap interval
    of the mean over all episodes of all seeds pooled, and the normalized scores (and a student's
    "agreement" and "regret" with its expert, when every seed has them) are means over seeds.
    Aggregates use the (seeds, games) matrix of normalized scores over the games every seed has a
    normalized score for.
    """
    protocol = check_protocol(runs)
    merged = _merge_runs(runs)
    methods: dict[str, dict] = {}
    for method in dict.fromkeys(key[0] for key in merged):
        method_runs = {key: games for key, games in merged.items() if key[0] == method}
        games_table = {}
        for game in sorted(set().union(*method_runs.values())):
            entries = [games[game] for games in method_runs.values() if game in games]
            seed_means = [float(np.mean(e["returns"])) for e in entries]
            pooled = summarize_returns(np.concatenate([e["returns"] for e in entries]), n_boot=n_boot, seed=seed)
            row: dict = {
                "n_seeds": len(entries),
                "n_episodes": pooled["n"],
                "mean": float(np.mean(seed_means)),
                "seed_means": seed_means,
                "ci95": pooled["ci95"],
            }
            for norm in NORMALIZATIONS:
                values = [_normalized(game, e, norm, human_table) for e in entries]
                row[norm] = None if None in values else float(np.mean(values))
            for key in FIDELITY_KEYS:
                values = [e.get("fidelity", {}).get(key) for e in entries]
                row[key] = None if None in values else float(np.mean(values))
            games_table[game] = row
        methods[method] = {
            "seeds": sorted(key[1] for key in method_runs),
            "games": games_table,
            "aggregate": {
                norm: _aggregate_entry(method_runs, norm, human_table, n_boot, seed) for norm in NORMALIZATIONS
            },
        }
    return {"protocol": protocol, "human_table": human_table, "methods": methods}


_LABEL_KEYS = (("episodes", "episodes"), ("epsilon", "epsilon"), ("sticky_action_prob", "sticky"),
               ("noop_max", "no-ops"), ("max_episode_frames", "cap"))


def _protocol_label(protocol: dict) -> str:
    """Protocol name and its defining settings, e.g. "nature (episodes=30, epsilon=0.05, sticky=0.0, ...)"."""
    settings = ", ".join(f"{label}={protocol[key]}" for key, label in _LABEL_KEYS if key in protocol)
    return f"{protocol['name']} ({settings})" if settings else protocol["name"]


def _fmt(x: float | None, digits: int = 2) -> str:
    """Fixed-point number, or an en dash for a missing value."""
    return "–" if x is None else f"{x:.{digits}f}"


def _fmt_interval(value: dict, digits: int = 3) -> str:
    """"value [lo, hi]" for a {"value", "ci95"} dict."""
    lo, hi = value["ci95"]
    return f"{value['value']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def to_markdown(table: dict) -> str:
    """Markdown rendering of a score_table result: per-game scores (with agreement and regret columns when a
    student's fidelity was measured), then aggregates."""
    rows = [row for data in table["methods"].values() for row in data["games"].values()]
    measured = any(row.get("agreement") is not None for row in rows)
    extra = (" Agreement | Regret |", "---:|---:|") if measured else ("", "")
    lines = [
        f"## Scores — protocol: {_protocol_label(table['protocol'])}",
        "",
        f"Human reference: {table['human_table']}. Mean over seeds; 95% CI: bootstrap over all episodes.",
        "",
        "| Game | Method | Seeds | Episodes | Mean | 95% CI | Expert-norm | Human-norm |" + extra[0],
        "|---|---|---:|---:|---:|---|---:|---:|" + extra[1],
    ]
    for method, data in table["methods"].items():
        for game, row in data["games"].items():
            lo, hi = row["ci95"]
            lines.append(
                f"| {game} | {method} | {row['n_seeds']} | {row['n_episodes']} | {_fmt(row['mean'])} "
                f"| [{_fmt(lo)}, {_fmt(hi)}] | {_fmt(row['expert_normalized'], 3)} "
                f"| {_fmt(row['human_normalized'], 3)} |"
                + (f" {_fmt(row.get('agreement'), 3)} | {_fmt(row.get('regret'), 4)} |" if measured else "")
            )
    lines += [
        "",
        "### Aggregates (stratified bootstrap over seeds, 95% CI)",
        "",
        "| Method | Score | Games | Runs | Mean | Median | IQM |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for method, data in table["methods"].items():
        for norm, agg in data["aggregate"].items():
            if agg is not None:
                lines.append(
                    f"| {method} | {norm.replace('_', '-')} | {len(agg['games'])} | {agg['n_runs']} "
                    f"| {_fmt_interval(agg['mean'])} | {_fmt_interval(agg['median'])} | {_fmt_interval(agg['iqm'])} |"
                )
    return "\n".join(lines) + "\n"


def to_csv(table: dict) -> str:
    """CSV rendering of a score_table result: one row per (method, game), with the protocol in every row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["protocol", "human_table", "method", "game", "n_seeds", "n_episodes", "mean", "ci95_lo", "ci95_hi"]
        + list(NORMALIZATIONS) + list(FIDELITY_KEYS)
    )
    protocol = _protocol_label(table["protocol"])
    for method, data in table["methods"].items():
        for game, row in data["games"].items():
            norms = ["" if row.get(n) is None else row[n] for n in NORMALIZATIONS + FIDELITY_KEYS]
            writer.writerow(
                [protocol, table["human_table"], method, game, row["n_seeds"], row["n_episodes"], row["mean"]]
                + row["ci95"]
                + norms
            )
    return buffer.getvalue()


def markdown_scores_table(eval_result: dict) -> str:
    """Markdown table of one eval.json: Game | mean ± std | 95% CI | human-norm | expert-norm
    (| agreement | regret, for a student measured against its experts)."""
    validate_eval_result(eval_result)
    human_table = eval_result.get("human_table", "agent57")
    with_fidelity = any("fidelity" in entry for entry in eval_result["games"].values())
    extra = (" agreement | regret |", "---:|---:|") if with_fidelity else ("", "")
    lines = [
        f"### {eval_result['method']} ({eval_result.get('kind', '?')}, seed {eval_result['seed']}) — "
        f"protocol: {_protocol_label(eval_result['protocol'])}",
        "",
        f"| Game | mean ± std | 95% CI | human-norm ({human_table}) | expert-norm |" + extra[0],
        "|---|---:|---|---:|---:|" + extra[1],
    ]
    for game, entry in eval_result["games"].items():
        lo, hi = entry["ci95"]
        fid = entry.get("fidelity") or {}
        tail = f" {_fmt(fid.get('agreement'), 3)} | {_fmt(fid.get('regret'), 4)} |" if with_fidelity else ""
        lines.append(
            f"| {game} | {_fmt(entry['mean'])} ± {_fmt(entry['std'])} | [{_fmt(lo)}, {_fmt(hi)}] "
            f"| {_fmt(entry.get(HUMAN_KEYS[human_table]), 3)} | {_fmt(entry.get('expert_normalized'), 3)} |" + tail
        )
    if with_fidelity:
        lines += ["", "agreement: share of the states the student visited (a uniform sample) where it "
                  "picks its expert's greedy action; regret: the expert's Q of that action "
                  "minus the expert's Q of the student's action, averaged."]
    return "\n".join(lines) + "\n"


def compare_groups(
    runs_a: Sequence[dict],
    runs_b: Sequence[dict],
    names: tuple[str, str] = ("A", "B"),
    normalization: str = "expert_normalized",
    human_table: str = "agent57",
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Aggregates of both groups and P(A > B) on normalized scores over the games all runs of both share."""
    if names[0] == names[1]:
        raise ValueError(f"the two groups need different names, got {names[0]!r} twice")
    protocol = check_protocol([*runs_a, *runs_b])
    merged_a, merged_b = _merge_runs(runs_a), _merge_runs(runs_b)
    scored_a = _scored_games(merged_a, normalization, human_table)
    games = [g for g in _scored_games(merged_b, normalization, human_table) if g in scored_a]
    if not games:
        raise ValueError(f"no game has a {normalization} score in every run of both groups")
    matrix_a = _score_matrix(merged_a, games, normalization, human_table)
    matrix_b = _score_matrix(merged_b, games, normalization, human_table)
    return {
        "protocol": protocol,
        "normalization": normalization,
        "human_table": human_table,
        "games": games,
        "groups": {
            name: {"runs": [f"{m}/seed{s}" for m, s in merged], **aggregate(matrix, n_boot=n_boot, seed=seed)}
            for name, merged, matrix in ((names[0], merged_a, matrix_a), (names[1], merged_b, matrix_b))
        },
        "probability_of_improvement": {
            "a": names[0],
            "b": names[1],
            **probability_of_improvement(matrix_a, matrix_b, n_boot=n_boot, seed=seed),
        },
    }


def comparison_markdown(result: dict) -> str:
    """Markdown rendering of a compare_groups result."""
    poi = result["probability_of_improvement"]
    lines = [
        f"## {poi['a']} vs {poi['b']} — protocol: {_protocol_label(result['protocol'])}",
        "",
        f"Score: {result['normalization'].replace('_', '-')}"
        + (f" ({result['human_table']})" if result["normalization"] == "human_normalized" else "")
        + f" over {len(result['games'])} games: {', '.join(result['games'])}. 95% stratified-bootstrap CIs.",
        "",
        "| Group | Runs | Mean | Median | IQM |",
        "|---|---:|---|---|---|",
    ]
    for name, group in result["groups"].items():
        lines.append(
            f"| {name} | {len(group['runs'])} | {_fmt_interval(group['mean'])} "
            f"| {_fmt_interval(group['median'])} | {_fmt_interval(group['iqm'])} |"
        )
    lines += ["", f"P({poi['a']} > {poi['b']}) = {_fmt_interval(poi)}"]
    return "\n".join(lines) + "\n"


def _new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure drawn with the Agg canvas."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out: Path) -> None:
    """Write a figure atomically, in the format its suffix names (png without one)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=out.suffix.lstrip(".") or "png")
    write_bytes_atomic(out, buffer.getvalue())


def plot_comparison(result: dict, out: str | Path) -> None:
    """Interval plot of a compare_groups result: Mean, Median, IQM per group and P(A > B)."""
    fig = _new_figure(12, 2.2)
    axes = fig.subplots(1, 4)
    names = list(result["groups"])
    for ax, metric in zip(axes[:3], ("mean", "median", "iqm")):
        for i, name in enumerate(names):
            value = result["groups"][name][metric]
            lo, hi = value["ci95"]
            ax.plot([lo, hi], [i, i], linewidth=6, alpha=0.5, color=f"C{i}")
            ax.plot([value["value"]], [i], "|", markersize=14, color="k")
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(len(names) - 0.3, -0.7)
        ax.set_title(metric.upper() if metric == "iqm" else metric.capitalize())
        ax.set_xlabel(result["normalization"].replace("_", "-"))
    poi = result["probability_of_improvement"]
    lo, hi = poi["ci95"]
    axes[3].plot([lo, hi], [0, 0], linewidth=6, alpha=0.5, color="C2")
    axes[3].plot([poi["value"]], [0], "|", markersize=14, color="k")
    axes[3].axvline(0.5, linestyle="--", color="grey")
    axes[3].set_xlim(-0.02, 1.02)
    axes[3].set_yticks([0], [f"P({poi['a']} > {poi['b']})"])
    axes[3].set_title("Probability of improvement")
    fig.suptitle(f"protocol: {_protocol_label(result['protocol'])}", fontsize="small")
    save_figure(fig, Path(out))


def read_eval_curves(run_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Scalars ``eval/<safe_game>/score`` from every event file under run_dir, as {safe_game: (steps, scores)}.

    Points logged at the same step in several files keep the most recently written value.
    """
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    points: dict[str, list[tuple[float, int, float]]] = {}
    for folder in sorted({f.parent for f in Path(run_dir).rglob("events.out.tfevents*")}):
        accumulator = EventAccumulator(str(folder), size_guidance={SCALARS: 0})
        accumulator.Reload()
        for tag in accumulator.Tags()[SCALARS]:
            match = _EVAL_TAG.match(tag)
            if match:
                points.setdefault(match["game"], []).extend(
                    (e.wall_time, e.step, e.value) for e in accumulator.Scalars(tag)
                )
    curves = {}
    for game, events in sorted(points.items()):
        by_step = {step: value for _, step, value in sorted(events)}
        steps = np.array(sorted(by_step), dtype=np.int64)
        curves[game] = (steps, np.array([by_step[s] for s in steps], dtype=float))
    return curves


def run_method(run_dir: str | Path) -> str:
    """Method of a run folder, from its eval.json files, else from the "method" key of its config.yaml."""
    run_dir = Path(run_dir)
    methods = {json.loads(f.read_text()).get("method") for f in run_dir.rglob(EVAL_FILE)} - {None}
    if not methods:
        config = run_dir / "config.yaml"
        if config.is_file():
            methods = {(yaml.safe_load(config.read_text()) or {}).get("method")} - {None}
    if len(methods) != 1:
        found = sorted(methods) or "none"
        raise ValueError(f"cannot tell the method of {run_dir} (found {found}); pass labels explicitly")
    return methods.pop()


def mean_curve(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], n_boot: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, lo, hi) across seeds after interpolating curves to their common step range."""
    start = max(float(steps[0]) for steps, _ in curves)
    end = min(float(steps[-1]) for steps, _ in curves)
    if start > end:
        raise ValueError(f"the curves share no step range (latest start {start:g} > earliest end {end:g})")
    grid = np.unique(np.concatenate([steps[(steps >= start) & (steps <= end)] for steps, _ in curves]))
    values = np.stack([np.interp(grid, steps, scores) for steps, scores in curves])
    lo, hi = bootstrap_mean_ci(values, n_boot=n_boot, seed=seed)
    return grid, values.mean(axis=0), lo, hi


def plot_learning_curves(
    run_dirs: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None, n_boot: int = 2000
) -> dict[str, dict[str, int]]:
    """Per-game subplots of eval score vs env steps, one line per method (mean over runs, bootstrap band).

    Returns {safe_game: {method: number of runs}}.
    """
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"got {len(labels)} labels for {len(run_dirs)} run folders")
    grouped: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    for i, run_dir in enumerate(run_dirs):
        curves = read_eval_curves(run_dir)
        if not curves:
            raise ValueError(f"no eval/<game>/score scalars in TensorBoard logs under {run_dir}")
        method = labels[i] if labels is not None else run_method(run_dir)
        for game, curve in curves.items():
            grouped.setdefault(game, {}).setdefault(method, []).append(curve)
    games = sorted(grouped)
    methods = list(dict.fromkeys(m for g in games for m in grouped[g]))
    ncols = min(4, len(games))
    nrows = -(-len(games) // ncols)
    fig = _new_figure(4 * ncols, 3 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, game in zip(axes, games):
        for method, curves in grouped[game].items():
            steps, mean, lo, hi = mean_curve(curves, n_boot=n_boot)
            color = f"C{methods.index(method)}"
            ax.plot(steps, mean, color=color, label=f"{method} (n={len(curves)})")
            ax.fill_between(steps, lo, hi, color=color, alpha=0.25)
        ax.set_title(game)
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval score")
        ax.legend(fontsize="small")
    for ax in axes[len(games) :]:
        ax.set_visible(False)
    sep = "\n" if ncols == 1 else " "  # one 4-inch panel cannot hold the title on one line
    fig.suptitle(f"Evaluation score during training{sep}(mean over runs, 95% bootstrap band)", fontsize="small")
    save_figure(fig, Path(out))
    return {game: {m: len(c) for m, c in grouped[game].items()} for game in games}
