"""`orch search`: Optuna studies over a matrix's axes instead of enumerating them.

Each trial samples a point (list axes are categorical, ``{low, high[, log]}`` axes continuous,
``{choices: [...]}`` categorical), trains it for every seed of the matrix, and is scored by the metric
the verdict uses: its final value averaged over seeds, or its relative drop over the verdict window.
Per-epoch values feed Optuna's pruner. Every (trial, seed) is an MLflow child run with the sweep's
names (``orch.cell`` = ``trial-N``), so `orch report --experiment` and `mlflow ui` show it. The study
lives in a journal file under ``runs/`` (nothing to start) or in an RDB shared by several machines.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from model.config import RunConfig
from model.data import open_source
from model.trainer import EpochResult, fit
from orchestrator.execute.workqueue import open_storage
from orchestrator.matrix import Choices, Matrix, Range, RunSpec, base_config, check_axes, resolve_point
from orchestrator.tracking import RunKind, RunStatus, Tracker, check_experiment_name, prepare_store, run_tags
from orchestrator.verdict import default_warmup

__all__ = ["SearchError", "SearchOutcome", "search_space", "run_search"]

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class SearchError(ValueError):
    """A search that cannot start (study exists without --resume, cells in the matrix...)."""


@dataclass
class SearchOutcome:
    study_name: str
    parent_run_id: str
    trials: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_trial: int | None = None
    importances: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)


def _encode(value: Any) -> Any:
    """Optuna categoricals hold None, bool, int, float or str: lists travel as JSON."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def _decode(value: Any, choices: list[Any]) -> Any:
    for choice in choices:
        if _encode(choice) == value:
            return choice
    return value


def search_space(matrix: Matrix) -> dict[str, BaseDistribution]:
    """Optuna distributions for the matrix's axes, by axis name (sorted).

    Raises:
        SearchError: the matrix has cells or no axes.
    """
    if matrix.cells:
        raise SearchError(
            "`orch search` explores a matrix's axes; this one has named cells: use `orch sweep`"
        )
    if not matrix.axes:
        raise SearchError("the matrix has no axes to search")
    space: dict[str, BaseDistribution] = {}
    for name in sorted(matrix.axes):
        axis = matrix.axes[name]
        if isinstance(axis, Range):
            whole = all(float(v).is_integer() for v in (axis.low, axis.high, axis.step or 1.0))
            if whole:  # {low: 128, high: 512} is an integer axis (widths, epochs...)
                step = int(axis.step or 1)
                space[name] = IntDistribution(int(axis.low), int(axis.high), log=axis.log, step=step)
            else:
                space[name] = FloatDistribution(axis.low, axis.high, log=axis.log, step=axis.step)
        else:
            values = axis.choices if isinstance(axis, Choices) else axis
            space[name] = CategoricalDistribution([_encode(v) for v in values])
    return space


def _choices(matrix: Matrix, name: str) -> list[Any]:
    axis = matrix.axes[name]
    return axis.choices if isinstance(axis, Choices) else axis if isinstance(axis, list) else []


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def _objective_value(curves: list[list[float]], objective: str, warmup: int | None) -> float:
    """Mean over seeds of the final value, or of the relative change over the verdict window."""
    if objective == "final":
        return float(np.mean([c[-1] for c in curves]))
    drops = []
    for c in curves:
        w = warmup if warmup is not None else default_warmup(len(c))
        start = c[min(w, len(c) - 1)]
        drops.append((c[-1] - start) / abs(start) if start else 0.0)
    return float(np.mean(drops))


