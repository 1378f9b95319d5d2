"""Executing a matrix: plan, resume, parallel workers, failure capture.

One path for one machine or many: the coordinator enqueues every (cell, seed) still to run in a
:class:`~orchestrator.queue.WorkQueue` (an Optuna storage), and worker processes claim items from it.
Workers train and send their epochs back over a pipe; the coordinator is the only process that writes
to the MLflow store (no SQLite write contention), and the store is the record of what is done: a
FINISHED run with the same run key is never run again.
"""

from __future__ import annotations

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
from orchestrator.matrix import Matrix, RunSpec
from orchestrator.queue import PREFIX, QueueError, WorkQueue, find_sweep_queue, open_storage
from orchestrator.tracking import TAG_CELL, TAG_KEY, TAG_SEED, TAG_SWEEP, Tracker, prepare_store
from orchestrator.worker import worker_main

__all__ = [
    "PlanItem",
    "SweepEvent",
    "SweepOutcome",
    "default_workers",
    "join_sweep",
    "plan_sweep",
    "preflight",
    "run_sweep",
    "run_workers",
]


@dataclass(frozen=True)
class PlanItem:
    spec: RunSpec
    state: str  # done | todo | failed | killed
    previous_run: str | None = None


@dataclass
class SweepOutcome:
    parent_run_id: str | None
    ran: int = 0
    finished: int = 0
    diverged: int = 0
    crashed: int = 0
    stopped: int = 0
    skipped: int = 0
    interrupted: bool = False
    failures: list[tuple[str, int, str]] = field(default_factory=list)  # (cell, seed, reason)


@dataclass(frozen=True)
class SweepEvent:
    """What the display hears: ``kind`` in start | step | epoch | end."""

    kind: str
    item: int
    spec: RunSpec
    epoch: int | None = None
    step: int | None = None
    steps: int | None = None
    status: str | None = None
    reason: str | None = None


