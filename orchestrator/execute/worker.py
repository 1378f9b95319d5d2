"""A sweep worker process: claims (cell, seed) items from the work queue and trains them.

Kept apart from the coordinator so that a spawned worker imports torch and Optuna but not MLflow:
everything it produces goes back to the coordinator over a pipe.

Preemption: SIGTERM (how Slurm preempts, how ``timeout`` stops a job) sets a flag; training stops at the
next step, the partial epoch is abandoned, and the run is reported KILLED with the checkpoint of its last
complete epoch, kept after every epoch and written when the run ends (:mod:`model.checkpoint`); the worker
then claims nothing more and exits. On one machine its queue item is given up, and the next sweep resumes
the run from that checkpoint, in the same MLflow run; on a shared queue (Slurm, other machines) the item is
left to go stale and another worker runs it again, as for a worker killed outright.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from model.trainer import EpochResult
from orchestrator.execute.early_stop import EarlyStopRule
from orchestrator.execute.signals import handle_signals
from orchestrator.execute.workqueue import WorkQueue, open_storage
from orchestrator.tracking.errors import fault_of, fault_writing
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

    ``device`` pins the runs whose config says ``auto`` or ``cuda`` to one GPU (``cuda:N``). A payload's
    optional ``stop_file`` (`orch search`: a pruned trial) stops its run at the next epoch once the file
    exists, the file's text being the reason (status ``stopped``).

    Payloads may name ``checkpoint`` (where to write the run's last checkpoint when it ends) and ``resume``
    (``{"run_id", "epoch", "path"}``: continue from that checkpoint).

    Messages, each a tuple: ``("start", index, pid, trial id, device)``, ``("step", index, epoch, step,
    steps)`` (at most twice a second), ``("epoch", index, EpochResult)``, ``("end", index, status, reason,
    traceback, checkpoint)`` with a :class:`~orchestrator.tracking.vocabulary.RunStatus` value and
    ``checkpoint`` as ``(path, epoch)`` of the last complete epoch's checkpoint, or None.

    On a storage with heartbeats (RDB, many machines) it also waits while other workers still run
    items, so that the item of a worker that dies is retried here.
    """
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    torch.set_num_threads(threads)
    # stop at the next step, nothing in the handler; SIGHUP (a closed terminal) as SIGTERM
    with handle_signals([signal.SIGTERM, signal.SIGHUP]) as preempted:
        try:
            work = WorkQueue(open_storage(storage_url, heartbeat=heartbeat), queue_name)
            worker = _Worker(work, payloads, events, parent, device, preempted)
            while not worker.orphaned() and not preempted and not worker.faulted:
                claimed = work.claim()
                if claimed is None:
                    if work.heartbeats and work.pending():
                        time.sleep(min(1.0, heartbeat / 2))  # others still run items: one may come back
                        continue
                    return
                trial_id, item = claimed
                worker.train(trial_id, worker.by_key[item["run_key"]])
        except Exception as exc:
            fault = fault_of(exc, storage_url)
            if fault is None:
                raise
            events.put(("fault", None, fault.kind, str(fault)))  # the queue's disk is full...


class _Worker:
    """Trains claimed items one after another, sharing each data source between its runs."""

    def __init__(
        self,
        work: WorkQueue,
        payloads: list[dict[str, Any]],
        events: Any,
        parent: int,
        device: str | None,
        preempted: list[str],
    ) -> None:
        self.work, self.payloads, self.events, self.parent, self.device = (
            work,
            payloads,
            events,
            parent,
            device,
        )
        self.preempted = preempted  # the signals received (SIGTERM): stop at the next step boundary
        self.sources: dict[str, Any] = {}  # data loaded once per worker, shared by its runs
        self.by_key = {p["run_key"]: i for i, p in enumerate(payloads)}
        self.faulted = False  # a write failed for the machine's reason (a full disk): claim nothing more

    def orphaned(self) -> bool:
        return os.getppid() != self.parent

    def _config(self, payload: dict[str, Any]) -> tuple[Any, str]:
        """The run's config, pinned to this worker's GPU when it says ``auto`` or ``cuda``, and its device."""
        from model.trainer import resolve_device

        config = payload["config"]  # the validated RunConfig as the coordinator built it
        if self.device and config.trainer.device in ("auto", "cuda"):  # pinned: the run's identity stays
            config = config.model_copy(
                update={"trainer": config.trainer.model_copy(update={"device": self.device})}
            )
        try:
            device = str(resolve_device(config.trainer.device))
        except Exception:  # noqa: BLE001 - reported as the run's crash when it trains
            device = config.trainer.device
        return config, device

    def train(self, trial_id: int, index: int) -> None:
        """Train item ``index`` (claimed as ``trial_id``) and report it; a crash is reported, not raised."""
        events, payload = self.events, self.payloads[index]
        config, device = self._config(payload)
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
                result = self._fit(index, config, payload, on_step)
                ckpt = Path(payload["checkpoint"]) if payload.get("checkpoint") else None
                saved = (str(ckpt), result.trainer.epoch) if ckpt and ckpt.exists() else None
                status, reason = result.status, result.reason
                if status == "interrupted":
                    status = RunStatus.KILLED.value
                    reason = f"interrupted ({self.preempted[0] if self.preempted else 'SIGTERM'}): " + (
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
                fault = fault_writing(exc, payload.get("checkpoint") or ".")
                if fault is not None:  # a full disk, a read-only folder: the sweep stops, as on SIGTERM
                    why = f"stopped ({fault.kind}): no checkpoint saved; it runs again from epoch 0"
                    events.put(("end", index, RunStatus.KILLED.value, why, None, None))
                    events.put(("fault", index, fault.kind, str(fault)))
                    self.faulted = True
                    return
                why = f"{type(exc).__name__}: {exc}"
                events.put(("end", index, RunStatus.CRASHED.value, why, traceback.format_exc()))
                self.work.done(trial_id, ok=False)

    def _fit(self, index: int, config: Any, payload: dict[str, Any], on_step: Any) -> Any:
        """:func:`model.trainer.fit` of one item: its data shared, its last checkpoint written when it ends
        (with its early-stop rule's bookkeeping), resumed from ``payload["resume"]`` when given."""
        from model.checkpoint import load_checkpoint
        from model.data import open_source
        from model.trainer import fit

        resume = load_checkpoint(payload["resume"]["path"]) if payload.get("resume") else None
        rule = None
        if payload.get("early_stop"):
            kept = resume.extra.get("early_stop") if resume is not None else None
            rule = EarlyStopRule.from_payload(kept or payload["early_stop"])

        stop_file = payload.get("stop_file")  # a search's pruned trial: the file says why its runs stop

        def on_epoch(result: EpochResult) -> str | None:
            self.events.put(("epoch", index, result))
            if stop_file and os.path.exists(stop_file):
                return Path(stop_file).read_text(encoding="utf-8").strip() or "stopped by the coordinator"
            return rule(result.metrics) if rule is not None else None

        data_key = config.data.model_dump_json()
        if data_key not in self.sources:
            self.sources[data_key] = open_source(config.data)
        return fit(
            config,
            source=self.sources[data_key],
            on_epoch=on_epoch,
            on_step=on_step,
            checkpoint=payload.get("checkpoint"),
            resume=resume,
            stop=lambda: bool(self.preempted),
            extra=(lambda: {"early_stop": dataclasses.asdict(rule)}) if rule is not None else None,
        )