def _open_study(
    matrix: Matrix, name: str, storage: str | None, *, resume: bool, objective: str
) -> optuna.Study:
    """The search's study, new or resumed.

    Raises:
        SearchError: the study exists and ``resume`` is false, or ``resume`` and it does not.
        orchestrator.execute.workqueue.QueueError: the study storage cannot be opened.
    """
    study_storage = open_storage(storage or Path("runs") / "optuna.journal")
    existing = {s.study_name for s in optuna.get_all_study_summaries(study_storage, include_best_trial=False)}
    if name in existing and not resume:
        raise SearchError(f"a study named {name!r} exists: pass --resume to continue it, or --study NEW_NAME")
    if name not in existing and resume:
        raise SearchError(
            f"no study named {name!r} to resume (studies: {', '.join(sorted(existing)) or 'none'})"
        )
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=matrix.search.startup_trials, n_warmup_steps=2)
        if matrix.search.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        storage=study_storage,
        study_name=name,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=matrix.search.sampler_seed),
        pruner=pruner,
        load_if_exists=resume,
    )
    study.set_user_attr("matrix", matrix.name)
    study.set_user_attr("objective", f"{objective} {matrix.verdict.metric}")
    if resume and not storage:  # a journal file has no heartbeats: trials left RUNNING were interrupted
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study_storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    return study


class _Trials:
    """Optuna's objective: train a sampled point for every seed, track each as a child run, score it."""

    def __init__(
        self,
        matrix: Matrix,
        base: dict[str, Any],
        space: dict[str, BaseDistribution],
        objective: str,
        tracker: Tracker,
        parent: str,
        sweep_id: str,
        on_epoch: Callable[[int, int, EpochResult], None] | None,
    ) -> None:
        self.matrix, self.base, self.space, self.objective = matrix, base, space, objective
        self.tracker, self.parent, self.sweep_id, self.on_epoch = tracker, parent, sweep_id, on_epoch
        self.sources: dict[str, Any] = {}  # data opened once, shared by the trials

    def __call__(self, trial: optuna.Trial) -> float:
        matrix = self.matrix
        values = {k: _decode(_suggest(trial, k, d), _choices(matrix, k)) for k, d in self.space.items()}
        specs: list[RunSpec] = resolve_point(matrix, self.base, f"trial-{trial.number}", values)
        epochs = specs[0].config.trainer.epochs
        # the pruner compares trials step by step: seeds run one after another, each after the last's epochs
        curves = [self._train_seed(trial, spec, i * (epochs + 1), values) for i, spec in enumerate(specs)]
        return _objective_value(curves, self.objective, matrix.verdict.warmup)

    def _train_seed(
        self, trial: optuna.Trial, spec: RunSpec, offset: int, values: dict[str, Any]
    ) -> list[float]:
        # a trial's runs are not a sweep's: kind "trial" keeps a pruned, shortened run from counting as
        # the finished run of its key when the same matrix is swept
        tags = run_tags(
            RunKind.TRIAL,
            sweep=self.sweep_id,
            cell=spec.cell,
            seed=spec.seed,
            run_key=spec.run_key,
            axes=values,
            trial=trial.number,
            **spec.identity.tags(),
        )
        run_id = self.tracker.start_run(
            self.matrix.name,
            spec.config,
            name=f"{spec.cell}/seed{spec.seed}",
            tags=tags,
            parent_id=self.parent,
        )
        metric = self.matrix.verdict.metric
        curve: list[float] = []

        def epoch_cb(result: EpochResult) -> str | None:
            self.tracker.log_epoch(run_id, result)
            value = result.metrics.get(metric, math.nan)
            curve.append(value)
            if self.on_epoch is not None:
                self.on_epoch(trial.number, spec.seed, result)
            if math.isfinite(value):
                trial.report(value, offset + result.epoch)
                if trial.should_prune():
                    return f"pruned by Optuna at seed {spec.seed}, epoch {result.epoch}"
            return None

        config: RunConfig = spec.config
        key = config.data.model_dump_json()
        try:
            if key not in self.sources:
                self.sources[key] = open_source(config.data)
            result = fit(config, source=self.sources[key], on_epoch=epoch_cb)
        except Exception as exc:
            self.tracker.finish(run_id, RunStatus.CRASHED, f"{type(exc).__name__}: {exc}")
            raise
        status = RunStatus(result.status)
        self.tracker.finish(run_id, status, result.reason)
        if status is RunStatus.DIVERGED:
            raise optuna.TrialPruned(f"diverged: {result.reason}")
        if status is RunStatus.STOPPED:
            raise optuna.TrialPruned(result.reason)
        return curve


