"""What a coordinator holding a matrix's lease does with what earlier coordinators left behind.

Holding the lease (:mod:`orchestrator.execute.lease`) means that no other coordinator of the matrix is
alive, so what the store still shows RUNNING was left by a coordinator that died (``kill -9``, a machine
lost): its parent run and its runs end KILLED ("coordinator died"), except the runs that a worker on
another machine still runs (its heartbeat is fresh): those are neither marked nor run again.

**One parent per completed sweep.** A sweep that was interrupted (Ctrl-C, SIGTERM, a dead coordinator) is
resumed by the next ``orch sweep`` of the same matrix with the same overrides and flags: that sweep
reopens the interrupted parent run (same run id, same sweep id ``orch.sweep``; ``orch.resumed`` counts the
resumptions) instead of starting another, so a matrix's runs of one sweep sit under one parent whatever
stopped it on the way.
"""

from __future__ import annotations

from typing import Any

from orchestrator.execute.workqueue import close_dead_queues, live_claims
from orchestrator.tracking import RunStatus, Tracker
from orchestrator.tracking.vocabulary import TAG_FAILURE, TAG_KIND, TAG_SWEEP

__all__ = ["COORDINATOR_DIED", "open_parent", "settle_dead_sweeps"]

COORDINATOR_DIED = "coordinator died"

#: The tags of a parent run that must agree for a sweep to resume it: the same selection and overrides
#: (``orch.edits``), the same ``--fresh`` and ``--retry-diverged``.
_SAME_SWEEP = ("orch.edits", "orch.fresh", "orch.retry_diverged")


def settle_dead_sweeps(tracker: Tracker, experiment: str, queue_storage: Any | None) -> set[str]:
    """End what dead coordinators of ``experiment`` left RUNNING; returns the run keys that workers on
    other machines still run (not to be enqueued again).

    Call it only while holding the matrix's lease."""
    live: set[tuple[str, str]] = set()
    if queue_storage is not None:
        close_dead_queues(queue_storage, experiment)  # first: no worker may claim an item after this
        live = live_claims(queue_storage, experiment)
    for run_id, status, _ in tracker.sweep_parents(experiment):
        if status is RunStatus.RUNNING:
            tracker.finish(run_id, RunStatus.KILLED, COORDINATOR_DIED)
    stale = [rid for rid, sweep, key in tracker.running_runs(experiment) if (sweep, key) not in live]
    tracker.mark_killed(stale, f"left RUNNING: its {COORDINATOR_DIED}")
    return {key for _, key in live}


def open_parent(tracker: Tracker, experiment: str, tags: dict[str, str]) -> tuple[str, str] | None:
    """Reopen the newest parent run of ``experiment`` when it was interrupted (KILLED) and ``tags`` (a new
    parent's tags) describe the same sweep; returns its (run id, sweep id), or None (start a new one)."""
    parents = tracker.sweep_parents(experiment)
    if not parents:
        return None
    run_id, status, old = parents[-1]
    if status is not RunStatus.KILLED or not old.get(TAG_SWEEP):
        return None
    if any(old.get(name) != tags.get(name) for name in _SAME_SWEEP):
        return None
    resumed = int(old.get("orch.resumed", "0") or 0) + 1
    keep = {k: v for k, v in tags.items() if k not in (TAG_SWEEP, TAG_KIND)}
    tracker.reopen(run_id, keep | {"orch.resumed": str(resumed), "orch.last_interruption": _why(old)})
    return run_id, old[TAG_SWEEP]


def _why(tags: dict[str, str]) -> str:
    return tags.get(TAG_FAILURE, "interrupted")
