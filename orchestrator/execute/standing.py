"""Where a matrix stands in a local store: runs done, running and left, and an ETA from measured epochs.

What `orch status MATRIX` prints without ``--storage``: it reads the tracking store only (no queue), so it
works while a sweep runs in another terminal, after one was stopped, or before any. A run is *done* when
the sweep would keep it (finished, or diverged: a result), *running* while its MLflow run is open, and
*left* otherwise. The ETA is the work left (the running runs' remaining epochs, the others' whole budget)
at the seconds per epoch measured so far (ended runs: their length over their epochs; running ones: the
time since they started over the epochs they logged), the cell's own where it has any, spread over as many
workers as runs are running (one when none is).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.execute.plan import PlanState, plan_sweep
from orchestrator.matrix import RunSpec
from orchestrator.tracking import RunStatus, Tracker
from orchestrator.tracking.records import RunRecord

__all__ = ["Running", "Standing", "sweep_standing"]


@dataclass(frozen=True)
class Running:
    """A run in flight: its cell and seed, the last epoch it logged (-1: none yet) and of how many."""

    cell: str
    seed: int
    epoch: int
    epochs: int
    seconds: float  # since it started


@dataclass
class Standing:
    """A matrix's runs in the store: how many are done, which are running, how many are left."""

    total: int
    done: int
    running: list[Running] = field(default_factory=list)
    left: int = 0
    epoch_seconds: float | None = None  # measured, over every cell
    eta_seconds: float | None = None  # None: no epoch measured yet, or nothing left


def sweep_standing(specs: Sequence[RunSpec], tracker: Tracker, experiment: str, metric: str) -> Standing:
    """Where ``specs`` (a matrix's runs) stand in ``experiment``: :class:`Standing` (``metric``: the one
    each epoch logs, whose steps count a run's epochs)."""
    specs = list(specs)
    if tracker.experiment_id(experiment, create=False) is None:
        return Standing(len(specs), 0, left=len(specs))
    plan = plan_sweep(specs, tracker, experiment)
    records = {r.run_key: r for r in tracker.records(experiment, [metric], keys={s.run_key for s in specs})}
    now_ms = time.time() * 1000
    per_epoch: dict[str, list[float]] = {}
    for rec in records.values():
        if (seconds := _epoch_seconds(rec, metric, now_ms)) is not None:
            per_epoch.setdefault(rec.cell, []).append(seconds)
    done, running, waiting = 0, [], []
    for item in plan:
        rec = records.get(item.spec.run_key)
        if item.state in (PlanState.DONE, PlanState.DIVERGED):
            done += 1
        elif rec is not None and rec.status is RunStatus.RUNNING:
            epochs = item.spec.epochs  # the built-in model's trainer.epochs, or a function's budget
            seconds = (now_ms - rec.start_time) / 1000
            running.append(Running(item.spec.cell, item.spec.seed, _last_epoch(rec, metric), epochs, seconds))
        else:
            waiting.append(item.spec)
    everything = [t for ts in per_epoch.values() for t in ts]
    standing = Standing(len(specs), done, running, len(waiting))
    if everything:
        standing.epoch_seconds = statistics.median(everything)
        standing.eta_seconds = _eta(running, waiting, per_epoch, standing.epoch_seconds)
    return standing


def _eta(
    running: list[Running], waiting: list[RunSpec], per_epoch: dict[str, list[float]], overall: float
) -> float:
    """Seconds left: each run's remaining epochs at its cell's measured pace, over the running workers."""

    def pace(cell: str) -> float:
        return statistics.median(per_epoch[cell]) if per_epoch.get(cell) else overall

    left = sum(max(0, r.epochs - r.epoch) * pace(r.cell) for r in running)
    left += sum((s.epochs + 1) * pace(s.cell) for s in waiting)
    return left / max(1, len(running))


def _last_epoch(rec: RunRecord, metric: str) -> int:
    steps = [step for step, _ in rec.history.get(metric, []) if step >= 0]
    return max(steps, default=-1)


def _epoch_seconds(rec: RunRecord, metric: str, now_ms: float) -> float | None:
    """A run's measured seconds per epoch: its length (so far) over the epochs it logged."""
    epochs = _last_epoch(rec, metric) + 1
    if epochs < 1 or not rec.start_time:
        return None
    if rec.status is RunStatus.RUNNING:
        end = now_ms
    elif rec.end_time:
        end = rec.end_time
    else:
        return None
    return max(0.0, (end - rec.start_time) / 1000 / epochs)
