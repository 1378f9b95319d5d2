"""The built-in model as a run target: a validated :class:`~model.config.RunConfig`, fitted by
:func:`model.trainer.fit` (the one epoch loop), its checkpoint :mod:`model.checkpoint`'s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.config import DataConfig, FastMRIData, HDF5Data, RunConfig
from orchestrator.target.base import RunControl, RunOutcome, RunTarget

__all__ = ["ModelTarget"]


@dataclass(frozen=True)
class ModelTarget(RunTarget):
    """One run of the built-in model: its resolved config (the seed is ``trainer.seed``)."""

    config: RunConfig

    @property
    def epochs(self) -> int:
        return self.config.trainer.epochs

    @property
    def device(self) -> str:
        return self.config.trainer.device

    def describe(self) -> dict[str, Any]:
        return self.config.to_dict()

    def tags(self) -> dict[str, Any]:
        """Its budget as tags (``orch.epochs``, ``orch.steps_per_epoch``): a sweep's runs log only the axes
        that vary as params; no steps per epoch (one pass over the data) leaves that tag out."""
        tc = self.config.trainer
        return {"epochs": tc.epochs, "steps_per_epoch": tc.steps_per_epoch}

    @classmethod
    def preflight(cls, targets: Sequence[RunTarget]) -> None:
        """A device this machine lacks; data that is missing or unusable (each distinct source opened once
        and checked as a run opens it: for an HDF5 file the checks of ``orch data inspect``, NaN and Inf
        included); data a run's model cannot train on (:func:`model.preflight.check_data_fits`: too few
        pairs, images smaller than the encoder's depth allows).

        Raises:
            model.config.ConfigError: a device that is not here.
            model.data.DataError: the data, naming the file, the dataset and the problem.
        """
        from model.data import SourceShape
        from model.preflight import check_data_fits
        from model.trainer import resolve_device

        configs = [t.config for t in targets if isinstance(t, ModelTarget)]
        for device in {c.trainer.device for c in configs}:
            resolve_device(device)
        shapes: dict[str, SourceShape] = {}
        for config in configs:
            key = config.data.model_dump_json()
            if key not in shapes:
                shapes[key] = _probe(config.data)
            check_data_fits(config, shapes[key])

    def placed(self, device: str | None) -> tuple[ModelTarget, str | None]:
        """Pinned to ``device`` when its config says ``auto`` or ``cuda`` (its identity stays), with the
        device it resolves to (or its config's, when that cannot be resolved: the run reports the error)."""
        from model.trainer import resolve_device

        config = self.config
        if device and config.trainer.device in ("auto", "cuda"):
            trainer = config.trainer.model_copy(update={"device": device})
            config = config.model_copy(update={"trainer": trainer})
        try:
            resolved = str(resolve_device(config.trainer.device))
        except Exception:  # noqa: BLE001 - reported as the run's crash when it trains
            resolved = config.trainer.device
        return ModelTarget(config), resolved

    def open_resume(self, path: str) -> Any:
        from model.checkpoint import load_checkpoint

        return load_checkpoint(path)

    def run(self, control: RunControl) -> RunOutcome:
        """:func:`model.trainer.fit`, its data source shared by the worker's runs (``control.cache``)."""
        import torch

        from model.data import open_source
        from model.trainer import fit

        torch.set_num_threads(control.threads)
        data_key = self.config.data.model_dump_json()
        if data_key not in control.cache:
            control.cache[data_key] = open_source(self.config.data)
        result = fit(
            self.config,
            source=control.cache[data_key],
            on_epoch=control.on_epoch,
            on_step=control.on_step,
            checkpoint=control.checkpoint,
            resume=control.resume,
            stop=control.stop,
            extra=control.extra,
        )
        assert result.trainer is not None
        return RunOutcome(result.status, result.reason, result.epochs, result.trainer.epoch)

    def checkpoint_epoch(self, path: Path) -> int | None:
        from model.checkpoint import CheckpointError, load_checkpoint

        try:
            return load_checkpoint(path).epoch
        except CheckpointError:
            return None


def _probe(data: DataConfig) -> Any:
    """Open and check one data source (:func:`model.data.probe_source`); a missing path says so first."""
    from model.data import DataError, probe_source

    if isinstance(data, HDF5Data) and not Path(data.path).exists():
        raise DataError(_missing(Path(data.path), "no such data file"))
    if isinstance(data, FastMRIData) and not Path(data.directory).exists():
        raise DataError(_missing(Path(data.directory), "no such data folder"))
    return probe_source(data)


def _missing(path: Path, words: str) -> str:
    """What is missing at ``path``: ``words``, or the link there whose target is gone (a dangling link)."""
    if path.is_symlink():
        return f"{path}: a link to {path.readlink()}, which does not exist"
    return f"{path}: {words}"
