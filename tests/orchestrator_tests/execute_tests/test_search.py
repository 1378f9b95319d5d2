from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.execute.search import round_size, search_space
from orchestrator.execute.search_space import format_params
from orchestrator.execute.trend_pruner import Objective, TrendPruner, objective_value, step_of
from orchestrator.matrix import read_matrix
from orchestrator.verdict import CellData, VerdictSettings, judge_cell

runner = CliRunner()


def _matrix(tmp_path: Path, tiny: dict, axes: dict, epochs: int = 5, **extra) -> Path:
    tiny["trainer"]["epochs"] = epochs
    m = {
        "name": "srch",
        "base": tiny,
        "seeds": [0, 1],
        "axes": axes,
        "search": {"startup_trials": 1},
        **extra,
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    return path


AXES = {
    "recon_weight": {"low": 0.01, "high": 1.0, "log": True},
    "latent_width": {"choices": [8, 16]},
    "decoder_features": [[8, 4], [4, 4]],
}


def _journal(tmp_path: Path) -> optuna.storages.BaseStorage:
    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "runs" / "optuna.journal"))
    )


def _runs(tmp_path: Path, cell: str | None = None) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    exp = client.get_experiment_by_name("srch")
    flt = "tags.`orch.kind` = 'trial'" + (f" and tags.`orch.cell` = '{cell}'" if cell else "")
    return client.search_runs([exp.experiment_id], flt)


# ------------------------------------------------------------------------------------------- the space


def test_space_from_lists_ranges_and_choices(tmp_path: Path, tiny: dict) -> None:
    matrix, _ = read_matrix(_matrix(tmp_path, tiny, AXES))
    space = search_space(matrix).distributions
    assert space["recon_weight"] == optuna.distributions.FloatDistribution(0.01, 1.0, log=True)
    assert space["latent_width"] == optuna.distributions.CategoricalDistribution([8, 16])
    assert space["decoder_features"] == optuna.distributions.CategoricalDistribution(["[8, 4]", "[4, 4]"])
    whole, _ = read_matrix(_matrix(tmp_path, tiny, {"latent_width": {"low": 8, "high": 32, "log": True}}))
    assert search_space(whole).distributions["latent_width"] == optuna.distributions.IntDistribution(
        8, 32, log=True
    )


def test_where_pins_an_axis_and_cells_searches_around_one(tmp_path: Path, tiny: dict) -> None:
    matrix, _ = read_matrix(_matrix(tmp_path, tiny, AXES))
    space = search_space(matrix, where={"decoder_features": "[4, 4]", "recon_weight": "0.5"})
    assert sorted(space.distributions) == ["latent_width"]
    assert space.fixed == {"decoder_features": [4, 4], "recon_weight": 0.5}
    celled, _ = read_matrix(_matrix(tmp_path, tiny, AXES, cells={"wide": {"lr": 0.003}}))
    assert search_space(celled, cell="wide").fixed == {"lr": 0.003}


def test_params_read_to_three_significant_digits() -> None:
    assert format_params({"lr": 0.00032123456, "recon_weight": 0.1234567, "latent_width": 16}) == (
        "lr=3.21e-04, recon_weight=0.123, latent_width=16"
    )


def test_rounds_keep_the_workers_busy() -> None:
    assert round_size(2, 2) == 1  # one trial's two seeds at once
    assert round_size(1, 5) == 1
    assert round_size(4, 1) == 4
    assert round_size(8, 5) == 3  # 15 runs fill 15 of 16 slots; 2 trials would leave 6 idle


# ------------------------------------------------------------------------------ objective and pruner


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


# ---------------------------------------------------------------------------------- real searches


