"""Executing a matrix: :func:`run_sweep`, the coordinator (resume, parallel workers, failure capture).

One path for one machine or many: the coordinator enqueues every (cell, seed) still to run in a
:class:`~orchestrator.execute.workqueue.WorkQueue` (an Optuna storage), and worker processes claim items
from it. Workers train and send their epochs back over a pipe; the coordinator is the only process that
writes to the MLflow store (no SQLite write contention), and the store is the record of what is done: a
finished run with the same run key is never run again (:mod:`orchestrator.execute.plan`). The local
workers are started and followed in :mod:`orchestrator.execute.workers`; `orch worker` joins a sweep
through :mod:`orchestrator.execute.join`.
"""

from __future__ import annotations

import functools
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from orchestrator.execute.join import join_sweep
from orchestrator.execute.launcher import Launcher, submit_workers
from orchestrator.execute.lease import hold_lease
from orchestrator.execute.plan import PlanItem, plan_sweep
from orchestrator.execute.resources import plan_workers
from orchestrator.execute.resume import open_parent, settle_dead_sweeps
from orchestrator.execute.signals import Preempted, handle_signals
from orchestrator.execute.workers import SweepEvent, SweepOutcome, run_workers
from orchestrator.execute.workqueue import PREFIX, WorkQueue, open_storage
from orchestrator.matrix import Matrix, RunSpec
from orchestrator.tracking import RunKind, RunStatus, Tracker, check_experiment_name, prepare_store, run_tags
from orchestrator.tracking.vocabulary import TAG_STATUS

