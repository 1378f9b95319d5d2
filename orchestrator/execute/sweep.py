"""Executing a matrix: resume, parallel workers, failure capture.

One path for one machine or many: the coordinator enqueues every (cell, seed) still to run in a
:class:`~orchestrator.execute.workqueue.WorkQueue` (an Optuna storage), and worker processes claim items
from it. Workers train and send their epochs back over a pipe; the coordinator is the only process that
writes to the MLflow store (no SQLite write contention), and the store is the record of what is done: a
finished run with the same run key is never run again (:mod:`orchestrator.execute.plan`).
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import queue as queue_mod
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from model.trainer import EpochResult
from orchestrator.execute.launcher import Launcher, submit_workers
from orchestrator.execute.plan import PlanItem, plan_sweep
from orchestrator.execute.resources import WorkerSlot, plan_workers
from orchestrator.execute.worker import worker_main
from orchestrator.execute.workqueue import PREFIX, QueueError, WorkQueue, find_sweep_queue, open_storage
from orchestrator.matrix import Matrix, RunSpec
from orchestrator.tracking import RunKind, RunStatus, Tracker, check_experiment_name, prepare_store, run_tags

__all__ = [
    "SweepEvent",
    "SweepOutcome",
    "join_sweep",
    "run_sweep",
    "run_workers",
]


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
            self._emit(SweepEvent("start", index, spec))
        elif kind == "step":
            self._emit(SweepEvent("step", index, spec, epoch=msg[2], step=msg[3], steps=msg[4]))
        elif kind == "epoch":
            result: EpochResult = msg[2]
            self.tracker.log_epoch(self.run_ids[index], result)
            self._emit(SweepEvent("epoch", index, spec, epoch=result.epoch))
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


# ------------------------------------------------------------------------------------------ a sweep


def _mark_stale(tracker: Tracker, experiment: str) -> None:
    """Runs left RUNNING by a sweep that was killed are marked KILLED (they are run again)."""
    stale = [a.run_id for a in tracker.attempts(experiment) if a.status is RunStatus.RUNNING]
    tracker.mark_killed(stale, "left RUNNING by an interrupted sweep")


def _run_queue(
    work: WorkQueue,
    *,
    workers: int,
    run: Callable[[int], None],
    launcher: Launcher | None = None,
) -> list[tuple[dict[str, Any], str]]:
    """Run the queue's items here (``workers`` local processes), then settle what is left: the items
    nobody is left to run, each with the reason."""
    if workers > 0:
        run(workers)
    if work.heartbeats:  # items other machines still run (their workers hand back dead workers' items)
        while work.pending(fail_stale=False):
            if launcher is not None and not launcher.alive():
                why = "not run: every submitted worker ended before the queue was drained"
                return [(item, why) for item in work.abandon((TrialState.WAITING, TrialState.RUNNING))]
            time.sleep(1.0)
        return []
    # one machine: every local worker has exited, so what is left has nobody to run it
    why = "not run: every worker process died"
    return [(item, why) for item in work.abandon((TrialState.WAITING, TrialState.RUNNING))]


def run_sweep(
    matrix: Matrix,
    specs: list[RunSpec],
    *,
    tracking_uri: str,
    matrix_path: Path | None = None,
    workers: int | None = None,
    workers_per_gpu: int = 1,
    fresh: bool = False,
    storage: str | None = None,
    heartbeat: float = 10.0,
    queue_dir: Path = Path("runs/queue"),
    on_event: Callable[[SweepEvent], None] | None = None,
    on_plan: Callable[[list[PlanItem]], None] | None = None,
    on_phase: Callable[[str], None] = lambda text: None,
    retry_diverged: bool = False,
    edits: dict[str, Any] | None = None,
    launcher: Launcher | None = None,
) -> SweepOutcome:
    """Run every (cell, seed) of ``matrix`` not already finished in the store.

    Runs left RUNNING by a killed sweep are marked KILLED first and run again, as are failed ones.
    ``edits`` (command-line overrides and selections) are recorded as the parent run's ``orch.edits``
    tag, so that the sweep can be reproduced. The queue lives in a journal file under ``queue_dir``, or in
    ``storage`` (an RDB URL such as ``postgresql://...``) where ``orch worker`` processes on other machines
    join it; ``workers=0`` then only coordinates. With a ``launcher`` (e.g.
    :class:`~orchestrator.execute.slurm.SlurmLauncher`, ``storage`` required) this process only
    coordinates: the launcher submits the workers once the queue holds its items; a failed submission
    abandons the queue and ends the parent run KILLED. The call returns once every item is done, wherever
    it ran, or once no submitted worker is left.

    Raises:
        orchestrator.tracking.TrackingError: the tracking store cannot be opened, the matrix's experiment
            was deleted in it or its name is refused (nothing started).
        orchestrator.execute.workqueue.QueueError: the queue storage cannot be opened (nothing started).
        KeyboardInterrupt: interrupted; in-flight runs are marked KILLED.
        Exception: what ``launcher.check()`` or ``launcher.submit()`` raises (nothing runs).
    """
    experiment = matrix.name
    check_experiment_name(experiment)
    if launcher is not None:
        if not storage:
            raise ValueError("a launcher needs a queue storage that its workers reach (storage=...)")
        launcher.check()
        workers = 0
    queue_storage = open_storage(storage, heartbeat=heartbeat) if storage else None
    on_phase("opening the tracking store")
    tracker = Tracker(prepare_store(tracking_uri))
    tracker.experiment_id(experiment)
    _mark_stale(tracker, experiment)
    on_phase(f"planning {len(specs)} runs")
    plan = plan_sweep(specs, tracker, experiment, fresh=fresh, retry_diverged=retry_diverged)
    if on_plan is not None:
        on_plan(plan)
    todo = [i for i, p in enumerate(plan) if p.state.runs]
    sweep_id = uuid.uuid4().hex[:12]
    parent = tracker.start_sweep(
        experiment,
        name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
        tags=run_tags(
            RunKind.SWEEP,
            sweep=sweep_id,
            runs_planned=len(todo),
            fresh=str(fresh).lower(),
            retry_diverged=str(retry_diverged).lower(),
            edits={k: v for k, v in (edits or {}).items() if v} or None,
        ),
        artifacts=[matrix_path] if matrix_path else [],
    )
    outcome = SweepOutcome(parent, sweep_id, skipped=len(specs) - len(todo))
    if todo:
        device = specs[todo[0]].config.trainer.device
        slots = (
            []
            if workers == 0
            else plan_workers(len(todo), device, workers=workers, workers_per_gpu=workers_per_gpu)
        )
        n = len(slots)
        storage_url = storage or str(queue_dir / f"{sweep_id}.journal")
        queue_name = f"{PREFIX}:{experiment}:{sweep_id}"
        work = WorkQueue.create(
            queue_storage or open_storage(storage_url),
            queue_name,
            [{"index": i, "run_key": specs[i].run_key} for i in todo],
            {"matrix": experiment, "sweep_id": sweep_id, "parent_run_id": parent, "active": True}
            | {"created": time.time()},
        )
        workers_here = functools.partial(
            run_workers,
            specs,
            storage_url=storage_url,
            queue_name=queue_name,
            tracker=tracker,
            experiment=experiment,
            parent_run_id=parent,
            sweep_id=sweep_id,
            slots=slots,
            on_event=on_event,
            outcome=outcome,
            heartbeat=heartbeat,
        )
        if launcher is not None:
            submit_workers(launcher, work, tracker, parent, sweep_id, on_phase)
        else:
            on_phase(f"starting {n} worker{'s' if n != 1 else ''}" if n else "waiting for remote workers")
        try:
            lost = _run_queue(work, workers=n, run=lambda _: workers_here(), launcher=launcher)
        except BaseException:
            work.abandon()  # remote workers must not start what is left
            tracker.finish(parent, RunStatus.KILLED, "interrupted")
            raise
        finally:
            work.close()
            if launcher is not None:
                launcher.release()
        if work.heartbeats:
            _settle_remote(tracker, experiment, sweep_id, outcome, grace=3 * heartbeat + 10)
        for item, why in lost:
            outcome.count(specs[item["index"]], RunStatus.CRASHED, why)
    tracker.set_tags(parent, {"orch.ran": str(outcome.ran), "orch.crashed": str(outcome.crashed)})
    tracker.finish(parent, RunStatus.FINISHED)
    return outcome


def _settle_remote(
    tracker: Tracker, experiment: str, sweep_id: str, outcome: SweepOutcome, grace: float
) -> None:
    """After the queue drained: runs of this sweep still RUNNING after ``grace`` seconds (a remote
    worker logs a run's end just after handing its item back) belong to dead workers (KILLED), and
    counts include what other machines ran."""
    deadline = time.monotonic() + grace
    while True:
        runs = [
            (r.info.run_id, RunStatus.of(r.info.status, r.data.tags))
            for r in tracker.sweep_runs(experiment, sweep_id)
        ]
        if not any(s is RunStatus.RUNNING for _, s in runs) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    tracker.mark_killed(
        [rid for rid, s in runs if s is RunStatus.RUNNING],
        "worker died; its item was retried by another worker",
    )
    ended = [s for _, s in runs if s not in (RunStatus.RUNNING, RunStatus.KILLED)]
    if len(ended) > outcome.ran:  # other machines' runs
        outcome.ran = len(ended)
        outcome.finished = sum(s is RunStatus.FINISHED for s in ended)
        outcome.stopped = sum(s is RunStatus.STOPPED for s in ended)
        outcome.diverged = sum(s is RunStatus.DIVERGED for s in ended)
        outcome.crashed = sum(s is RunStatus.CRASHED for s in ended)


def _find_queue(storage: Any, matrix_name: str, queue_name: str | None) -> str | None:
    """``queue_name`` once it exists in ``storage``, else the newest active sweep of the matrix."""
    if queue_name is None:
        return find_sweep_queue(storage, matrix_name)
    try:
        storage.get_study_id_from_name(queue_name)
    except KeyError:
        return None
    return queue_name


def join_sweep(
    matrix: Matrix,
    specs: list[RunSpec],
    *,
    tracking_uri: str,
    storage: str,
    workers: int | None = None,
    workers_per_gpu: int = 1,
    heartbeat: float = 10.0,
    wait: float = 60.0,
    on_event: Callable[[SweepEvent], None] | None = None,
    queue_name: str | None = None,
) -> SweepOutcome:
    """`orch worker`: join the newest active sweep of ``matrix`` in ``storage`` and run its items.

    ``queue_name`` joins that sweep's queue instead (a submitted worker; a queue closed meanwhile leaves
    it nothing to do).

    Raises:
        orchestrator.execute.workqueue.QueueError: unreachable storage, no sweep to join within ``wait``
            seconds, or a matrix that differs from the coordinator's.
    """
    queue_storage = open_storage(storage, heartbeat=heartbeat)
    deadline = time.monotonic() + wait
    while (name := _find_queue(queue_storage, matrix.name, queue_name)) is None:
        if time.monotonic() > deadline:
            what = f"sweep queue {queue_name!r}" if queue_name else f"active sweep of {matrix.name!r}"
            raise QueueError(f"no {what} in the queue storage after {wait:g} s")
        time.sleep(1.0)
    work = WorkQueue(queue_storage, name)
    keys = {s.run_key for s in specs}
    items = work.items()
    foreign = [it["run_key"] for it in items if it["run_key"] not in keys]
    if foreign:
        raise QueueError(
            f"the sweep's runs are not this matrix's ({len(foreign)} unknown run keys): give the worker "
            "the same matrix file (and base config) as the coordinator"
        )
    tracker = Tracker(prepare_store(tracking_uri))  # a worker may be the first to open a fresh store
    slots = plan_workers(
        len(items), specs[0].config.trainer.device, workers=workers, workers_per_gpu=workers_per_gpu
    )
    attrs = work.attrs
    outcome = SweepOutcome(attrs.get("parent_run_id"), attrs.get("sweep_id", ""))
    run_workers(
        specs,
        storage_url=storage,
        queue_name=name,
        tracker=tracker,
        experiment=matrix.name,
        parent_run_id=attrs.get("parent_run_id"),
        sweep_id=attrs.get("sweep_id", ""),
        slots=slots,
        on_event=on_event,
        outcome=outcome,
        heartbeat=heartbeat,
    )
    return outcome
