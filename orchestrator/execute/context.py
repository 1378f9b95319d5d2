"""The sweep context: what one sweep shares with everything it calls, built once and passed down.

:func:`~orchestrator.execute.sweep.run_sweep`, :func:`~orchestrator.execute.search.run_search` and
:func:`~orchestrator.execute.join.join_sweep` each build one :class:`SweepContext`
(:meth:`SweepContext.open`); the local workers' coordinator
(:func:`~orchestrator.execute.workers.run_workers`), a launcher and a search's rounds read it. It owns:

- the tracker, the experiment (the matrix's name) and the parent run, opened once (a new one, or the
  interrupted one of the same sweep, reopened) and ended KILLED when the sweep is stopped
  (:meth:`SweepContext.parent_run`);
- the sweep id and the queue: where queues live (:class:`QueueSettings`) and the one in use;
- what the sweep tells its caller: the outcome (:class:`SweepOutcome`) and one display (:class:`Display`,
  which hears a :class:`SweepEvent` per run start, step, epoch and end).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.execute.lease import hold_lease
from orchestrator.execute.resume import open_parent
from orchestrator.execute.workqueue import WorkQueue, open_storage
from orchestrator.matrix import RunSpec
from orchestrator.tracking import RunKind, RunStatus, Tracker, check_experiment_name, prepare_store, run_tags
from orchestrator.tracking.errors import StoreFault
from orchestrator.tracking.integrity import SpaceReserve
from orchestrator.tracking.vocabulary import TAG_STATUS

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from orchestrator.execute.lease import Lease
    from orchestrator.execute.plan import PlanItem

__all__ = [
    "QUEUE_DIR",
    "Display",
    "QueueSettings",
    "SweepContext",
    "SweepEvent",
    "SweepOutcome",
    "SweepRequest",
]

#: Where a sweep's queues live without a shared storage: a journal file per queue.
QUEUE_DIR = Path("runs/queue")


@dataclass
class SweepOutcome:
    """What a sweep ran: counts by how its runs ended, and why the failed ones failed."""

    parent_run_id: str | None
    sweep_id: str = ""
    ran: int = 0
    finished: int = 0
    diverged: int = 0
    crashed: int = 0
    stopped: int = 0
    skipped: int = 0
    interrupted: int = 0  # runs stopped by SIGTERM or Ctrl-C (KILLED): the next sweep resumes or reruns them
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


class Display:
    """Whoever follows a sweep (the command line's live view); here every method does nothing."""

    def on_phase(self, text: str) -> None:
        """What the sweep does before its runs start (opening the store, planning, starting workers)."""

    def on_plan(self, plan: list[PlanItem]) -> None:
        """What the sweep does with each run, once the store has been read."""

    def on_event(self, event: SweepEvent) -> None:
        """A run started, made steps, ended an epoch, or ended."""

    def on_done(self, outcome: SweepOutcome) -> None:
        """The sweep's runs are done and its parent run is still open: what is recorded now (the verdicts)
        is part of the sweep (a sweep killed meanwhile is resumed, not followed by a second parent)."""


@dataclass(frozen=True)
class QueueSettings:
    """Where a sweep's queues live: in ``storage``, an Optuna RDB (``postgresql://...``) that workers on
    other machines reach, else in a journal file per queue under :data:`QUEUE_DIR`; ``heartbeat``: seconds
    between a worker's heartbeats on an RDB (a claim silent for three is handed to another worker)."""

    storage: str | None = None
    heartbeat: float = 10.0

    def url(self, queue_id: str) -> str:
        """The storage of queue ``queue_id``: the RDB, else the queue's own journal file."""
        return self.storage or str(QUEUE_DIR / f"{queue_id}.journal")


@dataclass(frozen=True)
class SweepRequest:
    """What makes two sweeps of a matrix the same sweep, so that one resumes the other when that was
    interrupted (:func:`~orchestrator.execute.resume.open_parent`): the command line's ``edits`` (overrides
    and selections, recorded so that the sweep can be reproduced), ``fresh`` (run every run again) and
    ``retry_diverged`` (run the diverged ones again)."""

    edits: dict[str, Any] = field(default_factory=dict)
    fresh: bool = False
    retry_diverged: bool = False

    def tags(self, **extra: Any) -> dict[str, str]:
        """The parent run's tags: ``orch.fresh``, ``orch.retry_diverged``, ``orch.edits`` and ``extra``."""
        return run_tags(
            RunKind.SWEEP,
            fresh=str(self.fresh).lower(),
            retry_diverged=str(self.retry_diverged).lower(),
            edits={k: v for k, v in self.edits.items() if v} or None,
            **extra,
        )


class SweepContext:
    """One sweep's tracker, experiment, parent run, sweep id, queue, outcome and display (module docstring).

    Attributes:
        parent_run_id, sweep_id: the parent run and the sweep's id (``orch.sweep``), once opened (or, for a
            worker that joins a sweep, as its queue says).
        queue_id: this coordinator's queue: the sweep's id, or a resumed sweep's id with a suffix.
        work, queue_url: the queue in use and its storage's URL.
        param_axes: the axes its runs log as MLflow params (a search: the axes it samples); None: those
            whose values differ between the cells it runs (:func:`~orchestrator.matrix.varying_axes`).
    """

    def __init__(
        self,
        tracker: Tracker,
        experiment: str,
        *,
        queue: QueueSettings | None = None,
        display: Display | None = None,
        matrix_path: Path | None = None,
    ) -> None:
        self.tracker, self.experiment, self.matrix_path = tracker, experiment, matrix_path
        self.queue = queue or QueueSettings()
        self.display = display or Display()
        self.parent_run_id: str | None = None
        self.sweep_id = self.queue_id = self.queue_url = ""
        self.outcome = SweepOutcome(None)
        self.work: WorkQueue | None = None
        self.param_axes: list[str] | None = None
        self._lease: Lease | None = None
        self.reserve = SpaceReserve("")  # room on the store's disk for the last writes (open() keeps some)

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        experiment: str,
        tracking_uri: str,
        *,
        exclusive: bool = False,
        queue: QueueSettings | None = None,
        display: Display | None = None,
        matrix_path: Path | None = None,
        description: str = "",
    ) -> Iterator[SweepContext]:
        """The context of a sweep of ``experiment`` in the store at ``tracking_uri`` (created when missing,
        before any worker starts, with the experiment) for the block.

        Args:
            exclusive: Hold the matrix's lease for the block: one coordinator of a matrix at a time
                (:mod:`~orchestrator.execute.lease`); the parent run announces its sweep id to it.
            queue, display, matrix_path: As the constructor's.
            description: The matrix's ``description``: the experiment's in ``mlflow ui``
                (:meth:`~orchestrator.tracking.Tracker.describe_experiment`).

        Raises:
            orchestrator.tracking.TrackingError: a name the store refuses (nothing written), a store that
                cannot be opened, or an experiment deleted in it.
            orchestrator.execute.lease.SweepBusy: another coordinator sweeps the matrix (nothing written).
        """
        check_experiment_name(experiment)
        queue, display = queue or QueueSettings(), display or Display()
        display.on_phase("opening the tracking store")
        uri = prepare_store(tracking_uri)
        where = {"storage": queue.storage, "queue_dir": QUEUE_DIR, "matrix_path": matrix_path}
        held = hold_lease(experiment, tracking_uri=uri, **where) if exclusive else contextlib.nullcontext()
        with held as lease, SpaceReserve(uri) as reserve:
            ctx = cls(Tracker(uri), experiment, queue=queue, display=display, matrix_path=matrix_path)
            ctx.tracker.experiment_id(experiment)
            ctx.tracker.describe_experiment(experiment, description.strip())
            ctx._lease, ctx.reserve = lease, reserve
            yield ctx

    # ----------------------------------------------------------------------------------- parent run

    @contextlib.contextmanager
    def parent_run(
        self, tags: dict[str, str], *, label: str = "sweep", sweep_id: str | None = None, resume: bool = False
    ) -> Iterator[SweepOutcome]:
        """The sweep's parent run for the block, which ends it with :meth:`finish`.

        With ``resume``, the newest parent run of the experiment is reopened when it was interrupted and
        ``tags`` describe the same sweep (:func:`~orchestrator.execute.resume.open_parent`); else a new one,
        named ``<label>-<sweep id>`` (the id `orch report` prints), tagged ``tags`` and its sweep id
        (``sweep_id``, default a new one), holds the matrix file. A block stopped by an exception ends it
        KILLED: "interrupted" (Ctrl-C, SIGTERM), the fault (a full disk...), else the error, unless it has
        ended already (a failed submission says so itself).
        """
        reopened = open_parent(self.tracker, self.experiment, tags) if resume else None
        if reopened is not None:
            self.parent_run_id, self.sweep_id = reopened
            self.queue_id = f"{self.sweep_id}-{uuid.uuid4().hex[:6]}"
        else:
            self.sweep_id = self.queue_id = sweep_id or uuid.uuid4().hex[:12]
            self.parent_run_id = self.tracker.start_sweep(
                self.experiment,
                name=self.sweep_id if self.sweep_id.startswith(f"{label}-") else f"{label}-{self.sweep_id}",
                tags=tags | run_tags(RunKind.SWEEP, sweep=self.sweep_id),
                artifacts=[self.matrix_path] if self.matrix_path else [],
            )
        self.outcome = SweepOutcome(self.parent_run_id, self.sweep_id)
        if self._lease is not None:
            self._lease.announce(self.sweep_id)
        try:
            yield self.outcome
        except BaseException as exc:
            self._end_stopped(exc)
            raise

    def joined(self, parent_run_id: str | None, sweep_id: str) -> None:
        """A worker that joins another coordinator's sweep: its runs go under that sweep's parent run."""
        self.parent_run_id, self.sweep_id = parent_run_id, sweep_id
        self.outcome = SweepOutcome(parent_run_id, sweep_id)

    def finish(self, tags: dict[str, str]) -> None:
        """The sweep is done: tag its parent run with ``tags`` and end it FINISHED."""
        assert self.parent_run_id is not None
        self.tracker.set_tags(self.parent_run_id, tags)
        self.tracker.finish(self.parent_run_id, RunStatus.FINISHED)

    def _end_stopped(self, exc: BaseException) -> None:
        """End the parent run of a sweep stopped by ``exc`` KILLED, unless it has ended already. ``exc`` is
        raised again by the caller, whatever happens here."""
        if isinstance(exc, KeyboardInterrupt):
            why = "interrupted"
        elif isinstance(exc, StoreFault):  # a full disk, a read-only folder, a locked or vanished store
            why = f"stopped ({exc.kind}): {exc}"
            exc.sweep_started = True
            self.reserve.release()
        else:
            why = f"coordinator failed: {exc}"
        try:
            assert self.parent_run_id is not None
            if TAG_STATUS not in self.tracker.run_tags_and_start(self.parent_run_id)[0]:
                self.tracker.finish(self.parent_run_id, RunStatus.KILLED, why)
        except Exception:  # noqa: BLE001 - a store that fails now: the next sweep ends it ("coordinator died")
            pass

    # ---------------------------------------------------------------------------------------- queue

    def create_queue(
        self,
        name: str,
        items: list[dict[str, Any]],
        attrs: dict[str, Any],
        *,
        url: str | None = None,
        storage: BaseStorage | None = None,
    ) -> WorkQueue:
        """Create queue ``name`` holding ``items`` (attributes ``attrs``) and use it: in the storage at
        ``url`` (default: this sweep's queue, :meth:`QueueSettings.url`), already open as ``storage`` when
        given."""
        url = url or self.queue.url(self.queue_id)
        storage = storage or open_storage(url, heartbeat=self.queue.heartbeat)
        work = WorkQueue.create(storage, name, items, attrs)
        self.use_queue(work, url)
        return work

    def use_queue(self, work: WorkQueue, url: str) -> None:
        """Use queue ``work``, whose storage is at ``url``: the workers started here claim from it."""
        self.work, self.queue_url = work, url
