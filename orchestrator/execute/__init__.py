"""Running a matrix's runs: on this machine's workers, across machines, one alone, or as a search.

- :mod:`~orchestrator.execute.plan`: what a sweep would do with each run (done, to run, retry, resume).
- :mod:`~orchestrator.execute.sweep`: the coordinator, :func:`run_sweep`.
- :mod:`~orchestrator.execute.lease`: one coordinator of a matrix at a time.
- :mod:`~orchestrator.execute.resume`: what a coordinator does with what dead coordinators left behind.
- :mod:`~orchestrator.execute.signals`: SIGTERM taken as Ctrl-C.
- :mod:`~orchestrator.execute.workers`: the worker processes a coordinator starts here, and their events.
- :mod:`~orchestrator.execute.join`: `orch worker`, :func:`join_sweep`.
- :mod:`~orchestrator.execute.worker`: the worker process (and its checkpoint on SIGTERM).
- :mod:`~orchestrator.execute.workqueue`: the queue, held in an Optuna storage.
- :mod:`~orchestrator.execute.launcher`: workers started by a batch scheduler (the Launcher protocol).
- :mod:`~orchestrator.execute.slurm`: the sweep's workers as a Slurm job array (submitit).
- :mod:`~orchestrator.execute.early_stop`: the rule that stops a run once its trend is decided.
- :mod:`~orchestrator.execute.ablate`: `orch ablate`, the one-axis-a-step path between two cells.
- :mod:`~orchestrator.execute.search`: `orch search`, with ``search_space``, ``search_trials``,
  ``search_objective``, ``search_summary`` and ``trend_pruner`` (the verdict's statistic and the pruner).
- :mod:`~orchestrator.execute.single`: `orch train`, one run with its own directory (and ``--resume``).

Names are imported on first use: a spawned worker imports this package and must not pull in MLflow.
"""

from __future__ import annotations

from orchestrator.lazy import lazy_attributes

__all__ = [
    "EarlyStopRule",
    "Launcher",
    "PlanItem",
    "PlanState",
    "QueueError",
    "SearchError",
    "SearchOutcome",
    "SlurmError",
    "SlurmLauncher",
    "SlurmResources",
    "SweepEvent",
    "SweepOutcome",
    "SweepStatus",
    "TrainOutcome",
    "WorkQueue",
    "dry_run_plan",
    "join_sweep",
    "open_storage",
    "plan_sweep",
    "preflight",
    "run_search",
    "run_sweep",
    "sweep_status",
    "train_single",
]

_LAZY = {
    "EarlyStopRule": "early_stop",
    "PlanItem": "plan",
    "PlanState": "plan",
    "dry_run_plan": "plan",
    "plan_sweep": "plan",
    "preflight": "plan",
    "QueueError": "workqueue",
    "WorkQueue": "workqueue",
    "open_storage": "workqueue",
    "SweepStatus": "workqueue",
    "sweep_status": "workqueue",
    "Launcher": "launcher",
    "SlurmError": "slurm",
    "SlurmLauncher": "slurm",
    "SlurmResources": "slurm",
    "SearchError": "search",
    "SearchOutcome": "search",
    "run_search": "search",
    "SweepEvent": "workers",
    "SweepOutcome": "workers",
    "join_sweep": "join",
    "run_sweep": "sweep",
    "TrainOutcome": "single",
    "train_single": "single",
}


__getattr__ = lazy_attributes(__name__, _LAZY)
