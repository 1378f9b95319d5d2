"""`orch train`: one run from a config, written to a run directory and, when asked, tracked in MLflow.

Everything that can be wrong with the input (device, data, tracking store, output directory) is checked
before anything is written; the training itself is :func:`model.trainer.fit`, the one epoch loop.

SIGTERM or Ctrl-C stops training at the next step; the checkpoint of the last complete epoch (kept in memory
after every epoch, written when the run ends) is logged to the run, which ends KILLED with the way to
continue it: ``orch train --resume RUN_ID`` (:func:`resume_single`) logs the remaining epochs into the same
run.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.checkpoint import Checkpoint, load_checkpoint
from model.config import ConfigError, RunConfig, load_config
from model.data import PairedSource, SourceShape, open_source
from model.preflight import check_data_fits
from model.trainer import EpochResult, fit, resolve_device
from orchestrator.execute.run_dir import RunDirectory
from orchestrator.execute.signals import STOP_SIGNALS, handle_signals
from orchestrator.tracking import RunStatus, TrackingError
from orchestrator.tracking.errors import os_reason
from orchestrator.tracking.vocabulary import TAG_CHECKPOINT

__all__ = ["TrainOutcome", "default_out_dir", "resume_single", "train_single"]


@dataclass(frozen=True)
class TrainOutcome:
    status: RunStatus  # finished | diverged | killed (interrupted: resumable when tracked)
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


def _checked(config: RunConfig, out_dir: Path, source: PairedSource | None) -> PairedSource:
    """The checks before anything is written: the run folder is free, the device here, the data usable."""
    if out_dir.exists():
        raise ConfigError(f"{out_dir} already exists; choose another --out")
    resolve_device(config.trainer.device)
    source = source if source is not None else open_source(config.data)
    check_data_fits(config, SourceShape.of(config.data, source))
    return source


def _run_directory(out_dir: Path, config: RunConfig) -> RunDirectory:
    try:
        return RunDirectory(out_dir, config)
    except OSError as exc:  # a file where a folder should be, a read-only or full disk
        raise ConfigError(f"cannot write the run directory {out_dir}: {os_reason(exc)}") from None


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
    source = _checked(config, out_dir, source)
    if tracking_uri is not None:  # a store that refuses is its own message, before any folder is made
        from orchestrator.tracking import prepare_store

        tracking_uri = prepare_store(tracking_uri)
    run_dir = _run_directory(out_dir, config)
    run = None
    if tracking_uri is not None:
        from orchestrator.tracking import open_single_run

        try:
            run = open_single_run(tracking_uri, config, name=name)
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)  # nothing written when the store refuses
            raise
    return _train(config, run_dir, run, source, on_epoch, on_step)


def resume_single(
    run_id: str,
    out_dir: Path,
    *,
    tracking_uri: str,
    device: str | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_step: Callable[[int, int, int], None] | None = None,
) -> TrainOutcome:
    """``orch train --resume RUN_ID``: continue an interrupted run from its logged checkpoint to its
    configured epochs, logging the rest into the same run (and a new run directory ``out_dir``).

    Args:
        device: where to train now (a placement: the run stays the same run).

    Raises:
        orchestrator.tracking.TrackingError: the store cannot be opened; no run ``run_id`` in it, or one
            that ended with a result, still runs, or logged no checkpoint (nothing written).
        model.checkpoint.CheckpointError: its checkpoint cannot be read.
        model.config.ConfigError, model.data.DataError: as :func:`train_single`.
    """
    from orchestrator.tracking import Tracker, prepare_store

    tracker = Tracker(prepare_store(tracking_uri))
    _check_resumable(tracker, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = load_checkpoint(tracker.download_checkpoint(run_id, Path(tmp)))
    config = load_config(checkpoint.config, [f"trainer.device={device}"] if device else None)
    source = _checked(config, out_dir, None)
    run_dir = _run_directory(out_dir, config)
    tracker.reopen(run_id, {"orch.resumed_from_epoch": str(checkpoint.epoch)})
    return _train(config, run_dir, _Run(tracker, run_id), source, on_epoch, on_step, checkpoint)


def _check_resumable(tracker: Any, run_id: str) -> None:
    """Refuse what cannot be resumed: an unknown id, a run that ended with a result or still runs, a run
    that logged no checkpoint."""
    run = tracker.find_run(run_id)
    if run is None:
        raise TrackingError(f"no run {run_id!r} in the store {tracker.uri}")
    status = RunStatus.of(run.info.status, run.data.tags)
    if status is RunStatus.RUNNING:
        raise TrackingError(f"run {run_id} is still running; only an interrupted run can be resumed")
    if status not in (RunStatus.KILLED, RunStatus.CRASHED):
        raise TrackingError(f"run {run_id} already ended ({status.value}); there is nothing to resume")
    if TAG_CHECKPOINT not in run.data.tags:
        raise TrackingError(
            f"run {run_id} logged no checkpoint (stopped before an epoch ended): train it again"
        )


@dataclass(frozen=True)
class _Run:
    """A tracked run of `orch train`: its tracker and id."""

    tracker: Any
    run_id: str

    def log_epoch(self, result: EpochResult) -> None:
        self.tracker.log_epoch(self.run_id, result)

    def finish(self, status: RunStatus, reason: str | None = None) -> None:
        self.tracker.finish(self.run_id, status, reason)


def _train(
    config: RunConfig,
    run_dir: RunDirectory,
    run: Any | None,
    source: PairedSource,
    on_epoch: Callable[[EpochResult], None] | None,
    on_step: Callable[[int, int, int], None] | None,
    resume: Checkpoint | None = None,
) -> TrainOutcome:
    """Fit, writing each epoch to the run directory and the tracked run, and the checkpoint after each."""

    def epoch_cb(result: EpochResult) -> None:
        run_dir.log_epoch(result)
        if run is not None:
            run.log_epoch(result)
        if on_epoch is not None:
            on_epoch(result)

    # SIGTERM and Ctrl-C stop training at the next step, not half-way through an epoch
    with handle_signals(STOP_SIGNALS) as received:
        try:
            result = fit(
                config,
                source=source,
                on_epoch=epoch_cb,
                on_step=on_step,
                checkpoint=run_dir.checkpoint,
                resume=resume,
                stop=lambda: bool(received),
            )
        except BaseException as exc:
            if run is not None:
                killed = isinstance(exc, KeyboardInterrupt)
                run.finish(
                    RunStatus.KILLED if killed else RunStatus.CRASHED, "interrupted" if killed else repr(exc)
                )
            raise
    trainer, reason = result.trainer, result.reason
    if result.status == "interrupted":
        status, saved = RunStatus.KILLED, trainer.epoch >= 0
        how = f"orch train --resume {run.run_id}" if run is not None and saved else "orch train again"
        reason = f"interrupted ({received[0] if received else 'stopped'}) after epoch {trainer.epoch}: {how}"
    else:
        status = RunStatus(result.status)
    run_dir.finish(trainer, status, reason)
    if run is not None:
        if trainer.epoch >= 0 and run_dir.checkpoint.exists():
            run.tracker.log_checkpoint(run.run_id, run_dir.checkpoint, trainer.epoch, config.to_dict())
        run.finish(status, reason)
    return TrainOutcome(status, reason, run_dir.path, result.epochs, run.run_id if run else None)