def default_workers(n_runs: int, device: str = "auto") -> int:
    """One worker per CPU core on CPU (each gets one thread); one on a single GPU."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return max(1, min(n_runs, torch.cuda.device_count()))
    return max(1, min(n_runs, os.cpu_count() or 1))


def preflight(specs: list[RunSpec]) -> None:
    """Check, once per distinct setting, what would make every run of a sweep fail: a device this
    machine lacks, a data file or folder that does not exist.

    Raises:
        model.config.ConfigError: a device that is not here.
        model.data.DataError: a missing data path.
    """
    from model.config import FastMRIData, HDF5Data
    from model.data import DataError
    from model.trainer import resolve_device

    for device in {s.config.trainer.device for s in specs}:
        resolve_device(device)
    for data in {s.config.data.model_dump_json(): s.config.data for s in specs}.values():
        path = (
            data.path
            if isinstance(data, HDF5Data)
            else data.directory
            if isinstance(data, FastMRIData)
            else None
        )
        if path is not None and not Path(path).exists():
            raise DataError(f"{path}: no such data {'file' if isinstance(data, HDF5Data) else 'folder'}")


def plan_sweep(
    specs: list[RunSpec], tracker: Tracker, experiment: str, *, fresh: bool = False
) -> list[PlanItem]:
    """What a sweep would do with each run: ``done`` (a FINISHED run has its key; one stopped early counts
    only while the matrix asks for early stops), ``early`` (stopped early, but the matrix now asks for the
    full budget: run again), ``failed`` (its last attempt failed: retried), ``killed`` (interrupted:
    retried) or ``todo``."""
    states = tracker.run_states(experiment)
    plan = []
    for spec in specs:
        runs = states.get(spec.run_key, [])
        done_states = ("FINISHED", "FINISHED_EARLY") if spec.early_stop else ("FINISHED",)
        finished = [rid for rid, status in runs if status in done_states]
        if finished and not fresh:
            plan.append(PlanItem(spec, "done", finished[-1]))
        elif runs and not fresh and runs[-1][1] == "FINISHED_EARLY":
            plan.append(PlanItem(spec, "early", runs[-1][0]))
        elif runs and not fresh:
            status = runs[-1][1]
            plan.append(PlanItem(spec, "failed" if status == "FAILED" else "killed", runs[-1][0]))
        else:
            plan.append(PlanItem(spec, "todo"))
    return plan


# -------------------------------------------------------------------------------------- coordinator


def run_workers(
    specs: list[RunSpec],
    *,
    storage_url: str,
    queue_name: str,
    tracker: Tracker,
    experiment: str,
    parent_run_id: str | None,
    sweep_id: str,
    workers: int,
    threads: int,
    outcome: SweepOutcome,
    on_event: Callable[[SweepEvent], None] | None = None,
    heartbeat: float = 10.0,
) -> SweepOutcome:
    """Start ``workers`` processes on the queue and track what they report until they are done.

    Queue items name an index into ``specs`` (the matrix's full expansion). Runs in flight when this
    is interrupted are marked KILLED in the store and KeyboardInterrupt is re-raised.
    """
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    payloads = [s.to_payload() for s in specs]
    procs = [
        ctx.Process(
            target=worker_main,
            args=(storage_url, queue_name, payloads, events, threads, os.getpid(), heartbeat),
            daemon=True,
            name=f"orch-worker-{i}",
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    work = WorkQueue(open_storage(storage_url, heartbeat=heartbeat), queue_name)
    run_ids: dict[int, str] = {}
    owner: dict[int, tuple[int, int]] = {}  # item -> (worker pid, trial id)
    open_items: set[int] = set()

    def emit(event: SweepEvent) -> None:
        if on_event is not None:
            on_event(event)

    def handle(msg: tuple[Any, ...]) -> None:
        kind, index = msg[0], msg[1]
        spec = specs[index]
        if kind == "start":
            tags = {TAG_SWEEP: sweep_id, TAG_CELL: spec.cell, TAG_SEED: str(spec.seed), TAG_KEY: spec.run_key}
            tags |= {f"orch.axis.{k}": str(v) for k, v in spec.axes.items()}
            if spec.expect:
                tags["orch.expect"] = spec.expect
            run_ids[index] = tracker.start_run(
                experiment,
                spec.config,
                name=f"{spec.cell}/seed{spec.seed}",
                tags=tags,
                parent_id=parent_run_id,
            )
            owner[index] = (msg[2], msg[3])
            open_items.add(index)
            emit(SweepEvent("start", index, spec))
        elif kind == "step":
            emit(SweepEvent("step", index, spec, epoch=msg[2], step=msg[3], steps=msg[4]))
        elif kind == "epoch":
            result: EpochResult = msg[2]
            tracker.log_epoch(run_ids[index], result)
            emit(SweepEvent("epoch", index, spec, epoch=result.epoch))
        elif kind == "end":
            if index not in open_items:  # already buried as its worker's death was seen first
                return
            status, reason, tb = msg[2], msg[3], msg[4]
            tracker.finish(run_ids[index], status, reason, tb)
            open_items.discard(index)
            if status == "killed":  # its item goes back to the queue for another worker
                emit(SweepEvent("end", index, spec, status=status, reason=reason))
                return
            outcome.ran += 1
            if status == "finished":
                outcome.finished += 1
            elif status == "stopped":
                outcome.stopped += 1
            elif status == "diverged":
                outcome.diverged += 1
                outcome.failures.append((spec.cell, spec.seed, reason or "diverged"))
            else:
                outcome.crashed += 1
                outcome.failures.append((spec.cell, spec.seed, reason or "crashed"))
            emit(SweepEvent("end", index, spec, status=status, reason=reason))

    def buried(p: mp.process.BaseProcess) -> None:
        """A worker died mid-run (killed, out of memory...): record it; the others go on."""
        for index in [i for i in open_items if owner[i][0] == p.pid]:
            why = f"worker process died (exit code {p.exitcode})"
            if work.heartbeats:
                # many machines: the item's heartbeat goes stale and another worker retries it
                handle(("end", index, "killed", f"{why}; handed to another worker", None))
            else:
                work.done(owner[index][1], ok=False)
                handle(("end", index, "crashed", why, None))

    try:
        while True:
            try:
                handle(events.get(timeout=0.2))
                continue
            except queue_mod.Empty:
                pass
            dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
            if dead:
                while True:  # what the dead sent before dying comes first
                    try:
                        handle(events.get(timeout=0.05))
                    except queue_mod.Empty:
                        break
                for p in dead:
                    buried(p)
            if not any(p.is_alive() for p in procs):
                while True:  # drain what the last workers sent before exiting
                    try:
                        handle(events.get(timeout=0.05))
                    except queue_mod.Empty:
                        break
                break
    except BaseException:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)
        for index in list(open_items):
            tracker.finish(run_ids[index], "killed", "sweep interrupted")
        raise
    return outcome


def _threads(workers: int) -> int:
    """CPU threads per worker: the cores split between the workers, no oversubscription."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def run_sweep(
    matrix: Matrix,
    specs: list[RunSpec],
    *,
    tracking_uri: str,
    matrix_path: Path | None = None,
    workers: int | None = None,
    fresh: bool = False,
    storage: str | None = None,
    heartbeat: float = 10.0,
    queue_dir: Path = Path("runs/queue"),
    on_event: Callable[[SweepEvent], None] | None = None,
    on_plan: Callable[[list[PlanItem]], None] | None = None,
    on_wait: Callable[[dict[str, int]], None] | None = None,
) -> SweepOutcome:
    """Run every (cell, seed) of ``matrix`` not already FINISHED in the store.

    Runs left RUNNING by a killed sweep are marked KILLED first and run again, as are failed ones.
    The queue lives in a journal file under ``queue_dir``, or in ``storage`` (an RDB URL such as
    ``postgresql://...``) where ``orch worker`` processes on other machines join it; ``workers=0``
    then only coordinates. The call returns once every item is done, wherever it ran.

    Raises:
        orchestrator.tracking.TrackingError: the tracking store cannot be opened (nothing started).
        orchestrator.queue.QueueError: the queue storage cannot be opened (nothing started).
        KeyboardInterrupt: interrupted; in-flight runs are marked KILLED.
    """
    queue_storage = open_storage(storage, heartbeat=heartbeat) if storage else None
    tracker = Tracker(prepare_store(tracking_uri))
    experiment = matrix.name
    tracker.experiment_id(experiment)
    stale = [rid for runs in tracker.run_states(experiment).values() for rid, st in runs if st == "RUNNING"]
    tracker.mark_killed(stale, "left RUNNING by an interrupted sweep")
    plan = plan_sweep(specs, tracker, experiment, fresh=fresh)
    if on_plan is not None:
        on_plan(plan)
    todo = [i for i, p in enumerate(plan) if p.state != "done"]
    sweep_id = uuid.uuid4().hex[:12]
    parent = tracker.start_sweep(
        experiment,
        name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={TAG_SWEEP: sweep_id, "orch.runs_planned": str(len(todo)), "orch.fresh": str(fresh).lower()},
        artifacts=[matrix_path] if matrix_path else [],
    )
    outcome = SweepOutcome(parent, skipped=len(specs) - len(todo))
    if todo:
        if workers is None:
            workers = default_workers(len(todo), specs[todo[0]].config.trainer.device)
        n = min(workers, len(todo))
        storage_url = storage or str(queue_dir / f"{sweep_id}.journal")
        queue_name = f"{PREFIX}:{experiment}:{sweep_id}"
        attrs = {"matrix": experiment, "sweep_id": sweep_id, "parent_run_id": parent, "active": True}
        work = WorkQueue.create(
            queue_storage or open_storage(storage_url),
            queue_name,
            [{"index": i, "run_key": specs[i].run_key} for i in todo],
            attrs | {"created": time.time()},
        )
        try:
            if n > 0:
                run_workers(
                    specs,
                    storage_url=storage_url,
                    queue_name=queue_name,
                    tracker=tracker,
                    experiment=experiment,
                    parent_run_id=parent,
                    sweep_id=sweep_id,
                    workers=n,
                    threads=_threads(n),
                    on_event=on_event,
                    outcome=outcome,
                    heartbeat=heartbeat,
                )
            if work.heartbeats:
                work.wait_drained(on_poll=on_wait)  # items other machines still run
            else:
                # one machine: every local worker has exited, so what is left has nobody to run it
                for item in work.abandon((TrialState.WAITING, TrialState.RUNNING)):
                    spec = specs[item["index"]]
                    outcome.crashed += 1
                    outcome.failures.append((spec.cell, spec.seed, "not run: every worker process died"))
        except BaseException:
            outcome.interrupted = True
            work.abandon()  # remote workers must not start what is left
            tracker.finish(parent, "killed", "interrupted")
            raise
        finally:
            work.close()
        if work.heartbeats:
            _settle_remote(tracker, experiment, sweep_id, outcome, grace=3 * heartbeat + 10)
    tracker.set_tags(parent, {"orch.ran": str(outcome.ran), "orch.crashed": str(outcome.crashed)})
    tracker.finish(parent, "finished")
    return outcome


