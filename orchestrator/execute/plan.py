"""What a sweep would do with each of a matrix's runs, decided from the store before anything starts.

:func:`preflight` checks what would make runs fail (a device this machine lacks, data that is missing,
unreadable or unusable, images too small for the model); :func:`plan_sweep` reads the store and gives
each run a :class:`PlanState`; :func:`dry_run_plan` is ``orch sweep --dry-run``: the plan without creating
a store that does not exist yet. An interrupted run whose checkpoint was logged is resumed, not retried
(:func:`resume_points`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from orchestrator.matrix import RunSpec
from orchestrator.target.base import RunTarget
from orchestrator.tracking import Attempt, RunStatus, Tracker, check_experiment_name, prepare_store
from orchestrator.tracking.uri import sqlite_path

__all__ = ["PlanItem", "PlanState", "ResumePoint", "dry_run_plan", "plan_sweep", "preflight", "resume_points"]


class PlanState(StrEnum):
    """What a sweep does with one (cell, seed)."""

    DONE = "done"  # a run with its key finished (or stopped early while the matrix asks for early stops)
    DIVERGED = "diverged"  # it diverged (NaN/Inf): a result, kept (run again only with retry_diverged)
    TODO = "todo"  # never run
    STALE = "stale"  # it ran, but with other code or data: run again (the old run is kept to compare)
    FAILED = "failed"  # its last attempt crashed (or diverged, with retry_diverged): run again
    KILLED = "killed"  # its last attempt was interrupted: run again
    RESUME = "resume"  # its last attempt was interrupted after logging a checkpoint: continue that run
    EARLY = "early"  # it stopped early, but the matrix now asks for the full budget: run again

    @property
    def label(self) -> str:
        """How the plan table says it."""
        return {
            PlanState.TODO: "to run",
            PlanState.STALE: "stale: run again",
            PlanState.FAILED: "failed before: retry",
            PlanState.KILLED: "interrupted: retry",
            PlanState.RESUME: "interrupted: resume",
            PlanState.EARLY: "stopped early before: full budget now",
            PlanState.DIVERGED: "diverged: kept as a result",
        }.get(self, self.value)

    @property
    def runs(self) -> bool:
        """The sweep runs it (it has no result to keep)."""
        return self not in (PlanState.DONE, PlanState.DIVERGED)

    @property
    def style(self) -> str:
        """Its colour in the plan table (rich style)."""
        return {
            PlanState.DONE: "green",
            PlanState.FAILED: "red",
            PlanState.KILLED: "yellow",
            PlanState.RESUME: "yellow",
            PlanState.STALE: "magenta",
            PlanState.DIVERGED: "yellow",
        }.get(self, "cyan")


@dataclass(frozen=True)
class ResumePoint:
    """Where an interrupted run continues: its MLflow run and the epoch of its logged checkpoint."""

    run_id: str
    epoch: int


@dataclass(frozen=True)
class PlanItem:
    spec: RunSpec
    state: PlanState
    why: str | None = None  # for a stale run: what changed since it ran; for a resumed one: from where
    resume: ResumePoint | None = None


def preflight(specs: list[RunSpec]) -> None:
    """Check, before anything is written, what would make runs of a sweep fail: each kind of run target
    checks its own (:meth:`~orchestrator.target.base.RunTarget.preflight`; the built-in model: a device this
    machine lacks, data that is missing or unusable, data a run's model cannot train on).

    Raises:
        model.config.ConfigError: a device that is not here.
        model.data.DataError: the data, naming the file, the dataset and the problem.
    """
    kinds: dict[type[RunTarget], list[RunTarget]] = {}
    for spec in specs:
        kinds.setdefault(type(spec.target), []).append(spec.target)
    for kind, targets in kinds.items():
        kind.preflight(targets)


def _state(spec: RunSpec, runs: list[Attempt], retry_diverged: bool = False) -> PlanState:
    """The plan for a run whose attempts with its own key, oldest first, ended as ``runs``."""
    done = (RunStatus.FINISHED, RunStatus.STOPPED) if spec.early_stop else (RunStatus.FINISHED,)
    if any(a.status in done for a in runs):
        return PlanState.DONE
    if not runs:
        return PlanState.TODO
    last = runs[-1].status
    if last is RunStatus.DIVERGED and not retry_diverged:
        return PlanState.DIVERGED
    if last is RunStatus.STOPPED:
        return PlanState.EARLY
    return PlanState.FAILED if last in (RunStatus.CRASHED, RunStatus.DIVERGED) else PlanState.KILLED


def _what_changed(spec: RunSpec, before: Attempt) -> str:
    """Why an earlier run of the same config no longer counts: the code, the data, or both changed."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(before.start_time / 1000))
    commit = (
        f", commit {before.git_commit[:10]}" if before.git_commit and before.git_commit != "unknown" else ""
    )
    if before.code is None:
        return f"ran {when}{commit}, before runs recorded their code"
    changed = [
        what
        for what, old, new in (
            ("code", before.code, spec.identity.code),
            ("data", before.data, spec.identity.data),
        )
        if old != new
    ]
    return f"{' and '.join(changed) or 'identity'} changed since the run of {when}{commit}"


def plan_sweep(
    specs: list[RunSpec],
    tracker: Tracker,
    experiment: str,
    *,
    fresh: bool = False,
    retry_diverged: bool = False,
) -> list[PlanItem]:
    """What a sweep would do with each run (:class:`PlanState`); ``fresh`` runs everything again.

    A run of the same config and seed made with other code or data is ``stale``: run again, with the
    reason (what changed since when), and kept in the store for comparison. A run that diverged is a
    result and is kept, unless ``retry_diverged``.
    """
    if fresh:
        return [PlanItem(s, PlanState.TODO) for s in specs]
    by_key: dict[str, list[Attempt]] = {}
    by_config: dict[str, list[Attempt]] = {}
    for attempt in tracker.attempts(experiment):
        by_key.setdefault(attempt.run_key, []).append(attempt)
        by_config.setdefault(attempt.config_key, []).append(attempt)
    resumable = resume_points(tracker, experiment, specs, by_key)
    plan = []
    for spec in specs:
        state = _state(spec, by_key.get(spec.run_key, []), retry_diverged)
        earlier = [a for a in by_config.get(spec.config_key, []) if a.run_key != spec.run_key]
        if state is PlanState.KILLED and spec.run_key in resumable:
            point = resumable[spec.run_key]
            plan.append(PlanItem(spec, PlanState.RESUME, f"from epoch {point.epoch}", point))
        elif state is PlanState.TODO and earlier:
            plan.append(PlanItem(spec, PlanState.STALE, _what_changed(spec, earlier[-1])))
        else:
            plan.append(PlanItem(spec, state))
    return plan


def resume_points(
    tracker: Tracker,
    experiment: str,
    specs: list[RunSpec],
    by_key: dict[str, list[Attempt]] | None = None,
) -> dict[str, ResumePoint]:
    """The runs of ``specs`` a sweep continues rather than starts again, by run key: those whose last
    attempt was interrupted (KILLED, nothing finished since) after its checkpoint was logged.

    ``by_key``: the experiment's attempts by run key, oldest first, when the caller read them already.
    """
    checkpoints = tracker.checkpoint_epochs(experiment)
    if not checkpoints:
        return {}
    if by_key is None:
        by_key = {}
        for attempt in tracker.attempts(experiment):
            by_key.setdefault(attempt.run_key, []).append(attempt)
    points = {}
    for spec in specs:
        runs = by_key.get(spec.run_key, [])
        if runs and _state(spec, runs) is PlanState.KILLED and runs[-1].run_id in checkpoints:
            points[spec.run_key] = ResumePoint(runs[-1].run_id, checkpoints[runs[-1].run_id])
    return points


def dry_run_plan(
    specs: list[RunSpec],
    tracking_uri: str,
    experiment: str,
    *,
    fresh: bool = False,
    retry_diverged: bool = False,
) -> list[PlanItem]:
    """``orch sweep --dry-run``: the plan, read from the store when it exists (never creating one).

    Raises:
        orchestrator.tracking.TrackingError: the store exists but cannot be opened, the experiment was
            deleted in it, or its name is refused.
    """
    check_experiment_name(experiment)
    db = sqlite_path(tracking_uri)
    if db is not None and not db.exists():
        return [PlanItem(s, PlanState.TODO) for s in specs]
    tracker = Tracker(prepare_store(tracking_uri))
    return plan_sweep(specs, tracker, experiment, fresh=fresh, retry_diverged=retry_diverged)
