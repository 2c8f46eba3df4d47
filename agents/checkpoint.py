"""Single-file checkpoints: versioned, written atomically, rejected loudly when wrong."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1
KINDS = ("expert", "student")


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt or of the wrong kind; the message names the file."""


def save_checkpoint(path: str | os.PathLike, data: dict[str, Any], kind: str) -> None:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, rename)."""
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; allowed: {', '.join(KINDS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**data, "format_version": FORMAT_VERSION, "kind": kind}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename; give what open() would
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise CheckpointError(f"could not write checkpoint {path}: {error}") from error
        raise
    _fsync_dir(path.parent)


def load_checkpoint(
    path: str | os.PathLike, kind: str | tuple[str, ...] | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint, checking that it exists, parses, has our format version and `kind`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {error}") from error
    if not isinstance(data, dict) or "format_version" not in data:
        raise CheckpointError(f"checkpoint {path} is not an actormimic checkpoint (no format_version)")
    if data["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {data['format_version']}, this actormimic reads {FORMAT_VERSION}"
        )
    wanted = (kind,) if isinstance(kind, str) else kind
    if wanted is not None and data.get("kind") not in wanted:
        raise CheckpointError(f"checkpoint {path} holds a {data.get('kind')!r}, expected {' or '.join(wanted)}")
    return data


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (best effort on filesystems that refuse directory fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
