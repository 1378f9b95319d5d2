"""`orch search`: Optuna studies over a matrix's axes instead of enumerating them.

Each trial samples a point (:mod:`~orchestrator.execute.search.space`) and trains it for every seed of the
matrix; it is scored by what the verdict reads off a cell (:class:`Objective`, computed in
:mod:`~orchestrator.execute.search.trend`: where the window's line ends against the constant baseline, or
its relative change over the window) and given up early by the trend pruner once even an optimistic reading
of its epochs cannot beat the best trial. Runs go through the sweep's machinery: the trials asked of Optuna
are expanded into (trial, seed) runs, enqueued in a :class:`~orchestrator.execute.workqueue.WorkQueue` and
trained by local worker processes (:func:`~orchestrator.execute.workers.run_workers`), round by round
(:mod:`~orchestrator.execute.search.rounds`); each epoch they report is given to the trial
(``trial.report``) and the pruner. Every (trial, seed) is an MLflow child run with the sweep's names
(``orch.kind`` = ``trial``, ``orch.cell`` = ``trial-N``), so `orch report --experiment` and `mlflow ui`
show it.

- :mod:`~orchestrator.execute.search.study`: :func:`run_search` and the study (:class:`StudySettings`);
- :mod:`~orchestrator.execute.search.rounds`: a call's rounds of trials;
- :mod:`~orchestrator.execute.search.trials`: one trial while it runs, and what a display shows of it;
- :mod:`~orchestrator.execute.search.space`: the distributions searched;
- :mod:`~orchestrator.execute.search.trend`: the objective, the trend estimate and the trend pruner;
- :mod:`~orchestrator.execute.search.summary`: what a search ends with.
"""

from __future__ import annotations

from orchestrator.execute.search.rounds import round_size
from orchestrator.execute.search.space import SearchError, SearchSpace, format_params, search_space
from orchestrator.execute.search.study import StudySettings, run_search
from orchestrator.execute.search.summary import SearchOutcome
from orchestrator.execute.search.trend import TrendPruner, objective_value
from orchestrator.execute.search.trials import TrialDisplay, TrialProgress
from orchestrator.verdict.objective import Objective

__all__ = [
    "Objective",
    "SearchError",
    "SearchOutcome",
    "SearchSpace",
    "StudySettings",
    "TrendPruner",
    "TrialDisplay",
    "TrialProgress",
    "format_params",
    "objective_value",
    "round_size",
    "run_search",
    "search_space",
]
