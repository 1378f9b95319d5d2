from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.execute.search import search_space
from orchestrator.matrix import read_matrix

runner = CliRunner()


def _matrix(tmp_path: Path, tiny: dict, axes: dict, **extra) -> Path:
    tiny["trainer"]["epochs"] = 2
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


def test_space_from_lists_ranges_and_choices(tmp_path: Path, tiny: dict) -> None:
    matrix, _ = read_matrix(_matrix(tmp_path, tiny, AXES))
    space = search_space(matrix)
    assert space["recon_weight"] == optuna.distributions.FloatDistribution(0.01, 1.0, log=True)
    assert space["latent_width"] == optuna.distributions.CategoricalDistribution([8, 16])
    assert space["decoder_features"] == optuna.distributions.CategoricalDistribution(["[8, 4]", "[4, 4]"])
    whole, _ = read_matrix(_matrix(tmp_path, tiny, {"latent_width": {"low": 8, "high": 32, "log": True}}))
    assert search_space(whole)["latent_width"] == optuna.distributions.IntDistribution(8, 32, log=True)


def test_search_trials_are_child_runs_and_resume_continues(tmp_path: Path, tiny: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = _matrix(tmp_path, tiny, AXES)
    res = runner.invoke(app, ["search", str(path), "--trials", "3"])
    assert res.exit_code == 0, res.output
    assert "best: trial" in res.output and "figures:" in res.output
    assert (tmp_path / "runs" / "reports" / "srch-search" / "optimization_history.png").exists()
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "runs" / "optuna.journal"))
    )
    study = optuna.load_study(study_name="srch-search", storage=storage)
    assert len(study.trials) == 3
    first = study.trials[0]
    # per-epoch values reach the pruner, seed after seed: steps 0..2 then 3..5
    assert sorted(first.intermediate_values) == [0, 1, 2, 3, 4, 5]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    exp = client.get_experiment_by_name("srch")
    runs = client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'trial'")
    cells = {(r.data.tags["orch.cell"], r.data.tags["orch.seed"]) for r in runs}
    assert ("trial-0", "0") in cells and ("trial-0", "1") in cells
    assert all("orch.run_key" in r.data.tags for r in runs)
    # the existing study is not silently reused
    res = runner.invoke(app, ["search", str(path), "--trials", "1"])
    assert res.exit_code == 2 and "--resume" in res.output
    res = runner.invoke(app, ["search", str(path), "--trials", "1", "--resume"])
    assert res.exit_code == 0, res.output
    assert len(optuna.load_study(study_name="srch-search", storage=storage).trials) == 4
    # report judges search trials like sweep cells
    rep = runner.invoke(app, ["report", "--experiment", "srch", "--format", "json"])
    assert rep.exit_code == 0 and '"cell": "trial-0"' in rep.output


@pytest.mark.parametrize(
    ("axes", "extra", "args", "message"),
    [
        ({"recon_weight": {"low": 1.0, "high": 0.1}}, {}, [], "must be below high"),
        ({"recon_weight": {"low": 0.0, "high": 1.0, "log": True}}, {}, [], "log range needs low > 0"),
        ({"recon_weight": []}, {}, [], "has no values"),
        ({"recon_weight": [0.1]}, {}, ["--trials", "0"], "--trials"),
        ({"recon_weight": [0.1]}, {}, ["--storage", "postgresql://orch@127.0.0.1:1/orch"], "cannot open"),
        ({"recon_weight": [0.1]}, {"cells": {"x": {"lr": 0.1}}}, [], "has named cells"),
        ({"recon_weight": [-1.0]}, {}, [], "greater than or equal to 0"),
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
