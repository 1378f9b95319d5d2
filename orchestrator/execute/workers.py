"""The coordinator's side of a sweep's local workers: worker processes started here, and their events
written to MLflow, counted in the sweep's outcome and told to its display
(:class:`~orchestrator.execute.context.SweepContext`).

The coordinator is the only process that writes to the MLflow store: workers send their epochs back over
a pipe (:mod:`orchestrator.execute.worker`), and :class:`_Coordinator` logs them, and each run's last
checkpoint as its artifact ``checkpoint/last.pt`` when the run ends or is interrupted. A run planned as
resumed (:func:`~orchestrator.execute.plan.resume_points`) gets its checkpoint downloaded for its worker,
and its MLflow run is reopened, so that its curve holds every epoch once.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

from orchestrator.execute.context import SweepContext, SweepEvent
from orchestrator.execute.plan import ResumePoint, resume_points
from orchestrator.execute.resources import WorkerSlot
from orchestrator.execute.run_dir import checkpoint_root
from orchestrator.execute.signals import deferred
from orchestrator.execute.worker import worker_main
from orchestrator.matrix import RunSpec, axis_params, varying_axes
from orchestrator.tracking import RunKind, RunStatus, run_tags
from orchestrator.tracking.errors import StoreFault

__all__ = ["GRACE", "run_workers"]

_log = logging.getLogger(__name__)

#: Seconds a stopping coordinator waits for its workers to report their runs' ends (with checkpoints).
GRACE = 20.0


# -------------------------------------------------------------------------------------- coordinator


class _Coordinator:
    """Tracks what the workers report: one MLflow run per claimed item, its epochs, its end."""

    def __init__(self, ctx: SweepContext, specs: list[RunSpec]) -> None:
        assert ctx.work is not None
        self.ctx, self.specs, self.tracker, self.work = ctx, specs, ctx.tracker, ctx.work
        self.emit = ctx.display.on_event
        self.run_ids: dict[int, str] = {}
        self.owner: dict[int, tuple[int, int]] = {}  # item -> (worker pid, trial id)
        self.open_items: set[int] = set()
        self.resume: dict[int, ResumePoint] = {}  # item -> the interrupted run it continues
        self.last_epoch: dict[int, int] = {}  # item -> the last epoch logged in its run
        self.checkpoints: Path | None = None  # where workers write checkpoints (<run_key>/last.pt)
        self.stopping: str | None = None  # why the sweep stops, when a fault stops it ("stopped (disk full)")
        self.param_axes = ctx.param_axes if ctx.param_axes is not None else varying_axes(specs)

    def handle(self, msg: tuple[Any, ...]) -> None:
        """One message of a worker (see :func:`~orchestrator.execute.worker.worker_main`)."""
        kind, index = msg[0], msg[1]
        if kind == "fault":  # a worker could not write (a full disk...): the sweep stops
            raise StoreFault(msg[2], msg[3])
        spec = self.specs[index]
        if kind == "start":
            device = msg[4] if len(msg) > 4 else None
            if index in self.resume:
                self._reopen(index, device)
            else:
                tags = run_tags(
                    RunKind.RUN,
                    sweep=self.ctx.sweep_id,
                    cell=spec.cell,
                    seed=spec.seed,
                    run_key=spec.run_key,
                    axes=spec.axes,
                    expect=spec.expect,
                    device=device,
                    **spec.identity.tags(),
                    **spec.target.tags(),  # its budget (orch.epochs...), a function's orch.entrypoint
                )
                self.run_ids[index] = self.tracker.start_run(
                    self.ctx.experiment,
                    spec.target.describe(),
                    name=f"{spec.cell}/seed{spec.seed}",
                    tags=tags,
                    params=axis_params(spec, self.param_axes),
                    parent_id=self.ctx.parent_run_id,
                )
            self.owner[index] = (msg[2], msg[3])
            self.open_items.add(index)
            self.emit(SweepEvent("start", index, spec, run_id=self.run_ids[index]))
        elif kind == "step":
            self.emit(SweepEvent("step", index, spec, epoch=msg[2], step=msg[3], steps=msg[4]))
        elif kind == "epoch":
            result = msg[2]  # the epoch's number, metrics and images
            self.tracker.log_epoch(self.run_ids[index], result)
            self.last_epoch[index] = result.epoch
            run_id = self.run_ids[index]
            self.emit(
                SweepEvent("epoch", index, spec, epoch=result.epoch, run_id=run_id, metrics=result.metrics)
            )
        elif kind == "end":
            status = RunStatus(msg[2])  # a worker reports KILLED only when SIGTERM interrupted its run
            saved = msg[5] if len(msg) > 5 else None
            self.end(index, status, msg[3], msg[4], saved, preempted=status is RunStatus.KILLED)

    def _reopen(self, index: int, device: str | None) -> None:
        """A resumed item: its interrupted MLflow run is set RUNNING again, now part of this sweep."""
        point = self.resume[index]
        tags = run_tags(RunKind.RUN, sweep=self.ctx.sweep_id, device=device, resumed_from_epoch=point.epoch)
        if self.ctx.parent_run_id:
            tags["mlflow.parentRunId"] = self.ctx.parent_run_id
        self.tracker.reopen(point.run_id, tags)
        self.run_ids[index] = point.run_id
        self.last_epoch[index] = point.epoch  # it keeps the tags it was started with (cell, seed, identity)

    def _log_checkpoint(self, index: int, saved: tuple[str, int] | None) -> int | None:
        """Log the item's checkpoint when it ends the run's last logged epoch (else it would resume a
        curve that already holds later epochs), then drop the worker's copy, logged or of no use (on a full
        disk its space is needed); returns the epoch logged."""
        if saved is None:
            return None
        path, epoch = Path(saved[0]), saved[1]
        try:
            if not path.exists() or epoch != self.last_epoch.get(index):
                return None
            self.tracker.log_checkpoint(self.run_ids[index], path, epoch, self.specs[index].target.describe())
            shutil.rmtree(path.parent / "resume", ignore_errors=True)  # the copy this attempt resumed from
            return epoch
        finally:
            path.unlink(missing_ok=True)  # the artifact is the one the next sweep resumes from

    def end(
        self,
        index: int,
        status: RunStatus,
        reason: str | None,
        tb: str | None = None,
        saved: tuple[str, int] | None = None,
        *,
        preempted: bool = False,
    ) -> None:
        """End item ``index``'s run: its checkpoint logged (when it ends the last logged epoch), its status
        and reason recorded, counted, told. A KILLED run's reason says what the next sweep does with it, as
        recorded (:meth:`_resumable`). A checkpoint the store cannot take (a full disk) is never recorded
        as written: the run ends without it, and the fault is raised once it has ended."""
        if index not in self.open_items:  # already buried as its worker's death was seen first
            return
        spec = self.specs[index]
        fault = None
        if preempted or (self.stopping and status is RunStatus.KILLED):
            cause, _, said = (reason or "interrupted").partition(": ")
            reason, fault = self._resumable(index, self.stopping or cause, saved, said)
        else:
            try:
                self._log_checkpoint(index, saved)
            except StoreFault as exc:
                fault = exc
        self.tracker.finish(self.run_ids[index], status, reason, tb)
        self.open_items.discard(index)
        if preempted:
            self.ctx.outcome.interrupted += 1
        elif status is not RunStatus.KILLED:  # not counted: the next sweep resumes or reruns them
            self.ctx.outcome.count(spec, status, reason)
        self.emit(SweepEvent("end", index, spec, status=status, reason=reason))
        if fault is not None and self.stopping is None:
            raise fault

    def _resumable(
        self, index: int, cause: str, saved: tuple[str, int] | None, unsaved: str = ""
    ) -> tuple[str, StoreFault | None]:
        """Log a KILLED run's checkpoint and say, after ``cause``, whether the next sweep resumes it (without
        a checkpoint: ``unsaved``, the worker's words for why, else "before its first epoch")."""
        try:
            logged = self._log_checkpoint(index, saved)
        except StoreFault as fault:
            return (
                f"{cause}: no checkpoint saved ({fault.kind}); it runs again from epoch 0",
                fault,
            )
        if logged is not None:
            return f"{cause}: resumable from epoch {logged}", None
        if saved is None:
            return f"{cause}: {unsaved or 'before its first epoch'}", None
        return f"{cause}: it runs again from epoch 0", None

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

    def drain(self, events: Any, *, quiet: bool = False) -> None:
        """Handle what is already in the pipe; ``quiet``: a message the store refuses is skipped (a sweep
        that stops: what the store did not take is the next sweep's)."""
        while True:
            try:
                msg = events.get(timeout=0.05)
            except queue_mod.Empty:
                return
            with contextlib.suppress(Exception) if quiet else contextlib.nullcontext():
                self.handle(msg)

    def follow(self, procs: list[mp.process.BaseProcess], events: Any, check: Callable[[], None]) -> None:
        """Handle messages until every worker has exited; bury those that die. ``check`` raises a signal
        held meanwhile (:func:`~orchestrator.execute.signals.deferred`), between two messages."""
        while True:
            check()
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

    def interrupted(self, procs: list[mp.process.BaseProcess], events: Any, why: BaseException) -> None:
        """Stop the workers (SIGTERM: each ends its run at the next step and reports it with its last
        epoch's checkpoint), log what they report for up to :data:`GRACE` seconds (Slurm's default KillWait
        is 30 s; another signal meanwhile changes nothing: a worker killed before it reports loses its
        run's progress since it started), kill those still running, and mark the runs still in flight
        KILLED, with the checkpoint a killed worker left when it ends the run's last logged epoch. ``why``
        stopped the sweep: a fault (a full disk) is the runs' reason. A run the store refuses to end is
        left to the next sweep (no "end" event for it)."""
        if isinstance(why, StoreFault):
            self.stopping = f"stopped ({why.kind})"
            self.ctx.reserve.release()  # room to end the runs (and for the workers' checkpoints)
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM
        deadline = time.monotonic() + GRACE
        while self.open_items and any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # queue.Empty, or a store that fails now
                self.handle(events.get(timeout=0.2))
        self.drain(events, quiet=True)
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(timeout=5)
        for index in list(self.open_items):
            with contextlib.suppress(Exception):
                reason, _ = self._resumable(
                    index, self.stopping or "sweep interrupted", self._left_checkpoint(index)
                )
                self.tracker.finish(self.run_ids[index], RunStatus.KILLED, reason)
                self.open_items.discard(index)
                self.emit(SweepEvent("end", index, self.specs[index], status=RunStatus.KILLED, reason=reason))

    def _left_checkpoint(self, index: int) -> tuple[str, int] | None:
        """The checkpoint a worker that did not report left behind, with its epoch."""
        if self.checkpoints is None:
            return None
        path = self.checkpoints / self.specs[index].run_key / "last.pt"
        epoch = self.specs[index].target.checkpoint_epoch(path)
        return None if epoch is None else (str(path), epoch)