def _settle_remote(
    tracker: Tracker, experiment: str, sweep_id: str, outcome: SweepOutcome, grace: float
) -> None:
    """After the queue drained: runs of this sweep still RUNNING after ``grace`` seconds (a remote
    worker logs a run's end just after handing its item back) belong to dead workers (KILLED), and
    counts include what other machines ran."""
    deadline = time.monotonic() + grace
    while True:
        runs = list(tracker.sweep_runs(experiment, sweep_id))
        if not any(r.info.status == "RUNNING" for r in runs) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    dead = [r.info.run_id for r in runs if r.info.status == "RUNNING"]
    tracker.mark_killed(dead, "worker died; its item was retried by another worker")
    logged_here = outcome.ran
    remote = [r for r in runs if r.info.status in ("FINISHED", "FAILED")]
    if len(remote) > logged_here:  # other machines' runs
        outcome.ran = len(remote)
        outcome.finished = sum(r.info.status == "FINISHED" for r in remote)
        failed = [r for r in remote if r.info.status == "FAILED"]
        outcome.diverged = sum(r.data.tags.get("orch.failure", "").startswith("nan") for r in failed)
        outcome.crashed = len(failed) - outcome.diverged


def join_sweep(
    matrix: Matrix,
    specs: list[RunSpec],
    *,
    tracking_uri: str,
    storage: str,
    workers: int | None = None,
    heartbeat: float = 10.0,
    wait: float = 60.0,
    on_event: Callable[[SweepEvent], None] | None = None,
) -> SweepOutcome:
    """`orch worker`: join the newest active sweep of ``matrix`` in ``storage`` and run its items.

    Raises:
        orchestrator.queue.QueueError: unreachable storage, no sweep to join within ``wait`` seconds,
            or a matrix that differs from the coordinator's.
    """
    queue_storage = open_storage(storage, heartbeat=heartbeat)
    deadline = time.monotonic() + wait
    while (name := find_sweep_queue(queue_storage, matrix.name)) is None:
        if time.monotonic() > deadline:
            raise QueueError(f"no active sweep of {matrix.name!r} in the queue storage after {wait:g} s")
        time.sleep(1.0)
    work = WorkQueue(queue_storage, name)
    attrs = work._study.user_attrs
    keys = {s.run_key for s in specs}
    items = [t.user_attrs["item"] for t in queue_storage.get_all_trials(work.study_id, deepcopy=False)]
    foreign = [it["run_key"] for it in items if it["run_key"] not in keys]
    if foreign:
        raise QueueError(
            f"the sweep's runs are not this matrix's ({len(foreign)} unknown run keys): give the worker "
            "the same matrix file (and base config) as the coordinator"
        )
    tracker = Tracker(prepare_store(tracking_uri))  # a worker may be the first to open a fresh store
    n = workers or default_workers(len(items), specs[0].config.trainer.device)
    outcome = SweepOutcome(attrs.get("parent_run_id"))
    run_workers(
        specs,
        storage_url=storage,
        queue_name=name,
        tracker=tracker,
        experiment=matrix.name,
        parent_run_id=attrs.get("parent_run_id"),
        sweep_id=attrs.get("sweep_id", ""),
        workers=n,
        threads=_threads(n),
        on_event=on_event,
        outcome=outcome,
        heartbeat=heartbeat,
    )
    return outcome
