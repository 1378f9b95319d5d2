"""`orch search`: Optuna studies over a matrix's axes instead of enumerating them.

Each trial samples a point (:mod:`~orchestrator.execute.search_space`) and trains it for every seed of
the matrix; it is scored by what the verdict reads off a cell (:mod:`~orchestrator.execute.trend_pruner`:
where the window's line ends against the constant baseline, or its relative change over the window) and
given up early by the trend pruner once even an optimistic reading of its epochs cannot beat the best
trial. Runs go through the sweep's machinery: the trials asked of Optuna are expanded into (trial, seed)
runs, enqueued in a :class:`~orchestrator.execute.workqueue.WorkQueue` under ``runs/queue`` and trained
by local worker processes (:func:`~orchestrator.execute.workers.run_workers`), up to ``workers`` at once;
each epoch they report is given to the trial (``trial.report``) and the pruner; a pruned trial's waiting
runs are dropped and its running ones stop at their next epoch. Every (trial, seed) is an MLflow child
run with the sweep's names (``orch.kind`` = ``trial``, ``orch.cell`` = ``trial-N``), so `orch report
--experiment` and `mlflow ui` show it. The study lives in a journal file under ``runs/`` (nothing to
start; ``optuna-dashboard runs/optuna.journal`` shows it) or in an RDB shared by several machines.

Trials are asked in rounds of a few at a time (enough to keep every worker busy): the workers of a round
know its runs when they start, and each round's sampler has seen every earlier round's results.
"""

from __future__ import annotations

import math
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from orchestrator.execute.context import QUEUE_DIR, Display, SweepContext, SweepEvent
from orchestrator.execute.plan import preflight
from orchestrator.execute.resources import plan_workers
from orchestrator.execute.search_space import SearchError, SearchSpace, search_space
from orchestrator.execute.search_summary import SearchOutcome, figures, summarise
from orchestrator.execute.search_trials import TrialProgress, TrialRun, TrialSpec
from orchestrator.execute.trend_pruner import Objective, TrendPruner, analysis_window, step_of, trend_estimate
from orchestrator.execute.workers import run_workers
from orchestrator.execute.workqueue import open_storage
from orchestrator.matrix import Matrix, MatrixError, base_config, check_axes, resolve_point
from orchestrator.tracking import RunKind, RunStatus, check_experiment_name, run_tags
from orchestrator.tracking.store import sqlite_path

__all__ = [
    "Objective",
    "SearchError",
    "SearchOutcome",
    "StudySettings",
    "TrialDisplay",
    "TrialProgress",
    "run_search",
    "search_space",
]

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


class TrialDisplay(Protocol):
    """Whoever follows a search's trials (the command line's live view)."""

    def on_progress(self, progress: TrialProgress) -> None:
        """A trial's progress, after each of its runs' starts, epochs and ends."""

    def on_trial(self, progress: TrialProgress) -> None:
        """A trial told (complete, pruned or failed), once."""


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


def round_size(workers: int, seeds: int) -> int:
    """Trials asked at once: the fewest whose runs keep ``workers`` busy (at least 90 % of the slots of
    the rounds they fill, else the best share up to one trial a worker)."""
    first = max(1, math.ceil(workers / seeds))
    best, best_use = first, 0.0
    for k in range(first, max(first, workers) + 1):
        use = k * seeds / (math.ceil(k * seeds / workers) * workers)
        if use >= 0.9:
            return k
        if use > best_use:
            best, best_use = k, use
    return best


