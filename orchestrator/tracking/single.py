"""``orch train``'s tracked run: :func:`open_single_run` starts it, its ``log_epoch`` and ``finish`` are
bound to its run id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.identity import identify
from orchestrator.tracking.store import prepare_store
from orchestrator.tracking.tracker import Tracker
from orchestrator.tracking.vocabulary import RunKind, RunStatus, run_tags

if TYPE_CHECKING:
    from model.config import RunConfig
    from model.trainer import EpochResult

__all__ = ["open_single_run"]


class SingleRun:
    """`orch train`'s tracked run: ``log_epoch`` and ``finish`` bound to one run id."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.run_id = tracker, run_id

    def log_epoch(self, result: EpochResult) -> None:
        self.tracker.log_epoch(self.run_id, result)

    def finish(self, status: RunStatus, reason: str | None = None) -> None:
        self.tracker.finish(self.run_id, status, reason)


def open_single_run(uri: str, config: RunConfig, *, name: str, experiment: str = "orch-train") -> SingleRun:
    """A standalone tracked run for ``orch train`` (experiment ``orch-train``)."""
    tracker = Tracker(prepare_store(uri))
    tags = run_tags(RunKind.TRAIN, **identify(config).tags())
    run_id = tracker.start_run(experiment, config, name=name, tags=tags)
    return SingleRun(tracker, run_id)
