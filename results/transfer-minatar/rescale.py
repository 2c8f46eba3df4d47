"""A copy of a student whose torso's last linear layer is scaled so that its features of a game's random-play states
have the mean norm of a fresh torso's (ReLU features scale with that layer's weights and bias): transfer with the
student's features at a fresh torso's scale, to tell their scale from their meaning.

    python results/transfer-minatar/rescale.py OUT/student/student.pt MinAtar/Asterix OUT/student-rescaled.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from actormimic.train_experts import _init_torso
from agents.checkpoint import load_checkpoint, save_checkpoint
from agents.networks import QNetwork

sys.path.insert(0, str(Path(__file__).parent))
from features import random_play_states  # noqa: E402


def main(student_path: str, game: str, out: str) -> None:
    """Write the rescaled student to `out` and print the scale."""
    states = random_play_states(game)
    torch.manual_seed(0)
    shape = tuple(states.shape[1:])
    fresh, transferred = QNetwork("minatar", shape, 5), QNetwork("minatar", shape, 5)
    _init_torso(transferred, student_path)
    with torch.no_grad():
        scale = float(fresh.torso(states).norm(dim=1).mean() / transferred.torso(states).norm(dim=1).mean())
    student = load_checkpoint(student_path, kind="student")
    last = max((k for k, v in student["model"].items() if k.startswith("torso.") and v.dim() == 2),
               key=lambda k: int(k.split(".")[1]))  # the last linear layer's weight
    for key in (last, last.replace("weight", "bias")):
        student["model"][key] = student["model"][key] * scale
    kept = {k: v for k, v in student.items() if k not in ("format_version", "kind")}  # save_checkpoint adds them
    save_checkpoint(Path(out), kept, kind="student")
    check = QNetwork("minatar", shape, 5)
    _init_torso(check, out)
    with torch.no_grad():
        print(f"scaled {last} and its bias by {scale:.4f}: mean feature norm on {game} "
              f"{float(check.torso(states).norm(dim=1).mean()):.3f} (a fresh torso: "
              f"{float(fresh.torso(states).norm(dim=1).mean()):.3f})")


if __name__ == "__main__":
    main(*sys.argv[1:4])
