"""`orch train`: one run from a config, written to a run directory and, when asked, tracked in MLflow.

Everything that can be wrong with the input (device, data, tracking store, output directory) is checked
before anything is written; the training itself is :func:`model.trainer.fit`, the one epoch loop.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.config import ConfigError, RunConfig
from model.data import PairedSource, SourceShape, open_source
from model.preflight import check_data_fits
from model.trainer import EpochResult, fit, resolve_device
from orchestrator.execute.run_dir import RunDirectory
from orchestrator.tracking import RunStatus
from orchestrator.tracking.errors import os_reason

__all__ = ["TrainOutcome", "default_out_dir", "train_single"]


@dataclass(frozen=True)
class TrainOutcome:
    status: RunStatus  # finished | diverged
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
    tracking_uri: str | None = None,
    name: str = "train",
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
    source: PairedSource | None = None,
) -> TrainOutcome:
    """Train ``config``, writing config, metrics, images and checkpoint under ``out_dir``.

    Args:
        tracking_uri: also log the run to this MLflow store (experiment ``orch-train``, run ``name``).
        source: the data, when the caller opened it already (default: opened from ``config.data``).

    Raises:
        model.config.ConfigError: ``out_dir`` exists, or a device this machine lacks (nothing written).
        model.data.DataError: the data cannot be used, or its images are too small for the model (nothing
            written).
        orchestrator.tracking.TrackingError: the store cannot be opened (nothing written).
    """
    if out_dir.exists():
        raise ConfigError(f"{out_dir} already exists; choose another --out")
    resolve_device(config.trainer.device)
    source = source if source is not None else open_source(config.data)
    check_data_fits(config, SourceShape.of(config.data, source))
    if tracking_uri is not None:  # a store that refuses is its own message, before any folder is made
        from orchestrator.tracking import prepare_store

        tracking_uri = prepare_store(tracking_uri)
    try:
        run_dir = RunDirectory(out_dir, config)
    except OSError as exc:  # a file where a folder should be, a read-only or full disk
        raise ConfigError(f"cannot write the run directory {out_dir}: {os_reason(exc)}") from None
    tracker = None
    if tracking_uri is not None:
        from orchestrator.tracking import open_single_run

        try:
            tracker = open_single_run(tracking_uri, config, name=name)
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)  # nothing written when the store refuses
            raise

    def epoch_cb(result: EpochResult) -> None:
        run_dir.log_epoch(result)
        if tracker is not None:
            tracker.log_epoch(result)
        if on_epoch is not None:
            on_epoch(result)

    try:
        result = fit(config, source=source, on_epoch=epoch_cb, on_step=on_step)
    except KeyboardInterrupt:
        if tracker is not None:
            tracker.finish(RunStatus.KILLED, "interrupted")
        raise
    except BaseException as exc:
        if tracker is not None:
            tracker.finish(RunStatus.CRASHED, repr(exc))
        raise
    status = RunStatus(result.status)
    run_dir.finish(result.trainer, status, result.reason)
    if tracker is not None:
        tracker.finish(status, result.reason)
    return TrainOutcome(status, result.reason, out_dir, result.epochs, tracker.run_id if tracker else None)
