"""`orch search`: :func:`run_search`, an Optuna study over a matrix's axes instead of their enumeration.

The study lives in a journal file under ``runs/`` (nothing to start; ``optuna-dashboard
runs/optuna.journal`` shows it) or in an RDB shared by several machines (:class:`StudySettings`). Its
trials run as :mod:`~orchestrator.execute.search.rounds` says, under one parent run of the matrix's
experiment (:class:`~orchestrator.execute.context.SweepContext`).
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from orchestrator.execute.context import SweepContext
from orchestrator.execute.plan import preflight
from orchestrator.execute.resources import plan_workers
from orchestrator.execute.search.rounds import SearchRounds, round_size
from orchestrator.execute.search.space import SearchError, SearchSpace
from orchestrator.execute.search.summary import SearchOutcome, figures, summarise
from orchestrator.execute.search.trend import TrendPruner
from orchestrator.execute.search.trials import TrialDisplay
from orchestrator.execute.workqueue import open_storage
from orchestrator.matrix import Matrix, base_config, check_axes, resolve_point
from orchestrator.names import folder_name
from orchestrator.tracking import RunKind, check_experiment_name, run_tags
from orchestrator.tracking.uri import sqlite_path
from orchestrator.verdict.objective import Objective

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass(frozen=True)
class StudySettings:
    """Which Optuna study a search adds its trials to and what it minimises.

    Attributes:
        name: The study (default: the matrix's name + ``-search``).
        storage: Where it lives: an RDB shared by several machines, default ``runs/optuna.journal``.
        resume: Add to the study (it must exist); else it must not.
        objective: What it minimises (default: the matrix's ``search.objective``).
    """

    name: str | None = None
    storage: str | None = None
    resume: bool = False
    objective: Objective | None = None


def _open_study(matrix: Matrix, name: str, settings: StudySettings, objective: Objective) -> optuna.Study:
    """The search's study, new or resumed.

    Raises:
        SearchError: the study exists and ``settings.resume`` is false, or ``resume`` and it does not.
        orchestrator.execute.workqueue.QueueError: the study storage cannot be opened.
    """
    storage, resume = settings.storage, settings.resume
    study_storage = open_storage(storage or Path("runs") / "optuna.journal")
    existing = {s.study_name for s in optuna.get_all_study_summaries(study_storage, include_best_trial=False)}
    if name in existing and not resume:
        raise SearchError(f"a study named {name!r} exists: pass --resume to continue it, or --study NEW_NAME")
    if name not in existing and resume:
        raise SearchError(
            f"no study named {name!r} to resume (studies: {', '.join(sorted(existing)) or 'none'})"
        )
    search = matrix.search
    pruner: optuna.pruners.BasePruner
    if search.pruner == "trend":
        pruner = TrendPruner(objective, matrix.verdict, search.startup_trials)
    elif search.pruner == "median":  # on the raw per-(seed, epoch) values, as before the trend pruner
        pruner = optuna.pruners.MedianPruner(n_startup_trials=search.startup_trials, n_warmup_steps=2)
    else:
        pruner = optuna.pruners.NopPruner()
    study = optuna.create_study(
        storage=study_storage,
        study_name=name,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=search.sampler_seed),
        pruner=pruner,
        load_if_exists=resume,
    )
    study.set_user_attr("matrix", matrix.name)
    study.set_user_attr("objective", f"{objective} {matrix.verdict.metric}")
    if resume and not storage:  # a journal file has no heartbeats: trials left RUNNING were interrupted
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study_storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return study


def run_search(
    matrix: Matrix,
    space: SearchSpace,
    *,
    root: Path,
    trials: int,
    tracking_uri: str,
    workers: int | None = None,
    study: StudySettings = StudySettings(),  # noqa: B008 - frozen
    edits: dict[str, Any] | None = None,
    matrix_path: Path | None = None,
    display: TrialDisplay | None = None,
) -> SearchOutcome:
    """Run ``trials`` Optuna trials over ``space`` (:func:`search_space` of ``matrix``), up to ``workers``
    runs at once, in the study ``study`` names.

    Args:
        root: The folder the matrix's paths are relative to.
        edits: the command line's overrides and selections, recorded on the parent run (``orch.edits``).
        display: told each trial's progress, and each trial once it is told.

    Raises:
        SearchError: a budget with no analysis window, or the study exists and ``study.resume`` is false.
        MatrixError: a point of the space the RunConfig schema rejects (checked on one point first).
        orchestrator.execute.workqueue.QueueError: the study storage cannot be opened.
        orchestrator.tracking.TrackingError: the matrix's name is refused as an experiment name (before
            anything is written), the tracking store cannot be opened, or the experiment was deleted in it.
    """
    objective = Objective(study.objective or matrix.search.objective)
    check_axes(matrix)
    base = base_config(matrix, root)
    first = resolve_point(matrix, base, "check", space.first(), root=root)
    epochs = first[0].epochs
    if matrix.verdict.window(epochs + 1) is None:
        raise SearchError(
            f"{epochs} epochs leave fewer than verdict.min_window={matrix.verdict.min_window} epochs after "
            "the warm-up: the objective is the verdict's, over that window (raise budget.epochs, or lower "
            "verdict.warmup / verdict.min_window)"
        )
    preflight(first)  # a device that is not here, data that cannot be used: one message, nothing written
    check_experiment_name(matrix.name)  # before the study is written
    name = study.name or f"{matrix.name}-search"
    opened = _open_study(matrix, name, study, objective)
    n_workers = len(plan_workers(10**6, first[0].device, workers=workers))
    size = round_size(n_workers, len(matrix.seeds))
    tags = run_tags(
        RunKind.SWEEP,
        search=name,
        objective=f"{objective} {matrix.verdict.metric}",
        edits={k: v for k, v in (edits or {}).items() if v} or None,
    )
    with (
        SweepContext.open(
            matrix.name, tracking_uri, matrix_path=matrix_path, description=matrix.description
        ) as ctx,
        ctx.parent_run(tags, label="search", sweep_id=f"search-{name}"),
    ):
        ctx.param_axes = list(space.distributions)  # what a trial samples (a round's trials may agree)
        search = SearchRounds(ctx, matrix, base, opened, space, objective, display, root=root)
        try:
            for asked in range(0, trials, size):
                search.run_round(min(size, trials - asked), workers)
        except BaseException:
            search.interrupted()
            raise
        shutil.rmtree(search.stop_dir, ignore_errors=True)
        outcome = summarise(SearchOutcome(name, ctx.parent_run_id or ""), opened)
        db = sqlite_path(
            tracking_uri
        )  # figures beside the store, as a sweep's report (not the working folder)
        outcome.figures = figures(opened, (db.parent if db else Path("runs")) / "reports" / folder_name(name))
        for path in outcome.figures.values():
            ctx.tracker.log_artifact(ctx.parent_run_id or "", path, "search")
        ctx.finish({"orch.best_trial": str(outcome.best_trial), "orch.best_value": str(outcome.best_value)})
    return outcome
