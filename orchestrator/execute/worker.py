"""A sweep worker process: claims (cell, seed) items from the work queue and runs them.

Kept apart from the coordinator so that a spawned worker imports Optuna and what its runs train (the
built-in model and torch, or the user's own function and whatever it imports: :mod:`orchestrator.target`)
but not MLflow: everything it produces goes back to the coordinator over a pipe.

Preemption: SIGTERM (how Slurm preempts, how ``timeout`` stops a job) sets a flag; training stops at the
next step (a function's run: at the next epoch), the partial epoch is abandoned, and the run is reported
KILLED with the checkpoint of its last complete epoch, kept after every epoch and written when the run ends
(:mod:`model.checkpoint`; a function's: its checkpoint hook's state); the worker then claims nothing more and
exits. On one machine its queue item is given up, and the next sweep resumes the run from that checkpoint,
in the same MLflow run; on a shared queue (Slurm, other machines) the item is left to go stale and another
worker runs it again, as for a worker killed outright.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from orchestrator.execute.early_stop import EarlyStopRule
from orchestrator.execute.signals import handle_signals
from orchestrator.execute.workqueue import WorkQueue, open_storage
from orchestrator.target.base import RunControl, RunOutcome, RunTarget
from orchestrator.tracking.vocabulary import RunStatus

__all__ = ["worker_main"]


def worker_main(
    storage_url: str,
    queue_name: str,
    payloads: list[dict[str, Any]],
    events: Any,
    threads: int,
    parent: int,
    heartbeat: float = 10.0,
    device: str | None = None,
) -> None:
    """A worker process: claim items until none is left; report everything over ``events``.

    Each payload names its run's ``target`` (:class:`~orchestrator.target.base.RunTarget`) and ``run_key``.
    ``device`` pins the runs whose config says ``auto`` or ``cuda`` to one GPU (``cuda:N``). A payload's
    optional ``stop_file`` (`orch search`: a pruned trial) stops its run at the next epoch once the file
    exists, the file's text being the reason (status ``stopped``).

    Payloads may name ``checkpoint`` (where to write the run's last checkpoint when it ends) and ``resume``
    (``{"run_id", "epoch", "path"}``: continue from that checkpoint).

    Messages, each a tuple: ``("start", index, pid, trial id, device)``, ``("step", index, epoch, step,
    steps)`` (at most twice a second), ``("epoch", index, result)`` (its ``epoch``, ``metrics`` and
    ``images``), ``("end", index, status, reason, traceback, checkpoint)`` with a
    :class:`~orchestrator.tracking.vocabulary.RunStatus` value and ``checkpoint`` as ``(path, epoch)`` of
    the last complete epoch's checkpoint, or None.

    On a storage with heartbeats (RDB, many machines) it also waits while other workers still run
    items, so that the item of a worker that dies is retried here.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    os.environ["OMP_NUM_THREADS"] = str(threads)  # torch, when a run imports it, starts with this share
    work = WorkQueue(open_storage(storage_url, heartbeat=heartbeat), queue_name)
    with handle_signals([signal.SIGTERM]) as preempted:  # stop at the next step, nothing in the handler
        worker = _Worker(work, payloads, events, (parent, threads), device, preempted)
        while not worker.orphaned() and not preempted:
            claimed = work.claim()
            if claimed is None:
                if work.heartbeats and work.pending():
                    time.sleep(min(1.0, heartbeat / 2))  # others still run items: one may come back
                    continue
                return
            trial_id, item = claimed
            worker.train(trial_id, worker.by_key[item["run_key"]])


class _Worker:
    """Runs claimed items one after another, sharing each data source between its runs."""

    def __init__(
        self,
        work: WorkQueue,
        payloads: list[dict[str, Any]],
        events: Any,
        parent_threads: tuple[int, int],
        device: str | None,
        preempted: list[str],
    ) -> None:
        self.work, self.payloads, self.events, self.device = work, payloads, events, device
        self.parent, self.threads = parent_threads  # the coordinator's pid, CPU threads a run may use
        self.preempted = preempted  # the signals received (SIGTERM): stop at the next step boundary
        self.sources: dict[str, Any] = {}  # data loaded once per worker, shared by its runs
        self.by_key = {p["run_key"]: i for i, p in enumerate(payloads)}

    def orphaned(self) -> bool:
        return os.getppid() != self.parent

    def train(self, trial_id: int, index: int) -> None:
        """Run item ``index`` (claimed as ``trial_id``) and report it; a crash is reported, not raised."""
        events, payload = self.events, self.payloads[index]
        target, device = payload["target"].placed(self.device)
        events.put(("start", index, os.getpid(), trial_id, device))
        last_step = [0.0]

        def on_step(epoch: int, step: int, steps: int) -> None:
            if self.orphaned():
                os._exit(3)  # the coordinator was killed: stop, the next sweep re-runs this item
            now = time.monotonic()
            if now - last_step[0] > 0.5 or step == steps:
                last_step[0] = now
                events.put(("step", index, epoch, step, steps))

        with self.work.keep_alive(trial_id):
            try:
                result = self._run(index, target, payload, on_step)
                ckpt = Path(payload["checkpoint"]) if payload.get("checkpoint") else None
                saved = (str(ckpt), result.last_epoch) if ckpt and ckpt.exists() else None
                status, reason = result.status, result.reason
                if status == "interrupted":
                    status = RunStatus.KILLED.value
                    reason = "interrupted (SIGTERM): " + (
                        f"resumable from epoch {saved[1]}" if saved else "before its first epoch"
                    )
                final = result.epochs[-1].metrics.get("cross") if result.epochs else None
                events.put(("end", index, status, reason, None, saved))
                if status == RunStatus.KILLED and self.work.heartbeats:
                    pass  # a shared queue (Slurm, other machines): the item's heartbeat stops and another
                    # worker takes it over once it is stale, as for a worker killed outright
                else:  # one machine: the next sweep resumes it from its checkpoint
                    ok = status not in (RunStatus.DIVERGED, RunStatus.KILLED)
                    self.work.done(trial_id, ok=ok, value=final)
            except Exception as exc:  # noqa: BLE001 - a crash in one run must not stop the others
                why = f"{type(exc).__name__}: {exc}"
                events.put(("end", index, RunStatus.CRASHED.value, why, traceback.format_exc()))
                self.work.done(trial_id, ok=False)

    def _run(self, index: int, target: RunTarget, payload: dict[str, Any], on_step: Any) -> RunOutcome:
        """Run one item's target: its last checkpoint written when it ends (with its early-stop rule's
        bookkeeping), resumed from ``payload["resume"]`` when given."""
        if payload.get("checkpoint"):  # an earlier attempt's leftover is not this run's checkpoint
            Path(payload["checkpoint"]).unlink(missing_ok=True)
        resume = target.open_resume(payload["resume"]["path"]) if payload.get("resume") else None
        rule = None
        if payload.get("early_stop"):
            kept = resume.extra.get("early_stop") if resume is not None else None
            rule = EarlyStopRule.from_payload(kept or payload["early_stop"])

        stop_file = payload.get("stop_file")  # a search's pruned trial: the file says why its runs stop

        def on_epoch(result: Any) -> str | None:
            if self.orphaned():
                os._exit(3)  # the coordinator was killed: stop, the next sweep re-runs this item
            self.events.put(("epoch", index, result))
            if stop_file and os.path.exists(stop_file):
                return Path(stop_file).read_text(encoding="utf-8").strip() or "stopped by the coordinator"
            return rule(result.metrics) if rule is not None else None

        control = RunControl(
            on_epoch=on_epoch,
            on_step=on_step,
            stop=lambda: bool(self.preempted),
            checkpoint=payload.get("checkpoint"),
            resume=resume,
            extra=(lambda: {"early_stop": dataclasses.asdict(rule)}) if rule is not None else None,
            threads=self.threads,
            cache=self.sources,
        )
        return target.run(control)
