"""Terminal output for a single training run: a progress bar per epoch and one row per epoch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from model.trainer import EpochResult

__all__ = ["EPOCH_COLUMNS", "EpochPrinter", "format_epoch_row"]

EPOCH_COLUMNS = ("content", "recon", "cross", "total", "cross_floor", "cross_psnr_clean", "noise_leak")
_HEAD = {"cross_floor": "floor", "cross_psnr_clean": "psnr_clean", "noise_leak": "leak"}


def format_epoch_row(result: EpochResult, columns: tuple[str, ...] = EPOCH_COLUMNS) -> str:
    """``epoch   3  content 0.0123  recon ...`` for the metrics that exist."""
    parts = [f"epoch {result.epoch:>3}"]
    for name in columns:
        if name in result.metrics:
            value = result.metrics[name]
            fmt = "{:.2f}" if name == "cross_psnr_clean" else "{:.4f}"
            parts.append(f"{_HEAD.get(name, name)} {fmt.format(value)}")
    parts.append(f"({result.metrics.get('epoch_seconds', 0.0):.1f}s)")
    return "  ".join(parts)


class EpochPrinter:
    """Prints epoch rows above a live progress bar of the current epoch's steps."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._progress: Progress | None = None
        self._task = None

    @contextmanager
    def live(self) -> Iterator[EpochPrinter]:
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        with self._progress:
            yield self
        self._progress = None

    def on_step(self, epoch: int, step: int, total: int) -> None:
        if self._progress is None:
            return
        if self._task is None or step == 1:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task("train", total=total, epoch=epoch)
        self._progress.update(self._task, completed=step)

    def on_epoch(self, result: EpochResult) -> None:
        self.console.print(format_epoch_row(result), highlight=False)
