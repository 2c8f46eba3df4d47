"""`actormimic doctor`: what is installed, whether the ROMs are found, which device will be used."""

from __future__ import annotations

import importlib
import os
import platform

from actormimic.runtime import RunError

REQUIRED = ("torch", "gymnasium", "ale_py", "stable_baselines3", "tensorboard", "numpy", "yaml", "matplotlib")
OPTIONAL = ("minatar",)


def _version(module: str) -> str | None:
    """Installed version of a module, or None if it does not import."""
    try:
        mod = importlib.import_module(module)
    except Exception:
        return None
    return str(getattr(mod, "__version__", "installed"))


def _roms_found() -> tuple[bool, str]:
    """Whether ale-py can load a ROM (Breakout)."""
    try:
        import ale_py.roms as roms

        path = roms.get_rom_path("breakout")
    except Exception as error:
        return False, f"ROMs not found ({error})"
    return path is not None and os.path.exists(path), str(path)


def _device_line() -> str:
    """The device `--device auto` selects, with its memory."""
    import torch

    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        return f"cuda ({torch.cuda.get_device_name(0)}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free)"
    return "cpu (no CUDA device visible to torch)"


def doctor() -> None:
    """Print the report; raise RunError (exit 2) when something required is missing."""
    missing = []
    print(f"python       {platform.python_version()} ({platform.machine()})")
    for module in REQUIRED + OPTIONAL:
        version = _version(module)
        optional = "  (optional: pip install -e '.[minatar]')"
        note = "" if version else ("  <- MISSING (required)" if module in REQUIRED else optional)
        print(f"{module:<18} {version or 'not installed'}{note}")
        if version is None and module in REQUIRED:
            missing.append(module)
    if "ale_py" not in missing:
        ok, where = _roms_found()
        print(f"Atari ROMs         {'found: ' + where if ok else where}")
        if not ok:
            missing.append("Atari ROMs")
    if "torch" not in missing:
        print(f"device (auto)      {_device_line()}")
    print(f"CPU cores          {os.cpu_count()}")
    if missing:
        raise RunError(f"missing: {', '.join(missing)} (run: pip install -e .)")
    print("everything required is installed")
