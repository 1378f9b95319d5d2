"""What a search trial is scored by, and when it is given up: the verdict's statistics, not raw values.

A trial's **objective** (:class:`~orchestrator.verdict.objective.Objective`) is what the verdict reads off
its cell (:mod:`orchestrator.verdict.stats`): the line fitted over the analysis window (the epochs after the
warm-up, :meth:`~orchestrator.verdict.VerdictSettings.window`), per seed, from the window's first epoch to
the budget's last. ``final`` is where that line ends, mean over seeds, read against the constant baseline
where the run logs one (``end / baseline - 1``: -0.35 is 35 % below what a model gets for free, the verdict
table's ``vs constant``); ``drop`` is the verdict's relative change over the window
(``(end - start) / |start|``). Both are minimised.

The **trend pruner** (:class:`TrendPruner`) gives a trial up when even an optimistic reading of the epochs
it has shown so far cannot beat the best completed trial: per seed, the line over the window epochs seen
(at least three), continued from its last epoch to the budget's end with its slope's lower confidence
bound (Student t at the verdict's ``confidence``), never below what the metric can be (zero for a loss),
then scored like a finished trial. A trial still learning fast, or too short to tell, is kept. The pruner
keeps each trial's latest estimate (:attr:`TrendPruner.estimates`), so that a search shows it without
computing the trend twice an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial, TrialState

from orchestrator.verdict.objective import Objective, score
from orchestrator.verdict.settings import VerdictSettings
from orchestrator.verdict.stats import fit_window, lower_bound


def objective_value(
    objective: Objective,
    curves: Sequence[Sequence[float]],
    epochs: int,
    settings: VerdictSettings,
    baseline: float | None = None,
) -> float:
    """A finished trial's objective over its seeds' ``curves`` (finite, index = epoch), as the verdict
    fits them; a curve stopped early is extended to the budget's end as :func:`~orchestrator.verdict.
    judge_cell` extends it (never below zero for a metric that never went below zero).

    Raises:
        ValueError: no curve, or the window does not fit the budget or the curves.
    """
    window = settings.window(epochs + 1)
    if window is None or not curves:
        raise ValueError(f"no analysis window in {epochs} epochs (or no curve)")
    ys = [np.asarray(c, dtype=float) for c in curves]
    short = any(y.size < epochs + 1 for y in ys)
    options = settings.fit_options()
    if short:
        fit = fit_window(ys, window, extend=True, lower=lower_bound(ys), **options)
    else:
        fit = fit_window(np.stack(ys), window, **options)
    return score(objective, float(fit.start.mean()), float(fit.end.mean()), baseline)


def step_of(seed_position: int, epoch: int, epochs: int) -> int:
    """The intermediate value's step of a seed's epoch: each seed has its own ``epochs + 1`` steps, so that
    seeds run in parallel report the same epoch without overwriting each other."""
    return seed_position * (epochs + 1) + epoch


@dataclass(frozen=True)
class TrendEstimate:
    """A running trial's objective as its window epochs so far tell it.

    Attributes:
        value: the fitted lines continued to the budget's end, scored.
        optimistic: the same with each slope at its lower confidence bound (the best the trial may do).
        seeds: seeds with enough window epochs to fit (at least three).
    """

    value: float
    optimistic: float
    seeds: int


def trend_estimate(
    curves: Mapping[int, Mapping[int, float]],
    epochs: int,
    settings: VerdictSettings,
    objective: Objective,
    baseline: float | None = None,
    min_points: int = 3,
) -> TrendEstimate | None:
    """:class:`TrendEstimate` of per-seed ``curves`` (epoch -> value), or None before any seed has
    ``min_points`` finite window epochs (or without a window)."""
    from scipy import stats

    window = settings.window(epochs + 1)
    if window is None:
        return None
    first = window[0]
    starts, ends, bests = [], [], []
    for curve in curves.values():
        pts = sorted((e, v) for e, v in curve.items() if e >= first and math.isfinite(v))
        if len(pts) < max(3, min_points):
            continue
        x, y = np.array([p[0] for p in pts], dtype=float), np.array([p[1] for p in pts], dtype=float)
        xc = x - x.mean()
        sxx = float(xc @ xc)
        slope = float(xc @ (y - y.mean())) / sxx
        resid = y - y.mean() - slope * xc
        se = math.sqrt(float(resid @ resid) / (len(x) - 2) / sxx)
        low_slope = slope - float(stats.t.ppf((1 + settings.confidence) / 2, len(x) - 2)) * se
        mean_x, mean_y = float(x.mean()), float(y.mean())
        bound = lower_bound([y])
        floor = -math.inf if bound is None else bound
        starts.append(mean_y + slope * (first - mean_x))
        ends.append(max(floor, mean_y + slope * (epochs - mean_x)))
        last = mean_y + slope * (float(x[-1]) - mean_x)
        bests.append(max(floor, last + low_slope * (epochs - float(x[-1]))))
    if not starts:
        return None
    start = float(np.mean(starts))
    return TrendEstimate(
        score(objective, start, float(np.mean(ends)), baseline),
        score(objective, start, float(np.mean(bests)), baseline),
        len(starts),
    )


def trial_curves(trial: FrozenTrial, epochs: int) -> dict[int, dict[int, float]]:
    """A trial's intermediate values back as seed position -> epoch -> value (:func:`step_of`)."""
    out: dict[int, dict[int, float]] = {}
    for step, value in trial.intermediate_values.items():
        out.setdefault(step // (epochs + 1), {})[step % (epochs + 1)] = value
    return out


class TrendPruner(BasePruner):
    """Prune a trial whose optimistic trend cannot beat the best completed trial (module docstring).

    The trial's user attributes say its budget (``epochs``) and, for ``final``, its constant baseline
    (``baseline``); its intermediate values are per (seed, epoch) (:func:`step_of`).

    Args:
        objective: what the study minimises.
        settings: the matrix's verdict settings (window, confidence).
        startup_trials: completed trials needed before any trial is pruned (at least one).
    """

    def __init__(self, objective: Objective, settings: VerdictSettings, startup_trials: int = 1) -> None:
        self.objective, self.settings = Objective(objective), settings
        self.startup_trials = max(1, startup_trials)
        self.estimates: dict[int, TrendEstimate | None] = {}  # trial number -> its latest estimate

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        epochs = trial.user_attrs.get("epochs")
        if not isinstance(epochs, int):
            return False
        estimate = trend_estimate(
            trial_curves(trial, epochs),
            epochs,
            self.settings,
            self.objective,
            trial.user_attrs.get("baseline"),
        )
        self.estimates[trial.number] = estimate
        done = [
            t.value
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)
        ]
        if len(done) < self.startup_trials:
            return False
        return estimate is not None and estimate.optimistic >= min(done)
