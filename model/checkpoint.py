"""A resumable checkpoint: what a run needs to continue at the next epoch as if it had never stopped.

Written at the end of an epoch (never half-way through one): the weights with their BatchNorm buffers,
the optimisers' state, the epoch reached, every random number generator the run draws from (torch's CPU
generator, CUDA's when present, numpy's, Python's ``random``, and the generator that orders the training
pairs), the config that built the run, and ``extra``, the caller's bookkeeping (e.g. an early-stop rule's
history). The schedules (:mod:`model.schedules`) are functions of the epoch and need nothing saved.

A run interrupted after epoch k and resumed from its checkpoint logs the same epochs k+1.. as a run that
was never interrupted (``tests/model_tests/test_checkpoint.py``). The file is written beside its final
path and renamed into place (``os.replace``), so a run killed while writing leaves the previous one whole.
It holds tensors and plain values only and is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "same_run",
    "write_checkpoint",
]

#: The layout of the file; a checkpoint of another format is refused with a message.
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that belongs to another run."""


@dataclass(frozen=True)
class Checkpoint:
    """A run's state at the end of epoch ``epoch`` (0: before any update)."""

    epoch: int
    config: dict[str, Any]  # RunConfig.to_dict() of the run that wrote it
    state: dict[str, Any]  # model, optimizer (and disc_a, disc_b, disc_optimizer), rng
    extra: dict[str, Any] = field(default_factory=dict)

    def to_file(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "epoch": self.epoch,
            "config": self.config,
            "extra": self.extra,
            **self.state,
        }


#: Where a run trains, not what it computes: a checkpoint resumes on another GPU or thread count.
_PLACEMENT = ("device", "threads")


def same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two configs (``RunConfig.to_dict()``) are the same run, wherever each is placed."""

    def what(cfg: dict[str, Any]) -> dict[str, Any]:
        trainer = {k: v for k, v in cfg.get("trainer", {}).items() if k not in _PLACEMENT}
        return {**cfg, "trainer": trainer}

    return what(a) == what(b)


def capture_rng(data_order: torch.Generator) -> dict[str, Any]:
    """Every generator's state now; ``data_order`` is the generator that shuffles the training pairs."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "data_order": data_order.get_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():  # saved and restored on a GPU machine; not exercised by the CPU tests
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], data_order: torch.Generator) -> None:
    """Put every generator back where :func:`capture_rng` found it."""
    torch.set_rng_state(state["torch"])
    data_order.set_state(state["data_order"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (a temporary file beside it, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(checkpoint.to_file(), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`write_checkpoint`.

    Raises:
        CheckpointError: no such file, not a checkpoint, or one of another format (one line saying which).
    """
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - pickle, zip and torch errors alike: not a checkpoint
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "rng" not in data:
        raise CheckpointError(
            f"{path}: not a resumable checkpoint (written by an older orch, or another tool)"
        )
    state = {k: v for k, v in data.items() if k not in ("format", "epoch", "config", "extra")}
    return Checkpoint(int(data["epoch"]), data["config"], state, data.get("extra") or {})
