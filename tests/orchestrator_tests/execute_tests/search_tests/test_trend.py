"""The objective is the verdict's statistic, and the trend pruner gives up what cannot beat the best."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from orchestrator.execute.search import Objective, TrendPruner, objective_value
from orchestrator.execute.search.trend import step_of
from orchestrator.verdict import CellData, VerdictSettings, judge_cell


def test_objective_is_the_verdicts_statistic() -> None:
    rng = np.random.default_rng(0)
    epochs = np.arange(13)
    curves = [1.0 - 0.03 * epochs + rng.normal(0, 0.01, epochs.size) for _ in range(3)]
    settings = VerdictSettings()
    verdict = judge_cell(CellData("c", curves=curves, baseline=0.9), settings)
    assert objective_value(Objective.DROP, curves, 12, settings) == pytest.approx(verdict.rel_change)
    assert objective_value(Objective.FINAL, curves, 12, settings, 0.9) == pytest.approx(verdict.vs_baseline)


def _trial_with(study: optuna.Study, curves: list[list[float]], epochs: int) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    trial.set_user_attr("epochs", epochs)
    for position, curve in enumerate(curves):
        for epoch, value in enumerate(curve):
            trial.report(value, step_of(position, epoch, epochs))
    return study._storage.get_trial(trial._trial_id)


def test_trend_pruner_prunes_what_cannot_beat_the_best() -> None:
    settings = VerdictSettings()  # 12 epochs: the window starts at epoch 3
    study = optuna.create_study(direction="minimize")
    pruner = TrendPruner(Objective.FINAL, settings, startup_trials=1)
    flat = [[1.0, 0.6, 0.50, 0.501, 0.499, 0.5, 0.502], [1.0, 0.62, 0.52, 0.519, 0.521, 0.52, 0.518]]
    falling = [[1.0, 0.6, 0.50, 0.47, 0.44, 0.41, 0.38]]  # on to 0.2 by epoch 12
    assert not pruner.prune(study, _trial_with(study, flat, 12)), "no trial completed yet"
    study.tell(study.ask(), 0.3)  # the best so far ends at 0.3
    assert pruner.prune(study, _trial_with(study, flat, 12)), "flat near 0.5: cannot reach 0.3"
    assert not pruner.prune(study, _trial_with(study, falling, 12)), "still falling 0.03 an epoch"
    assert not pruner.prune(study, _trial_with(study, [flat[0][:5]], 12)), "two window epochs: too early"
    drops = optuna.create_study(direction="minimize")
    drops.tell(drops.ask(), -0.5)  # the best fell by half over the window
    drop = TrendPruner(Objective.DROP, settings, startup_trials=1)
    assert drop.prune(drops, _trial_with(drops, flat, 12))
    assert not drop.prune(drops, _trial_with(drops, falling, 12))
