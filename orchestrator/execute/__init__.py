"""Running a matrix's runs: on this machine's workers, across machines, one alone, or as a search.

- :mod:`~orchestrator.execute.plan`: what a sweep would do with each run (done, to run, retry, resume).
- :mod:`~orchestrator.execute.context`: what one sweep shares with everything it calls
  (:class:`~orchestrator.execute.context.SweepContext`).
- :mod:`~orchestrator.execute.sweep`: the coordinator, :func:`run_sweep`.
- :mod:`~orchestrator.execute.lease`: one coordinator of a matrix at a time.
- :mod:`~orchestrator.execute.resume`: what a coordinator does with what dead coordinators left behind.
- :mod:`~orchestrator.execute.signals`: the one signal-handling context manager (SIGTERM taken as Ctrl-C).
- :mod:`~orchestrator.execute.workers`: the worker processes a coordinator starts here, and their events.
- :mod:`~orchestrator.execute.join`: `orch worker`, :func:`join_sweep`.
- :mod:`~orchestrator.execute.worker`: the worker process (and its checkpoint on SIGTERM).
- :mod:`~orchestrator.execute.workqueue`: the queue, held in an Optuna storage.
- :mod:`~orchestrator.execute.launcher`: workers started by a batch scheduler (the Launcher protocol).
- :mod:`~orchestrator.execute.slurm`: the sweep's workers as a Slurm job array (submitit).
- :mod:`~orchestrator.execute.early_stop`: the rule that stops a run once its trend is decided.
- :mod:`~orchestrator.execute.ablate`: `orch ablate`, the one-axis-a-step path between two cells.
- :mod:`~orchestrator.execute.search`: `orch search`, a subpackage (study, rounds, trials, space, trend,
  summary).
- :mod:`~orchestrator.execute.single`: `orch train`, one run with its own directory (and ``--resume``).

Import each name from its module (``from orchestrator.execute.sweep import run_sweep``): a spawned worker
imports this package and must not pull in MLflow.
"""