@pytest.mark.slow
def test_search_runs_trials_in_parallel_as_child_runs(tmp_path: Path, tiny: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = _matrix(tmp_path, tiny, AXES, search={"pruner": "none"})
    res = runner.invoke(app, ["search", str(path), "--trials", "3", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "[3/3] trial" in res.output and "best: trial" in res.output
    assert "importances over 3 complete trials (0 pruned left out)" in res.output
    assert (tmp_path / "runs" / "reports" / "srch-search" / "param_importances.png").exists()
    study = optuna.load_study(study_name="srch-search", storage=_journal(tmp_path))
    assert len(study.trials) == 3
    # each seed reports its own epochs: steps 0..5, then 6..11
    assert sorted(study.trials[0].intermediate_values) == list(range(12))
    runs = _runs(tmp_path)
    assert {(r.data.tags["orch.cell"], r.data.tags["orch.seed"]) for r in runs} >= {
        ("trial-0", "0"),
        ("trial-0", "1"),
    }
    assert all(r.data.tags["orch.trial"] == r.data.tags["orch.cell"].removeprefix("trial-") for r in runs)
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert any(a[1] > b[0] for a, b in zip(spans, spans[1:], strict=False)), "no two runs overlapped"
    # the existing study is not silently reused; --resume adds to it; report judges trials like cells
    res = runner.invoke(app, ["search", str(path), "--trials", "1"])
    assert res.exit_code == 2 and "--resume" in res.output
    rep = runner.invoke(app, ["report", "--experiment", "srch", "--format", "json"])
    assert rep.exit_code == 0 and '"cell": "trial-0"' in rep.output


@pytest.mark.slow
def test_a_trial_whose_trend_cannot_beat_the_best_is_pruned(tmp_path: Path, tiny: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # image_samples leaves training alone: lr alone decides the curve
    path = _matrix(tmp_path, tiny, {"lr": [1e-2, 1e-9], "trainer.image_samples": [1, 2]}, epochs=8)
    good = runner.invoke(app, ["search", str(path), "--trials", "1", "--where", "lr=0.01"])
    assert good.exit_code == 0 and "trial 0 complete" in good.output, good.output
    bad = runner.invoke(
        app, ["search", str(path), "--trials", "1", "--resume", "--where", "lr=1e-9", "--workers", "1"]
    )
    assert bad.exit_code == 0, bad.output
    assert "trial 1 pruned" in bad.output and "cannot beat the best trial" in bad.output
    assert "no importances: 1 complete trial, they need 3 (1 pruned do not count)" in bad.output
    study = optuna.load_study(study_name="srch-search", storage=_journal(tmp_path))
    assert study.trials[1].state == optuna.trial.TrialState.PRUNED
    # one worker runs seed 0 first: it stops before the budget's end and seed 1 never starts
    (run,) = _runs(tmp_path, "trial-1")
    assert run.data.tags["orch.status"] == "stopped" and "pruned" in run.data.tags["orch.early_stop"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "cross")) < 8


@pytest.mark.parametrize(
    ("axes", "extra", "args", "message"),
    [
        ({"recon_weight": {"low": 1.0, "high": 0.1}}, {}, [], "must be below high"),
        ({"recon_weight": {"low": 0.0, "high": 1.0, "log": True}}, {}, [], "log range needs low > 0"),
        ({"recon_weight": []}, {}, [], "has no values"),
        ({"recon_weight": [0.1]}, {}, ["--trials", "0"], "--trials"),
        ({"recon_weight": [0.1]}, {}, ["--storage", "postgresql://orch@127.0.0.1:1/orch"], "cannot open"),
        ({"recon_weight": [0.1]}, {"cells": {"x": {"lr": 0.1}}}, [], "has named cells"),
        ({"recon_weight": [0.1]}, {"cells": {"x": {"lr": 0.1}}}, ["--cells", "y"], "no cell named 'y'"),
        ({"recon_weight": [-1.0]}, {}, [], "greater than or equal to 0"),
        ({"recon_weight": [0.1]}, {}, ["--objective", "drops"], "drops"),
        ({"recon_weight": [0.1]}, {}, ["budget.epoch=3"], "did you mean 'budget.epochs'"),
        ({"recon_weight": [0.1]}, {}, ["seeds=[0,0]"], "distinct"),
        ({"recon_weight": [0.1, 0.2]}, {}, ["--where", "recon=0.1"], "no axis 'recon'"),
        ({"recon_weight": [0.1, 0.2]}, {}, ["--where", "recon_weight=0.3"], "not one of the axis's values"),
        ({"recon_weight": [0.1]}, {}, ["budget.epochs=3"], "verdict.min_window"),
        (
            {"recon_weight": [0.1]},
            {},
            ["base.data={source: hdf5, path: gone.h5}"],
            "gone.h5: no such data file",
        ),
    ],
)
def test_bad_search_input_exits_2_and_starts_nothing(
    tmp_path: Path, tiny: dict, monkeypatch, axes: dict, extra: dict, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _matrix(tmp_path, tiny, axes, **extra)
    res = runner.invoke(app, ["search", str(path), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "runs" / "mlflow.db").exists()


def test_sweep_refuses_a_range_axis(tmp_path: Path, tiny: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["sweep", str(_matrix(tmp_path, tiny, AXES))])
    assert res.exit_code == 2 and "ranges are for `orch search`" in res.output