def run_search(
    matrix: Matrix,
    *,
    root: Path,
    trials: int,
    tracking_uri: str,
    storage: str | None = None,
    study_name: str | None = None,
    resume: bool = False,
    objective: str | None = None,
    matrix_path: Path | None = None,
    out_dir: Path | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
    on_epoch: Callable[[int, int, EpochResult], None] | None = None,
) -> SearchOutcome:
    """Run ``trials`` Optuna trials over ``matrix``'s axes.

    Raises:
        SearchError: cells in the matrix, or the study exists and ``resume`` is false.
        MatrixError: a sampled point the RunConfig schema rejects (checked on the first point).
        orchestrator.execute.workqueue.QueueError: the study storage cannot be opened.
        orchestrator.tracking.TrackingError: the matrix's name is refused as an experiment name (before
            anything is written), the tracking store cannot be opened, or the experiment was deleted in it.
    """
    space = search_space(matrix)
    check_axes(matrix)
    base = base_config(matrix, root)
    objective = objective or matrix.search.objective
    metric = matrix.verdict.metric
    name = study_name or f"{matrix.name}-search"
    # validate the first point of the space before anything is written
    first = {k: d.choices[0] if isinstance(d, CategoricalDistribution) else d.low for k, d in space.items()}
    resolve_point(matrix, base, "check", {k: _decode(v, _choices(matrix, k)) for k, v in first.items()})
    check_experiment_name(matrix.name)
    study = _open_study(matrix, name, storage, resume=resume, objective=objective)

    tracker = Tracker(prepare_store(tracking_uri))
    sweep_id = f"search-{name}"
    parent = tracker.start_sweep(
        matrix.name,
        name=f"search-{time.strftime('%Y%m%d-%H%M%S')}",
        tags=run_tags(RunKind.SWEEP, sweep=sweep_id, search=name, objective=f"{objective} {metric}"),
        artifacts=[matrix_path] if matrix_path else [],
    )
    train = _Trials(matrix, base, space, objective, tracker, parent, sweep_id, on_epoch)
    callbacks = [lambda study, trial: on_trial(trial)] if on_trial else []
    try:
        study.optimize(train, n_trials=trials, callbacks=callbacks, catch=(RuntimeError, ValueError))
    except KeyboardInterrupt:
        tracker.finish(parent, RunStatus.KILLED, "interrupted")
        raise
    outcome = _summarise(study, name, parent)
    outcome.figures = _figures(study, out_dir or Path("runs") / "reports" / f"{name}")
    for path in outcome.figures.values():
        tracker.log_artifact(parent, path, "search")
    tracker.set_tags(
        parent, {"orch.best_trial": str(outcome.best_trial), "orch.best_value": str(outcome.best_value)}
    )
    tracker.finish(parent, RunStatus.FINISHED)
    return outcome


def _summarise(study: optuna.Study, name: str, parent: str) -> SearchOutcome:
    trials = study.get_trials(deepcopy=False)
    out = SearchOutcome(name, parent, trials=len(trials))
    out.complete = sum(t.state == TrialState.COMPLETE for t in trials)
    out.pruned = sum(t.state == TrialState.PRUNED for t in trials)
    out.failed = sum(t.state == TrialState.FAIL for t in trials)
    if out.complete:
        best = study.best_trial
        out.best_value, out.best_params, out.best_trial = best.value, dict(best.params), best.number
    if out.complete >= 2:
        try:
            out.importances = dict(optuna.importance.get_param_importances(study))
        except (RuntimeError, ValueError):
            out.importances = {}
    return out


def _figures(study: optuna.Study, out: Path) -> dict[str, Path]:
    """Optuna's optimisation history, parameter importances and parallel coordinates as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out.mkdir(parents=True, exist_ok=True)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    plots: dict[str, Callable[..., Any]] = {"optimization_history": ovm.plot_optimization_history}
    if len(complete) >= 2:
        plots |= {
            "param_importances": ovm.plot_param_importances,
            "parallel_coordinate": ovm.plot_parallel_coordinate,
        }
    figures = {}
    for key, plot in plots.items():
        try:
            ax = plot(study)
        except (RuntimeError, ValueError):
            continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(8, 5)
        path = out / f"{key}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        figures[key] = path
    return figures