class _Search(Display):
    """Asks trials, runs their runs on local workers, feeds their epochs to the pruner, tells results.

    It is the display of the context its runs report to (:meth:`on_event`), and tells its own ``display``
    about trials."""

    def __init__(
        self,
        ctx: SweepContext,
        matrix: Matrix,
        base: dict[str, Any],
        study: optuna.Study,
        space: SearchSpace,
        objective: Objective,
        display: TrialDisplay | None,
    ) -> None:
        self.ctx, self.tracker, self.matrix, self.base = ctx, ctx.tracker, matrix, base
        self.study, self.space, self.objective, self.display = study, space, objective, display
        ctx.display = self  # the trials' runs report here
        self.key = uuid.uuid4().hex[:12]
        self.queue_url = str(QUEUE_DIR / f"search-{self.key}.journal")
        self.stop_dir = QUEUE_DIR / f"search-{self.key}-stop"
        self.by_keys: dict[tuple[str, ...], TrialRun] = {}  # a point's run keys -> the trial that ran it
        self.open: list[TrialRun] = []
        self.owner: dict[int, tuple[TrialRun, int]] = {}  # item index -> (trial, seed position)

    # ----------------------------------------------------------------------------------- asking

    def ask(self) -> TrialRun | None:
        """A new trial and its runs; None when its point is refused (the trial is told FAIL)."""
        trial = self.study.ask()
        values = self.space.sample(trial)
        params = {k: values[k] for k in self.space.distributions}
        try:
            specs = resolve_point(self.matrix, self.base, f"trial-{trial.number}", values)
        except MatrixError as exc:
            trial.set_user_attr("reason", str(exc))
            self.study.tell(trial, state=TrialState.FAIL)
            run = TrialRun(trial, TrialProgress(trial.number, params, len(self.matrix.seeds)), [])
            run.progress.state, run.progress.reason = "failed", str(exc)
            self._said(run)
            return None
        epochs = specs[0].config.trainer.epochs
        trial.set_user_attr("epochs", epochs)
        trial.set_user_attr("seeds", [s.seed for s in specs])
        stop = self.stop_dir / f"trial-{trial.number}"
        run = TrialRun(
            trial,
            TrialProgress(trial.number, params, len(specs)),
            [TrialSpec(**s.__dict__, stop_file=str(stop)) for s in specs],
        )
        keys = tuple(s.run_key for s in specs)
        twin = self.by_keys.get(keys)
        if twin is not None:  # the same runs as an earlier trial of this call: its result is this one's too
            run.twin_of = twin
            twin.twins.append(run)
            if twin.told:
                self._tell_twin(twin, run)
            return run
        self.by_keys[keys] = run
        return run

    # ---------------------------------------------------------------------------------- a round

    def run_round(self, size: int, workers: int | None) -> None:
        """Ask ``size`` trials, run their runs (seed by seed across trials) and tell every result."""
        runs = [r for r in (self.ask() for _ in range(size)) if r is not None]
        todo = [r for r in runs if r.twin_of is None]
        specs: list[TrialSpec] = []
        items: list[dict[str, Any]] = []
        for position in range(max((len(r.specs) for r in todo), default=0)):
            for run in todo:  # every trial's first seed first: the pruner hears each trial early
                if position < len(run.specs):
                    index = len(specs)
                    specs.append(run.specs[position])
                    items.append({"index": index, "run_key": run.specs[position].run_key})
                    items[-1]["trial"] = run.trial.number
                    run.items[index] = position
                    self.owner[index] = (run, position)
        self.open = todo
        if not specs:
            return
        self.stop_dir.mkdir(parents=True, exist_ok=True)
        name = f"orch-search:{self.study.study_name}:{self.key}:{todo[0].trial.number}"
        work = self.ctx.create_queue(name, items, {"search": self.ctx.sweep_id}, url=self.queue_url)
        try:
            run_workers(
                self.ctx,
                list(specs),
                plan_workers(len(specs), specs[0].config.trainer.device, workers=workers),
            )
        finally:
            work.abandon()
            work.close()
        for run in todo:  # runs nobody was left to train (every worker died)
            for index in set(run.items) - set(run.ended) - run.dropped:
                run.ended[index] = (RunStatus.CRASHED, "not run: every worker process died")
            self.finish(run)

    # ---------------------------------------------------------------------------------- events

    def on_event(self, ev: SweepEvent) -> None:
        run, position = self.owner[ev.item]
        if ev.kind == "start":
            if ev.run_id is not None:
                self.tracker.set_tags(ev.run_id, run_tags(RunKind.TRIAL, trial=run.trial.number))
            run.started.add(ev.item)
            run.progress.state = "running" if not run.told and run.pruned is None else run.progress.state
        elif ev.kind == "epoch" and ev.metrics is not None and ev.epoch is not None:
            self.on_epoch(run, position, ev.epoch, ev.metrics)
        elif ev.kind == "end" and ev.status is not None:
            run.ended[ev.item] = (ev.status, ev.reason)
            run.progress.done = sum(1 for s, _ in run.ended.values() if s is not RunStatus.KILLED)
            self.finish(run)
        if ev.kind != "step" and self.display is not None:
            self.display.on_progress(run.progress)

    def on_epoch(self, run: TrialRun, position: int, epoch: int, metrics: dict[str, float]) -> None:
        """One epoch of one of the trial's seeds: its value to the trial, the estimate, the pruner."""
        settings = self.matrix.verdict
        baseline_name = settings.baseline_name()
        if run.baseline is None and baseline_name and math.isfinite(metrics.get(baseline_name, math.nan)):
            run.baseline = float(metrics[baseline_name])
            if not run.told:
                run.trial.set_user_attr("baseline", run.baseline)
        value = float(metrics.get(settings.metric, math.nan))
        run.curves.setdefault(position, {})[epoch] = value
        run.progress.epoch = max(run.progress.epoch, epoch)
        if run.told or run.pruned is not None or not math.isfinite(value):
            return
        epochs = run.specs[0].config.trainer.epochs
        run.trial.report(value, step_of(position, epoch, epochs))
        estimate = trend_estimate(run.curves, epochs, settings, self.objective, run.baseline)
        run.progress.estimate = None if estimate is None else estimate.value
        if run.trial.should_prune():
            why = (
                f"pruned at seed {run.specs[position].seed}, epoch {epoch}: even its optimistic trend "
                f"({'-' if estimate is None else f'{estimate.optimistic:.4g}'}) cannot beat the best trial"
            )
            self.prune(run, why)

    def prune(self, run: TrialRun, why: str) -> None:
        """Stop the trial's running runs at their next epoch and drop its waiting ones."""
        run.pruned, run.progress.state, run.progress.reason = why, "pruned", why
        Path(run.specs[0].stop_file).write_text(why, encoding="utf-8")
        work = self.ctx.work
        if work is not None:
            storage = work.storage
            for t in storage.get_all_trials(work.study_id, deepcopy=False, states=(TrialState.WAITING,)):
                item = t.user_attrs["item"]
                if item.get("trial") == run.trial.number:
                    try:
                        if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                            run.dropped.add(item["index"])
                    except optuna.exceptions.UpdateFinishedTrialError:
                        continue
        self.finish(run)

    # --------------------------------------------------------------------------------- telling

    def finish(self, run: TrialRun) -> None:
        """Tell the trial's result once none of its runs is left to end."""
        if run.told or run.outstanding():
            return
        state, value, reason = run.result(self.objective, self.matrix.verdict)
        if reason:
            run.trial.set_user_attr("reason", reason)
        self.study.tell(run.trial, value if state is TrialState.COMPLETE else None, state=state)
        run.told = True
        self._said(run, state, value, reason)
        for twin in run.twins:
            self._tell_twin(run, twin)

    def _tell_twin(self, run: TrialRun, twin: TrialRun) -> None:
        state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(
            run.progress.state, TrialState.FAIL
        )
        why = f"the same runs as trial {run.trial.number}: its result"
        twin.trial.set_user_attr("reason", why)
        self.study.tell(twin.trial, run.progress.value if state is TrialState.COMPLETE else None, state=state)
        twin.told = True
        twin.progress.done = twin.progress.seeds
        self._said(twin, state, run.progress.value, why)

    def _said(
        self, run: TrialRun, state: TrialState = TrialState.FAIL, value: float | None = None, why: str = ""
    ) -> None:
        run.progress.state = state.name.lower()
        run.progress.value = value
        run.progress.reason = why or run.progress.reason
        if self.display is not None:
            self.display.on_trial(run.progress)

    def interrupted(self) -> None:
        """Trials still running when the search is interrupted are told FAIL (a resumed study goes on)."""
        for run in self.open:
            if not run.told:
                run.trial.set_user_attr("reason", "interrupted")
                self.study.tell(run.trial, state=TrialState.FAIL)
                run.told = True
        shutil.rmtree(self.stop_dir, ignore_errors=True)


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
    first = resolve_point(matrix, base, "check", space.first())
    epochs = first[0].config.trainer.epochs
    if analysis_window(epochs, matrix.verdict) is None:
        raise SearchError(
            f"{epochs} epochs leave fewer than verdict.min_window={matrix.verdict.min_window} epochs after "
            "the warm-up: the objective is the verdict's, over that window (raise budget.epochs, or lower "
            "verdict.warmup / verdict.min_window)"
        )
    preflight(first)  # a device that is not here, data that cannot be used: one message, nothing written
    check_experiment_name(matrix.name)  # before the study is written
    name = study.name or f"{matrix.name}-search"
    opened = _open_study(matrix, name, study, objective)
    n_workers = len(plan_workers(10**6, first[0].config.trainer.device, workers=workers))
    size = round_size(n_workers, len(matrix.seeds))
    tags = run_tags(
        RunKind.SWEEP,
        search=name,
        objective=f"{objective} {matrix.verdict.metric}",
        edits={k: v for k, v in (edits or {}).items() if v} or None,
    )
    with (
        SweepContext.open(matrix.name, tracking_uri, matrix_path=matrix_path) as ctx,
        ctx.parent_run(tags, label="search", sweep_id=f"search-{name}"),
    ):
        search = _Search(ctx, matrix, base, opened, space, objective, display)
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
        outcome.figures = figures(opened, (db.parent if db else Path("runs")) / "reports" / name)
        for path in outcome.figures.values():
            ctx.tracker.log_artifact(ctx.parent_run_id or "", path, "search")
        ctx.finish({"orch.best_trial": str(outcome.best_trial), "orch.best_value": str(outcome.best_value)})
    return outcome
