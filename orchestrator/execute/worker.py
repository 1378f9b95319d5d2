"""A sweep worker process: claims (cell, seed) items from the work queue and trains them.

Kept apart from the coordinator so that a spawned worker imports torch and Optuna but not MLflow:
everything it produces goes back to the coordinator over a pipe.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any

from model.trainer import EpochResult
from orchestrator.execute.early_stop import EarlyStopRule
from orchestrator.execute.workqueue import WorkQueue, open_storage
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

    Messages, each a tuple: ``("start", index, pid, trial id, device)``, ``("step", index, epoch, step,
    steps)`` (at most twice a second), ``("epoch", index, EpochResult)``, ``("end", index, status, reason,
    traceback)`` with a :class:`~orchestrator.tracking.vocabulary.RunStatus` value.

    On a storage with heartbeats (RDB, many machines) it also waits while other workers still run
    items, so that the item of a worker that dies is retried here.
    """
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    torch.set_num_threads(threads)
    work = WorkQueue(open_storage(storage_url, heartbeat=heartbeat), queue_name)
    worker = _Worker(work, payloads, events, parent, device)
    while not worker.orphaned():
        claimed = work.claim()
        if claimed is None:
            if work.heartbeats and work.pending():
                time.sleep(min(1.0, heartbeat / 2))  # others still run items: one may come back
                continue
            return
        trial_id, item = claimed
        worker.train(trial_id, worker.by_key[item["run_key"]])


class _Worker:
    """Trains claimed items one after another, sharing each data source between its runs."""

    def __init__(
        self, work: WorkQueue, payloads: list[dict[str, Any]], events: Any, parent: int, device: str | None
    ) -> None:
        self.work, self.payloads, self.events, self.parent, self.device = (
            work,
            payloads,
            events,
            parent,
            device,
        )
        self.sources: dict[str, Any] = {}  # data loaded once per worker, shared by its runs
        self.by_key = {p["run_key"]: i for i, p in enumerate(payloads)}

    def orphaned(self) -> bool:
        return os.getppid() != self.parent

    def train(self, trial_id: int, index: int) -> None:
        """Train item ``index`` (claimed as ``trial_id``) and report it; a crash is reported, not raised."""
        from model.data import open_source
        from model.trainer import fit, resolve_device

        events, payload = self.events, self.payloads[index]
        config = payload["config"]  # the validated RunConfig as the coordinator built it
        if self.device and config.trainer.device in ("auto", "cuda"):  # pinned: the run's identity stays
            config = config.model_copy(
                update={"trainer": config.trainer.model_copy(update={"device": self.device})}
            )
        try:
            device = str(resolve_device(config.trainer.device))
        except Exception:  # noqa: BLE001 - reported as the run's crash below
            device = config.trainer.device
        events.put(("start", index, os.getpid(), trial_id, device))
        last_step = [0.0]

        def on_step(epoch: int, step: int, steps: int) -> None:
            if self.orphaned():
                os._exit(3)  # the coordinator was killed: stop, the next sweep re-runs this item
            now = time.monotonic()
            if now - last_step[0] > 0.5 or step == steps:
                last_step[0] = now
                events.put(("step", index, epoch, step, steps))

        rule = EarlyStopRule.from_payload(payload["early_stop"]) if payload.get("early_stop") else None
        stop_file = payload.get("stop_file")  # a search's pruned trial: the file says why its runs stop

        def on_epoch(result: EpochResult) -> str | None:
            events.put(("epoch", index, result))
            if stop_file and os.path.exists(stop_file):
                return Path(stop_file).read_text(encoding="utf-8").strip() or "stopped by the coordinator"
            return rule(result.metrics) if rule is not None else None

        with self.work.keep_alive(trial_id):
            try:
                data_key = config.data.model_dump_json()
                if data_key not in self.sources:
                    self.sources[data_key] = open_source(config.data)
                result = fit(config, source=self.sources[data_key], on_epoch=on_epoch, on_step=on_step)
                final = result.epochs[-1].metrics.get("cross") if result.epochs else None
                events.put(("end", index, result.status, result.reason, None))
                self.work.done(trial_id, ok=result.status != RunStatus.DIVERGED, value=final)
            except Exception as exc:  # noqa: BLE001 - a crash in one run must not stop the others
                why = f"{type(exc).__name__}: {exc}"
                events.put(("end", index, RunStatus.CRASHED.value, why, traceback.format_exc()))
                self.work.done(trial_id, ok=False)
