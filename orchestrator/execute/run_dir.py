"""A single run's outputs on disk: config, per-epoch metrics, image grids and the checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from model.config import RunConfig
from model.trainer import EpochResult, Trainer

__all__ = ["RunDirectory", "checkpoint_root", "save_grid_png"]


def checkpoint_root(tracking_uri: str) -> Path:
    """Where a sweep's workers write their runs' resumable checkpoints (``<run_key>/last.pt`` under it):
    ``checkpoints/`` beside an SQLite store (``runs/checkpoints``), else ``runs/checkpoints`` here."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "checkpoints"
    return Path("runs/checkpoints").resolve()


def save_grid_png(grid: np.ndarray, path: Path) -> None:
    """Write a float image grid in [0, 1] (H, W) as an 8-bit greyscale PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(path, np.clip(grid, 0, 1), cmap="gray", vmin=0.0, vmax=1.0)


class RunDirectory:
    """``config.json``, ``metrics.csv`` (one row per epoch), ``images/`` and ``checkpoint.pt``."""

    def __init__(self, path: Path, config: RunConfig) -> None:
        self.path = path
        self._columns: list[str] | None = None
        path.mkdir(parents=True, exist_ok=False)
        (path / "images").mkdir()
        (path / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    def log_epoch(self, result: EpochResult) -> None:
        row = {"epoch": result.epoch, **result.metrics}
        if self._columns is None:
            self._columns = list(row)
        else:
            self._columns += [k for k in row if k not in self._columns]
        rows = []
        metrics_csv = self.path / "metrics.csv"
        if metrics_csv.exists():
            with metrics_csv.open() as fh:
                rows = list(csv.DictReader(fh))
        rows.append({k: row.get(k, "") for k in self._columns})
        with metrics_csv.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        for name, grid in result.images.items():
            save_grid_png(grid, self.path / "images" / f"{name}_epoch{result.epoch:03d}.png")

    @property
    def checkpoint(self) -> Path:
        """The resumable checkpoint, rewritten at the end of every epoch (:mod:`model.checkpoint`)."""
        return self.path / "checkpoint.pt"

    def finish(self, trainer: Trainer, status: str, reason: str | None) -> None:
        if trainer.epoch >= 0 and not self.checkpoint.exists():
            trainer.save_checkpoint(self.checkpoint)
        (self.path / "status.json").write_text(json.dumps({"status": status, "reason": reason}) + "\n")