def run_workers(ctx: SweepContext, specs: list[RunSpec], slots: list[WorkerSlot]) -> None:
    """Start a worker process per slot (its device and threads) on the context's queue and track what they
    report until done: each run in MLflow under the sweep's parent run, counted in ``ctx.outcome``, told to
    ``ctx.display``.

    Queue items name an index into ``specs`` (the matrix's full expansion). Workers write each run's
    checkpoint under :func:`~orchestrator.execute.run_dir.checkpoint_root`; the runs the plan resumes
    (:func:`~orchestrator.execute.plan.resume_points`, none for a ``--fresh`` sweep) continue from their
    logged checkpoint. Runs in flight when this is interrupted are stopped as
    :meth:`_Coordinator.interrupted` says, and the exception (KeyboardInterrupt) is re-raised.
    """
    assert ctx.work is not None
    mp_ctx = mp.get_context("spawn")
    with _blocked(signal.SIGHUP, signal.SIGINT):  # the queue's helper process outlives a closed terminal
        resource_tracker.ensure_running()
    events = mp_ctx.Queue()
    root = checkpoint_root(ctx.tracker.uri)
    payloads = [s.to_payload() | {"checkpoint": str(root / s.run_key / "last.pt")} for s in specs]
    resumed = _fetch_checkpoints(ctx, root, specs, _planned_resumes(ctx, specs), payloads)
    procs = [
        mp_ctx.Process(
            target=worker_main,
            args=(
                ctx.queue_url,
                ctx.work.name,
                payloads,
                events,
                slot.threads,
                os.getpid(),
                ctx.queue.heartbeat,
                slot.device,
            ),
            daemon=True,
            name=f"orch-worker-{i}",
        )
        for i, slot in enumerate(slots)
    ]
    with _blocked(signal.SIGINT):  # Ctrl-C is the coordinator's, even while a worker imports torch
        for p in procs:
            p.start()
    coordinator = _Coordinator(ctx, specs)
    coordinator.resume, coordinator.checkpoints = resumed, root
    try:
        with deferred() as check:  # a signal raised mid-message lost that message (an epoch, a checkpoint)
            coordinator.follow(procs, events, check)
    except BaseException as exc:
        coordinator.interrupted(procs, events, exc)
        raise


