"""Executing a matrix: :func:`run_sweep`, the coordinator (resume, parallel workers, failure capture).

One path for one machine or many: the coordinator enqueues every (cell, seed) still to run in a
:class:`~orchestrator.execute.workqueue.WorkQueue` (an Optuna storage), and worker processes claim items
from it. Workers train and send their epochs back over a pipe; the coordinator is the only process that
writes to the MLflow store (no SQLite write contention), and the store is the record of what is done: a
finished run with the same run key is never run again (:mod:`orchestrator.execute.plan`). What the sweep
shares (its store, parent run, queue, outcome and display) is its
:class:`~orchestrator.execute.context.SweepContext`; the local workers are started and followed in
:mod:`orchestrator.execute.workers`; `orch worker` joins a sweep through :mod:`orchestrator.execute.join`.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import TrialState

from orchestrator.execute.context import Display, QueueSettings, SweepContext, SweepOutcome, SweepRequest
from orchestrator.execute.launcher import Launcher, submit_workers
from orchestrator.execute.plan import plan_sweep
from orchestrator.execute.resources import WorkerSlot, plan_workers
from orchestrator.execute.resume import settle_dead_sweeps
from orchestrator.execute.signals import STOP_SIGNALS, Preempted, handle_signals
from orchestrator.execute.workers import run_workers
from orchestrator.execute.workqueue import PREFIX, open_storage
from orchestrator.matrix import Matrix, RunSpec
from orchestrator.tracking import RunStatus

__all__ = ["run_sweep"]


def run_sweep(
    matrix: Matrix,
    specs: list[RunSpec],
    *,
    tracking_uri: str,
    matrix_path: Path | None = None,
    workers: int | None = None,
    workers_per_gpu: int = 1,
    request: SweepRequest = SweepRequest(),  # noqa: B008 - frozen
    queue: QueueSettings = QueueSettings(),  # noqa: B008 - frozen
    display: Display | None = None,
    launcher: Launcher | None = None,
) -> SweepOutcome:
    """Run every (cell, seed) of ``matrix`` not already finished in the store.

    The coordinator first takes the matrix's lease (:mod:`orchestrator.execute.lease`): one coordinator
    of a matrix at a time. Holding it, it ends what dead coordinators left RUNNING (KILLED, run again) and
    resumes an interrupted sweep of the same matrix and ``request`` under its parent run
    (:mod:`orchestrator.execute.resume`). Failed runs are run again too. The request's edits (command-line
    overrides and selections) are recorded as the parent run's ``orch.edits`` tag, so that the sweep can be
    reproduced. The queue lives in a journal file under ``runs/queue``, or in ``queue.storage`` (an RDB URL
    such as ``postgresql://...``) where ``orch worker`` processes on other machines join it; ``workers=0``
    then only coordinates. With a ``launcher`` (e.g. :class:`~orchestrator.execute.slurm.SlurmLauncher`,
    ``queue.storage`` required) this process only coordinates: the launcher submits the workers once the
    queue holds its items; a failed submission abandons the queue and ends the parent run KILLED. The call
    returns once every item is done, wherever it ran, or once no submitted worker is left. SIGTERM and
    SIGHUP are taken as Ctrl-C (:class:`~.signals.Preempted`), and a second signal does not disturb the
    shutdown the first started: the parent run ends KILLED "interrupted", whatever stopped the sweep.
    ``display`` hears the phases, the plan and every run's events.

    Raises:
        orchestrator.execute.lease.SweepBusy: another coordinator sweeps the matrix (nothing written).
        orchestrator.tracking.TrackingError: the tracking store cannot be opened, the matrix's experiment
            was deleted in it or its name is refused (nothing started).
        orchestrator.execute.workqueue.QueueError: the queue storage cannot be opened (nothing started).
        KeyboardInterrupt: interrupted (Ctrl-C, or :class:`~.signals.Preempted` on SIGTERM or SIGHUP);
            in-flight runs and the parent run are marked KILLED.
        Exception: what ``launcher.check()`` or ``launcher.submit()`` raises (nothing runs).
    """
    if launcher is not None:
        if not queue.storage:
            raise ValueError("a launcher needs a queue storage that its workers reach (queue.storage=...)")
        launcher.check()
        workers = 0
    with handle_signals(STOP_SIGNALS, raise_as=Preempted.by):
        queue_storage = open_storage(queue.storage, heartbeat=queue.heartbeat) if queue.storage else None
        with SweepContext.open(
            matrix.name,
            tracking_uri,
            exclusive=True,
            queue=queue,
            display=display,
            matrix_path=matrix_path,
            description=matrix.description,
        ) as ctx:
            live = settle_dead_sweeps(ctx.tracker, ctx.experiment, queue_storage)
            ctx.display.on_phase(f"planning {len(specs)} runs")
            plan = plan_sweep(
                specs, ctx.tracker, ctx.experiment, fresh=request.fresh, retry_diverged=request.retry_diverged
            )
            ctx.display.on_plan(plan)
            todo = [i for i, p in enumerate(plan) if p.state.runs and specs[i].run_key not in live]
            with ctx.parent_run(request.tags(runs_planned=len(todo)), resume=True) as outcome:
                outcome.skipped = len(specs) - len(todo)
                if todo:
                    slots = (
                        []
                        if workers == 0
                        else plan_workers(
                            len(todo), specs[todo[0]].device, workers=workers,
                            workers_per_gpu=workers_per_gpu,
                        )
                    )  # fmt: skip
                    _run_items(ctx, specs, todo, slots, launcher, queue_storage)
                ctx.display.on_done(outcome)  # its report, recorded under the parent run still open
                ctx.finish({"orch.ran": str(outcome.ran), "orch.crashed": str(outcome.crashed)})
    return outcome


def _run_items(
    ctx: SweepContext,
    specs: list[RunSpec],
    todo: list[int],
    slots: list[WorkerSlot],
    launcher: Launcher | None,
    queue_storage: BaseStorage | None,
) -> None:
    """Enqueue ``todo`` (indices into the specs), run them (``slots`` local workers, or a launcher's, or
    remote workers), then settle what is left."""
    started = time.time()
    items = [{"index": i, "run_key": specs[i].run_key} for i in todo]
    attrs = {"matrix": ctx.experiment, "sweep_id": ctx.sweep_id, "parent_run_id": ctx.parent_run_id}
    name = f"{PREFIX}:{ctx.experiment}:{ctx.queue_id}"
    work = ctx.create_queue(name, items, attrs | {"active": True, "created": started}, storage=queue_storage)
    if launcher is not None:
        submit_workers(ctx, launcher)
    else:
        n = len(slots)
        ctx.display.on_phase(
            f"starting {n} worker{'s' if n != 1 else ''}" if n else "waiting for remote workers"
        )
    try:
        if slots:
            run_workers(ctx, specs, slots)
        lost = _left_over(ctx, launcher)
    except BaseException:
        with contextlib.suppress(Exception):  # a queue on a full disk: the next coordinator closes it
            work.abandon()  # remote workers must not start what is left
        raise
    finally:
        with contextlib.suppress(Exception):  # bookkeeping: a queue left active is closed by the next one
            work.close()
        if launcher is not None:
            launcher.release()
    if work.heartbeats:
        _settle_remote(ctx, grace=3 * ctx.queue.heartbeat + 10, since=started)
    for item, why in lost:
        ctx.outcome.count(specs[item["index"]], RunStatus.CRASHED, why)


def _left_over(ctx: SweepContext, launcher: Launcher | None) -> list[tuple[dict[str, Any], str]]:
    """Once the workers here have exited: the items nobody is left to run, each with the reason (with
    heartbeats, after waiting for other machines' workers, which hand back dead workers' items)."""
    work = ctx.work
    assert work is not None
    if work.heartbeats:
        while work.pending(fail_stale=False):
            if launcher is not None and not launcher.alive():
                why = "not run: every submitted worker ended before the queue was drained"
                return [(item, why) for item in work.abandon((TrialState.WAITING, TrialState.RUNNING))]
            time.sleep(1.0)
        return []
    # one machine: every local worker has exited, so what is left has nobody to run it
    why = "not run: every worker process died"
    return [(item, why) for item in work.abandon((TrialState.WAITING, TrialState.RUNNING))]


def _settle_remote(ctx: SweepContext, grace: float, since: float) -> None:
    """After the queue drained: runs of this sweep started since ``since`` (epoch seconds: by this
    coordinator's workers, not an interrupted attempt's) still RUNNING after ``grace`` seconds (a remote
    worker logs a run's end just after handing its item back) belong to dead workers (KILLED), and
    counts include what other machines ran."""
    deadline = time.monotonic() + grace
    while True:
        runs = [
            (r.info.run_id, RunStatus.of(r.info.status, r.data.tags))
            for r in ctx.tracker.sweep_runs(ctx.experiment, ctx.sweep_id)
            if (r.info.start_time or 0) >= since * 1000 - 1000
        ]
        if not any(s is RunStatus.RUNNING for _, s in runs) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    ctx.tracker.mark_killed(
        [rid for rid, s in runs if s is RunStatus.RUNNING],
        "worker died; its item was retried by another worker",
    )
    ended = [s for _, s in runs if s not in (RunStatus.RUNNING, RunStatus.KILLED)]
    outcome = ctx.outcome
    if len(ended) > outcome.ran:  # other machines' runs
        outcome.ran = len(ended)
        outcome.finished = sum(s is RunStatus.FINISHED for s in ended)
        outcome.stopped = sum(s is RunStatus.STOPPED for s in ended)
        outcome.diverged = sum(s is RunStatus.DIVERGED for s in ended)
        outcome.crashed = sum(s is RunStatus.CRASHED for s in ended)
