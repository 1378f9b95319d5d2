"""The coordinator's side of a sweep's local workers: worker processes started here, their events
written to MLflow, and what a sweep tells its caller (:class:`SweepEvent`, :class:`SweepOutcome`).

The coordinator is the only process that writes to the MLflow store: workers send their epochs back over
a pipe (:mod:`orchestrator.execute.worker`), and :class:`_Coordinator` logs them.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from model.trainer import EpochResult
from orchestrator.execute.resources import WorkerSlot
from orchestrator.execute.worker import worker_main
from orchestrator.execute.workqueue import WorkQueue, open_storage
from orchestrator.matrix import RunSpec
from orchestrator.tracking import RunKind, RunStatus, Tracker, run_tags

__all__ = ["SweepEvent", "SweepOutcome", "run_workers"]


@dataclass
class SweepOutcome:
    parent_run_id: str | None
    sweep_id: str = ""
    ran: int = 0
    finished: int = 0
    diverged: int = 0
    crashed: int = 0
    stopped: int = 0
    skipped: int = 0
    failures: list[tuple[str, int, str]] = field(default_factory=list)  # (cell, seed, reason)

    def count(self, spec: RunSpec, status: RunStatus, reason: str | None) -> None:
        """Count one run that ended with ``status`` (not ``killed``: its item is run again)."""
        self.ran += 1
        if status is RunStatus.FINISHED:
            self.finished += 1
        elif status is RunStatus.STOPPED:
            self.stopped += 1
        else:
            if status is RunStatus.DIVERGED:
                self.diverged += 1
            else:
                self.crashed += 1
            self.failures.append((spec.cell, spec.seed, reason or status.value))


@dataclass(frozen=True)
class SweepEvent:
    """What the display hears: ``kind`` in start | step | epoch | end."""

    kind: str
    item: int
    spec: RunSpec
    epoch: int | None = None
    step: int | None = None
    steps: int | None = None
    status: RunStatus | None = None
    reason: str | None = None
    run_id: str | None = None  # the run's MLflow id (every event after its start)
    metrics: dict[str, float] | None = None  # an epoch's metrics (``epoch`` events)


# -------------------------------------------------------------------------------------- coordinator


class _Coordinator:
    """Tracks what the workers report: one MLflow run per claimed item, its epochs, its end."""

    def __init__(
        self,
        specs: list[RunSpec],
        tracker: Tracker,
        experiment: str,
        parent_run_id: str | None,
        sweep_id: str,
        work: WorkQueue,
        outcome: SweepOutcome,
        on_event: Callable[[SweepEvent], None] | None,
    ) -> None:
        self.specs, self.tracker, self.experiment = specs, tracker, experiment
        self.parent_run_id, self.sweep_id, self.work = parent_run_id, sweep_id, work
        self.outcome, self.on_event = outcome, on_event
        self.run_ids: dict[int, str] = {}
        self.owner: dict[int, tuple[int, int]] = {}  # item -> (worker pid, trial id)
        self.open_items: set[int] = set()

    def _emit(self, event: SweepEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def handle(self, msg: tuple[Any, ...]) -> None:
        """One message of a worker (see :func:`~orchestrator.execute.worker.worker_main`)."""
        kind, index = msg[0], msg[1]
        spec = self.specs[index]
        if kind == "start":
            tags = run_tags(
                RunKind.RUN,
                sweep=self.sweep_id,
                cell=spec.cell,
                seed=spec.seed,
                run_key=spec.run_key,
                axes=spec.axes,
                expect=spec.expect,
                device=msg[4] if len(msg) > 4 else None,
                **spec.identity.tags(),
            )
            self.run_ids[index] = self.tracker.start_run(
                self.experiment,
                spec.config,
                name=f"{spec.cell}/seed{spec.seed}",
                tags=tags,
                parent_id=self.parent_run_id,
            )
            self.owner[index] = (msg[2], msg[3])
            self.open_items.add(index)
            self._emit(SweepEvent("start", index, spec, run_id=self.run_ids[index]))
        elif kind == "step":
            self._emit(SweepEvent("step", index, spec, epoch=msg[2], step=msg[3], steps=msg[4]))
        elif kind == "epoch":
            result: EpochResult = msg[2]
            self.tracker.log_epoch(self.run_ids[index], result)
            run_id = self.run_ids[index]
            self._emit(
                SweepEvent("epoch", index, spec, epoch=result.epoch, run_id=run_id, metrics=result.metrics)
            )
        elif kind == "end":
            self.end(index, RunStatus(msg[2]), msg[3], msg[4])

    def end(self, index: int, status: RunStatus, reason: str | None, tb: str | None = None) -> None:
        if index not in self.open_items:  # already buried as its worker's death was seen first
            return
        spec = self.specs[index]
        self.tracker.finish(self.run_ids[index], status, reason, tb)
        self.open_items.discard(index)
        if status is not RunStatus.KILLED:  # a killed item goes back to the queue for another worker
            self.outcome.count(spec, status, reason)
        self._emit(SweepEvent("end", index, spec, status=status, reason=reason))

    def bury(self, p: mp.process.BaseProcess) -> None:
        """A worker died mid-run (killed, out of memory...): record it; the others go on."""
        for index in [i for i in self.open_items if self.owner[i][0] == p.pid]:
            why = f"worker process died (exit code {p.exitcode})"
            if self.work.heartbeats:
                # many machines: the item's heartbeat goes stale and another worker retries it
                self.end(index, RunStatus.KILLED, f"{why}; handed to another worker")
            else:
                self.work.done(self.owner[index][1], ok=False)
                self.end(index, RunStatus.CRASHED, why)

    def drain(self, events: Any) -> None:
        """Handle what is already in the pipe."""
        while True:
            try:
                self.handle(events.get(timeout=0.05))
            except queue_mod.Empty:
                return

    def follow(self, procs: list[mp.process.BaseProcess], events: Any) -> None:
        """Handle messages until every worker has exited; bury those that die."""
        while True:
            try:
                self.handle(events.get(timeout=0.2))
                continue
            except queue_mod.Empty:
                pass
            dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
            if dead:
                self.drain(events)  # what the dead sent before dying comes first
                for p in dead:
                    self.bury(p)
            if not any(p.is_alive() for p in procs):
                self.drain(events)  # what the last workers sent before exiting
                return

    def interrupted(self, procs: list[mp.process.BaseProcess]) -> None:
        """Stop the workers and mark the runs in flight KILLED (the next sweep runs them again)."""
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
        for index in list(self.open_items):
            self.tracker.finish(self.run_ids[index], RunStatus.KILLED, "sweep interrupted")


def run_workers(
    specs: list[RunSpec],
    *,
    storage_url: str,
    queue_name: str,
    tracker: Tracker,
    experiment: str,
    parent_run_id: str | None,
    sweep_id: str,
    slots: list[WorkerSlot],
    outcome: SweepOutcome,
    on_event: Callable[[SweepEvent], None] | None = None,
    heartbeat: float = 10.0,
) -> SweepOutcome:
    """Start a worker process per slot (its device and threads) and track what they report until done.

    Queue items name an index into ``specs`` (the matrix's full expansion). Runs in flight when this
    is interrupted are marked KILLED in the store and the exception (KeyboardInterrupt) is re-raised.
    """
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    payloads = [s.to_payload() for s in specs]
    procs = [
        ctx.Process(
            target=worker_main,
            args=(
                storage_url,
                queue_name,
                payloads,
                events,
                slot.threads,
                os.getpid(),
                heartbeat,
                slot.device,
            ),
            daemon=True,
            name=f"orch-worker-{i}",
        )
        for i, slot in enumerate(slots)
    ]
    for p in procs:
        p.start()
    work = WorkQueue(open_storage(storage_url, heartbeat=heartbeat), queue_name)
    coordinator = _Coordinator(specs, tracker, experiment, parent_run_id, sweep_id, work, outcome, on_event)
    try:
        coordinator.follow(procs, events)
    except BaseException:
        coordinator.interrupted(procs)
        raise
    return outcome