@contextlib.contextmanager
def _blocked(*signals: int) -> Iterator[None]:
    """Block ``signals`` for the block: processes started in it are born with them blocked (the signal mask
    is inherited), so a terminal's SIGINT or SIGHUP to the whole group never reaches them; here they are
    delivered once the block ends."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _planned_resumes(ctx: SweepContext, specs: list[RunSpec]) -> dict[str, ResumePoint]:
    """The runs the plan resumes; none for a ``--fresh`` sweep (its parent run's ``orch.fresh`` tag)."""
    parent = ctx.parent_run_id
    if parent and ctx.tracker.run_tags_and_start(parent)[0].get("orch.fresh") == "true":
        return {}
    return resume_points(ctx.tracker, ctx.experiment, specs)


def _fetch_checkpoints(
    ctx: SweepContext,
    root: Path,
    specs: list[RunSpec],
    resume: dict[str, ResumePoint],
    payloads: list[dict[str, Any]],
) -> dict[int, ResumePoint]:
    """Download each resumed run's checkpoint next to where its worker writes the next ones and name it
    in the payload; a checkpoint that cannot be fetched, or read (truncated, damaged: it is kept aside,
    with one warning), means the run starts again from epoch 0 (a new MLflow run)."""
    resumed = {}
    for index, spec in enumerate(specs):
        point = resume.get(spec.run_key)
        if point is None:
            continue
        try:
            path = ctx.tracker.download_checkpoint(point.run_id, root / spec.run_key / "resume")
        except Exception:  # noqa: BLE001 - an artifact store that lost it: start again rather than stop
            continue
        if spec.target.checkpoint_epoch(path) is None:  # truncated, damaged: its key and config are known
            aside = path.replace(root / spec.run_key / f"unreadable-{point.run_id}.pt")
            _log.warning(
                "%s seed %s: its checkpoint of epoch %d cannot be read: the run starts again from epoch 0; "
                "the file is kept as %s",
                spec.cell, spec.seed, point.epoch, aside,
            )  # fmt: skip
            continue
        payloads[index]["resume"] = {"run_id": point.run_id, "epoch": point.epoch, "path": str(path)}
        resumed[index] = point
    return resumed
