"""`orch train`: one run from a config file, written to a run directory (and tracked when asked)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.config import RunConfig
from model.data import PairedSource
from model.trainer import EpochResult, NonFiniteLossError, Trainer
from orchestrator.run_dir import RunDirectory

__all__ = ["TrainOutcome", "default_out_dir", "train_single"]


@dataclass(frozen=True)
class TrainOutcome:
    status: str  # finished | diverged
    reason: str | None
    out_dir: Path
    epochs: list[EpochResult]
    tracking_run_id: str | None = None


def default_out_dir(config_path: Path | None, root: Path = Path("runs/train")) -> Path:
    """``runs/train/<config stem>-<YYYYmmdd-HHMMSS>`` (suffixed when taken)."""
    stem = config_path.stem if config_path else "default"
    base = root / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


def train_single(
    config: RunConfig,
    out_dir: Path,
    *,
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
    tracker: object | None = None,
    source: PairedSource | None = None,
) -> TrainOutcome:
    """Train ``config``, writing config, metrics, images and checkpoint under ``out_dir``.

    The data is opened before anything is written, so bad data leaves no directory behind.

    Args:
        source: the data, when the caller opened it already (to reject bad data before tracking).
        tracker: optional object with ``log_epoch(result)`` and ``finish(status, reason)`` (e.g. an
            MLflow run from :mod:`orchestrator.tracking`).

    Raises:
        model.config.ConfigError, model.data.DataError: invalid config or data (nothing written).
    """
    trainer = Trainer(config, source)
    run_dir = RunDirectory(out_dir, config)
    epochs: list[EpochResult] = []
    status, reason = "finished", None
    try:
        for result in trainer.run(on_step):
            epochs.append(result)
            run_dir.log_epoch(result)
            if tracker is not None:
                tracker.log_epoch(result)
            if on_epoch is not None:
                on_epoch(result)
    except NonFiniteLossError as exc:
        status, reason = "diverged", str(exc)
    except KeyboardInterrupt:
        if tracker is not None:
            tracker.finish("killed", "interrupted")
        raise
    except BaseException as exc:
        if tracker is not None:
            tracker.finish("crashed", repr(exc))
        raise
    run_dir.finish(trainer, status, reason)
    run_id = None
    if tracker is not None:
        tracker.finish(status, reason)
        run_id = getattr(tracker, "run_id", None)
    return TrainOutcome(status, reason, out_dir, epochs, run_id)
