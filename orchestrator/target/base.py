"""The run target's interface (:class:`RunTarget`) and what passes between it and a worker: the worker's
callbacks (:class:`RunControl`), an epoch (:class:`Epoch`) and how the run ended (:class:`RunOutcome`).

Imports nothing heavy: a worker process loads it whatever its runs train.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Epoch", "RunControl", "RunOutcome", "RunTarget"]


@dataclass(frozen=True)
class Epoch:
    """One epoch's result as a worker reports it (the fields of :class:`model.trainer.EpochResult`, which
    the built-in model reports instead): epoch 0 is measured before any update."""

    epoch: int
    metrics: dict[str, float]
    images: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunControl:
    """What a worker gives the run it trains.

    Attributes:
        on_epoch: told each epoch's result; a string it returns stops the run early with that reason
            (status ``stopped``).
        on_step: told ``(epoch, step, steps)`` after each update, where the target has steps.
        stop: asked at every boundary the target has (steps, epochs); True stops the run there (status
            ``interrupted``: its last complete epoch's checkpoint is where it resumes).
        checkpoint: where to write the checkpoint of the last complete epoch when the run ends (None: none).
        resume: what :meth:`RunTarget.open_resume` read: the run continues after its epoch.
        extra: the worker's bookkeeping to keep in the checkpoint (the early-stop rule's readings).
        threads: CPU threads the run may use.
        cache: kept by the worker across its runs (the built-in model's data sources, opened once).
    """

    on_epoch: Callable[[Any], str | None]
    on_step: Callable[[int, int, int], None] | None = None
    stop: Callable[[], bool] = lambda: False
    checkpoint: str | None = None
    resume: Any | None = None
    extra: Callable[[], dict[str, Any]] | None = None
    threads: int = 1
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: ``finished``, ``diverged`` (NaN/Inf), ``stopped`` (early, with the reason) or
    ``interrupted`` (``stop()``), the epochs this call ran, and the last complete epoch (-1: none)."""

    status: str
    reason: str | None
    epochs: list[Any]
    last_epoch: int


class RunTarget(ABC):
    """What one run computes (see :mod:`orchestrator.target`). Instances are pickled to worker processes."""

    @property
    @abstractmethod
    def epochs(self) -> int:
        """The budget: epochs after epoch 0."""

    @property
    @abstractmethod
    def device(self) -> str:
        """Where it asks to run (``cpu``, ``auto``, ``cuda``, ``cuda:N``): how many workers a machine
        gets."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The mapping logged as the run's ``config.json`` (and, flattened, as an ``orch train`` run's MLflow
        params; a sweep's runs log only the axes that vary between its cells)."""

    def tags(self) -> dict[str, Any]:
        """Further ``orch.<name>`` tags of its run (none by default)."""
        return {}

    @classmethod
    def preflight(cls, targets: Sequence[RunTarget]) -> None:
        """Check, before a sweep writes anything, what would make these runs fail (raise the user error);
        by default nothing."""
        return None

    # ------------------------------------------------------------------------ in the worker process

    def placed(self, device: str | None) -> tuple[RunTarget, str | None]:
        """This run on a worker pinned to ``device`` (``cuda:N``, or None) and the device it reports (its
        identity unchanged); by default as it is, with no device."""
        return self, None

    @abstractmethod
    def open_resume(self, path: str) -> Any:
        """Read the checkpoint at ``path`` to resume from; the result has ``epoch`` and ``extra``."""

    @abstractmethod
    def run(self, control: RunControl) -> RunOutcome:
        """Train, reporting every epoch to ``control``; an exception is the run's crash."""

    @abstractmethod
    def checkpoint_epoch(self, path: Path) -> int | None:
        """The epoch the checkpoint a worker left at ``path`` ends, or None when there is none usable."""
