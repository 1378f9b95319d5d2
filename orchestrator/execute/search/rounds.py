"""One `orch search` call's rounds: trials asked a few at a time, their runs trained by local workers,
their epochs fed to the pruner, their results told.

Trials are asked in rounds of a few at a time (:func:`round_size`: enough to keep every worker busy): the
workers of a round know its runs when they start, and each round's sampler has seen every earlier round's
results. The runs of a round are the items of one queue (``runs/queue/search-<key>.journal``), every
trial's first seed first, so that the pruner hears each trial early; a pruned trial's waiting runs are
dropped and its running ones stop at their next epoch (its stop file says why).
"""

from __future__ import annotations

import math
import shutil
import uuid
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from orchestrator.execute.context import QUEUE_DIR, Display, SweepContext, SweepEvent
from orchestrator.execute.resources import plan_workers
from orchestrator.execute.search.space import SearchSpace
from orchestrator.execute.search.trend import TrendEstimate, TrendPruner, step_of, trend_estimate
from orchestrator.execute.search.trials import TrialDisplay, TrialProgress, TrialRun, TrialSpec
from orchestrator.execute.workers import run_workers
from orchestrator.matrix import Matrix, MatrixError, resolve_point
from orchestrator.tracking import RunKind, RunStatus, run_tags
from orchestrator.verdict.objective import Objective


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


class SearchRounds(Display):
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
        root: Path | None = None,
    ) -> None:
        self.ctx, self.tracker, self.matrix, self.base = ctx, ctx.tracker, matrix, base
        self.root = root  # the folder the matrix's paths (and a function's module) are relative to
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
            specs = resolve_point(self.matrix, self.base, f"trial-{trial.number}", values, root=self.root)
        except MatrixError as exc:
            trial.set_user_attr("reason", str(exc))
            self.study.tell(trial, state=TrialState.FAIL)
            run = TrialRun(trial, TrialProgress(trial.number, params, len(self.matrix.seeds)), [])
            self._said(run, TrialState.FAIL, None, str(exc))
            return None
        epochs = specs[0].epochs
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
                plan_workers(len(specs), specs[0].device, workers=workers),
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
            if not run.told and run.pruned is None:
                run.progress.state = TrialState.RUNNING
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
        epochs = run.specs[0].epochs
        run.trial.report(value, step_of(position, epoch, epochs))
        pruned = run.trial.should_prune()
        estimate = self._estimate(run, epochs)
        run.progress.estimate = None if estimate is None else estimate.value
        if pruned:
            why = (
                f"pruned at seed {run.specs[position].seed}, epoch {epoch}: even its optimistic trend "
                f"({'-' if estimate is None else f'{estimate.optimistic:.4g}'}) cannot beat the best trial"
            )
            self.prune(run, why)

    def _estimate(self, run: TrialRun, epochs: int) -> TrendEstimate | None:
        """The trial's trend so far: the trend pruner's, which has just computed it, else computed here."""
        pruner = self.study.pruner
        if isinstance(pruner, TrendPruner):
            return pruner.estimates.get(run.trial.number)
        return trend_estimate(run.curves, epochs, self.matrix.verdict, self.objective, run.baseline)

    def prune(self, run: TrialRun, why: str) -> None:
        """Stop the trial's running runs at their next epoch and drop its waiting ones."""
        run.pruned, run.progress.state, run.progress.reason = why, TrialState.PRUNED, why
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
        state = run.progress.state
        why = f"the same runs as trial {run.trial.number}: its result"
        twin.trial.set_user_attr("reason", why)
        self.study.tell(twin.trial, run.progress.value if state is TrialState.COMPLETE else None, state=state)
        twin.told = True
        twin.progress.done = twin.progress.seeds
        self._said(twin, state, run.progress.value, why)

    def _said(self, run: TrialRun, state: TrialState, value: float | None, why: str) -> None:
        run.progress.state = state
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
