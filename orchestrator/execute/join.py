"""`orch worker`: a process on another machine (or a Slurm task) that joins a running sweep's queue."""

from __future__ import annotations

import time
from typing import Any

from orchestrator.execute.context import Display, QueueSettings, SweepContext, SweepOutcome
from orchestrator.execute.resources import plan_workers
from orchestrator.execute.workers import run_workers
from orchestrator.execute.workqueue import QueueError, WorkQueue, find_sweep_queue, open_storage
from orchestrator.matrix import Matrix, RunSpec
from orchestrator.tracking import Tracker, prepare_store

__all__ = ["join_sweep"]


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
    queue: QueueSettings,
    workers: int | None = None,
    workers_per_gpu: int = 1,
    wait: float = 60.0,
    display: Display | None = None,
    queue_name: str | None = None,
) -> SweepOutcome:
    """`orch worker`: join the newest active sweep of ``matrix`` in ``queue.storage`` and run its items.

    ``queue_name`` joins that sweep's queue instead (a submitted worker; a queue closed meanwhile leaves
    it nothing to do). Its runs go under the sweep's parent run, as the coordinator's own.

    Raises:
        orchestrator.execute.workqueue.QueueError: unreachable storage, no sweep to join within ``wait``
            seconds, or a matrix that differs from the coordinator's.
    """
    if not queue.storage:
        raise QueueError("a worker joins a sweep's queue in a storage it reaches: give its storage")
    queue_storage = open_storage(queue.storage, heartbeat=queue.heartbeat)
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
    # a worker may be the first to open a fresh store
    ctx = SweepContext(Tracker(prepare_store(tracking_uri)), matrix.name, queue=queue, display=display)
    ctx.joined(work.attrs.get("parent_run_id"), work.attrs.get("sweep_id", ""))
    ctx.use_queue(work, queue.storage)
    device = specs[0].device
    run_workers(
        ctx, specs, plan_workers(len(items), device, workers=workers, workers_per_gpu=workers_per_gpu)
    )
    return ctx.outcome