__all__ = ["SweepEvent", "SweepOutcome", "join_sweep", "run_sweep", "run_workers"]


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

    The coordinator first takes the matrix's lease (:mod:`orchestrator.execute.lease`): one coordinator
    of a matrix at a time. Holding it, it ends what dead coordinators left RUNNING (KILLED, run again) and
    resumes an interrupted sweep of the same matrix under its parent run (:mod:`orchestrator.execute.resume`).
    Failed runs are run again too. ``edits`` (command-line overrides and selections) are recorded as the
    parent run's ``orch.edits`` tag, so that the sweep can be reproduced. The queue lives in a journal
    file under ``queue_dir``, or in ``storage`` (an RDB URL such as ``postgresql://...``) where ``orch
    worker`` processes on other machines join it; ``workers=0`` then only coordinates. With a ``launcher``
    (e.g. :class:`~orchestrator.execute.slurm.SlurmLauncher`, ``storage`` required) this process only
    coordinates: the launcher submits the workers once the queue holds its items; a failed submission
    abandons the queue and ends the parent run KILLED. The call returns once every item is done, wherever
    it ran, or once no submitted worker is left. SIGTERM is taken as Ctrl-C (:class:`~.signals.Preempted`):
    the parent run ends KILLED "interrupted", whatever stopped the sweep.

    Raises:
        orchestrator.execute.lease.SweepBusy: another coordinator sweeps the matrix (nothing written).
        orchestrator.tracking.TrackingError: the tracking store cannot be opened, the matrix's experiment
            was deleted in it or its name is refused (nothing started).
        orchestrator.execute.workqueue.QueueError: the queue storage cannot be opened (nothing started).
        KeyboardInterrupt: interrupted (Ctrl-C, or :class:`~.signals.Preempted` on SIGTERM); in-flight
            runs and the parent run are marked KILLED.
        Exception: what ``launcher.check()`` or ``launcher.submit()`` raises (nothing runs).
    """
    experiment = matrix.name
    check_experiment_name(experiment)
    if launcher is not None:
        if not storage:
            raise ValueError("a launcher needs a queue storage that its workers reach (storage=...)")
        launcher.check()
        workers = 0
    with handle_signals([signal.SIGTERM], raise_as=Preempted.by):
        queue_storage = open_storage(storage, heartbeat=heartbeat) if storage else None
        on_phase("opening the tracking store")
        uri = prepare_store(tracking_uri)
        where = {"tracking_uri": uri, "storage": storage, "queue_dir": queue_dir, "matrix_path": matrix_path}
        with hold_lease(experiment, **where) as lease:
            tracker = Tracker(uri)
            tracker.experiment_id(experiment)
            live = settle_dead_sweeps(tracker, experiment, queue_storage)
            on_phase(f"planning {len(specs)} runs")
            plan = plan_sweep(specs, tracker, experiment, fresh=fresh, retry_diverged=retry_diverged)
            if on_plan is not None:
                on_plan(plan)
            todo = [i for i, p in enumerate(plan) if p.state.runs and specs[i].run_key not in live]
            tags = run_tags(
                RunKind.SWEEP,
                runs_planned=len(todo),
                fresh=str(fresh).lower(),
                retry_diverged=str(retry_diverged).lower(),
                edits={k: v for k, v in (edits or {}).items() if v} or None,
            )
            parent, sweep_id, queue_id = _parent_run(tracker, experiment, tags, matrix_path)
            lease.announce(sweep_id)
            outcome = SweepOutcome(parent, sweep_id, skipped=len(specs) - len(todo))
            try:
                if todo:
                    sweep = _Sweep(specs, tracker, experiment, parent, sweep_id, outcome, on_event, on_phase)
                    slots = (
                        []
                        if workers == 0
                        else plan_workers(
                            len(todo), specs[todo[0]].config.trainer.device, workers=workers,
                            workers_per_gpu=workers_per_gpu,
                        )
                    )  # fmt: skip
                    sweep.run(todo, slots, storage, queue_storage, queue_dir / f"{queue_id}.journal",
                              queue_id, heartbeat, launcher)  # fmt: skip
            except BaseException as exc:
                _end_stopped(tracker, parent, exc)
                raise
            tracker.set_tags(parent, {"orch.ran": str(outcome.ran), "orch.crashed": str(outcome.crashed)})
            tracker.finish(parent, RunStatus.FINISHED)
    return outcome


def _end_stopped(tracker: Tracker, parent: str, exc: BaseException) -> None:
    """The parent run of a sweep stopped by ``exc`` ends KILLED: "interrupted" (Ctrl-C, SIGTERM), else
    the error, unless it has ended already (a failed submission says so itself). ``exc`` is raised
    again by the caller, whatever happens here."""
    why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"coordinator failed: {exc}"
    try:
        if TAG_STATUS not in tracker.run_tags_and_start(parent)[0]:
            tracker.finish(parent, RunStatus.KILLED, why)
    except Exception:  # noqa: BLE001 - a store that fails now: the next sweep ends it ("coordinator died")
        pass


def _parent_run(
    tracker: Tracker, experiment: str, tags: dict[str, str], matrix_path: Path | None
) -> tuple[str, str, str]:
    """The sweep's parent run: the interrupted one of the same sweep, reopened, or a new one; returns its
    run id, its sweep id and the id of this coordinator's queue (the sweep id of a new sweep)."""
    reopened = open_parent(tracker, experiment, tags)
    if reopened is not None:
        parent, sweep_id = reopened
        return parent, sweep_id, f"{sweep_id}-{uuid.uuid4().hex[:6]}"
    sweep_id = uuid.uuid4().hex[:12]
    parent = tracker.start_sweep(
        experiment,
        name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
        tags=tags | run_tags(RunKind.SWEEP, sweep=sweep_id),
        artifacts=[matrix_path] if matrix_path else [],
    )
    return parent, sweep_id, sweep_id


class _Sweep:
    """One coordinator's run of a sweep's items: its queue, its workers, what is left at the end."""

    def __init__(
        self,
        specs: list[RunSpec],
        tracker: Tracker,
        experiment: str,
        parent: str,
        sweep_id: str,
        outcome: SweepOutcome,
        on_event: Callable[[SweepEvent], None] | None,
        on_phase: Callable[[str], None],
    ) -> None:
        self.specs, self.tracker, self.experiment = specs, tracker, experiment
        self.parent, self.sweep_id, self.outcome = parent, sweep_id, outcome
        self.on_event, self.on_phase = on_event, on_phase

    def run(
        self,
        todo: list[int],
        slots: list,
        storage: str | None,
        queue_storage: Any | None,
        journal: Path,
        queue_id: str,
        heartbeat: float,
        launcher: Launcher | None,
    ) -> None:
        """Enqueue ``todo`` (indices into the specs), run them (``slots`` local workers, or a launcher's,
        or remote workers), then settle what is left."""
        specs, n, started = self.specs, len(slots), time.time()
        storage_url = storage or str(journal)
        queue_name = f"{PREFIX}:{self.experiment}:{queue_id}"
        work = WorkQueue.create(
            queue_storage or open_storage(storage_url),
            queue_name,
            [{"index": i, "run_key": specs[i].run_key} for i in todo],
            {"matrix": self.experiment, "sweep_id": self.sweep_id, "parent_run_id": self.parent}
            | {"active": True, "created": started},
        )
        workers_here = functools.partial(
            run_workers,
            specs,
            storage_url=storage_url,
            queue_name=queue_name,
            tracker=self.tracker,
            experiment=self.experiment,
            parent_run_id=self.parent,
            sweep_id=self.sweep_id,
            slots=slots,
            on_event=self.on_event,
            outcome=self.outcome,
            heartbeat=heartbeat,
        )
        if launcher is not None:
            submit_workers(launcher, work, self.tracker, self.parent, self.sweep_id, self.on_phase)
        else:
            phase = f"starting {n} worker{'s' if n != 1 else ''}" if n else "waiting for remote workers"
            self.on_phase(phase)
        try:
            lost = _run_queue(work, workers=n, run=lambda _: workers_here(), launcher=launcher)
        except BaseException:
            work.abandon()  # remote workers must not start what is left
            raise
        finally:
            work.close()
            if launcher is not None:
                launcher.release()
        if work.heartbeats:
            _settle_remote(self.tracker, self.experiment, self.sweep_id, self.outcome,
                           grace=3 * heartbeat + 10, since=started)  # fmt: skip
        for item, why in lost:
            self.outcome.count(specs[item["index"]], RunStatus.CRASHED, why)


def _settle_remote(
    tracker: Tracker, experiment: str, sweep_id: str, outcome: SweepOutcome, grace: float, since: float
) -> None:
    """After the queue drained: runs of this sweep started since ``since`` (epoch seconds: by this
    coordinator's workers, not an interrupted attempt's) still RUNNING after ``grace`` seconds (a remote
    worker logs a run's end just after handing its item back) belong to dead workers (KILLED), and
    counts include what other machines ran."""
    deadline = time.monotonic() + grace
    while True:
        runs = [
            (r.info.run_id, RunStatus.of(r.info.status, r.data.tags))
            for r in tracker.sweep_runs(experiment, sweep_id)
            if (r.info.start_time or 0) >= since * 1000 - 1000
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
