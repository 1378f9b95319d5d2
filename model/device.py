"""Where a run trains: ``auto``, ``cpu`` or ``cuda[:N]`` resolved against this machine."""

from __future__ import annotations

import torch

from model.config import ConfigError

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU.

    Raises:
        ConfigError: CUDA asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name!r} but no CUDA device is available here (use auto or cpu)")
    return torch.device(name)
