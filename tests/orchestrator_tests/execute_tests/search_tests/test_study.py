"""`orch search` end to end: trials in parallel as child runs, pruning, and input refused before anything."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app

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
    # image_samples leaves training alone: lr alone decides the curve. 16 epochs: the pruner decides near
    # epoch 6, and the worker reads the stop file an epoch boundary later, so a loaded CI machine has slack
    path = _matrix(tmp_path, tiny, {"lr": [1e-2, 1e-9], "trainer.image_samples": [1, 2]}, epochs=16)
    good = runner.invoke(app, ["search", str(path), "--trials", "1", "--where", "lr=0.01"])
    assert good.exit_code == 0 and "trial 0 complete" in good.output, good.output
    bad = runner.invoke(
        app, ["search", str(path), "--trials", "1", "--resume", "--where", "lr=1e-9", "--workers", "1"]
    )
    assert bad.exit_code == 0, bad.output
    assert "trial 1 pruned" in bad.output and "cannot beat the best trial" in bad.output, bad.output
    assert "no importances: 1 complete trial, they need 3 (1 pruned do not count)" in bad.output
    study = optuna.load_study(study_name="srch-search", storage=_journal(tmp_path))
    assert study.trials[1].state == optuna.trial.TrialState.PRUNED
    # one worker runs seed 0 first: it stops before the budget's end and seed 1 never starts
    (run,) = _runs(tmp_path, "trial-1")
    assert run.data.tags["orch.status"] == "stopped" and "pruned" in run.data.tags["orch.early_stop"]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "cross")) < 16


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
