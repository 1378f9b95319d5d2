"""Runs orch did not make: logged by a plain MLflow script (no orch code in its process), judged by
`orch report --experiment`, through orch's tags or grouped by their params."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from tests.conftest import run_python

runner = CliRunner()

#: Another team's training script: 3 seeds x 2 learning rates, a per-epoch val_loss (step = epoch) through
#: plain MLflow; the "tagged" experiment also carries orch's two tags, the "plain" one none of orch's.
_SCRIPT = """
import math, random, sys
import mlflow

mlflow.set_tracking_uri({uri!r})
for experiment, tagged in (("tagged", True), ("plain", False)):
    mlflow.set_experiment(experiment)
    for lr in (0.0, 0.1):
        for seed in range(3):
            rng = random.Random(seed + 10 * lr)
            with mlflow.start_run():
                if tagged:
                    mlflow.set_tags({{"orch.cell": "learns" if lr else "frozen", "orch.seed": seed}})
                mlflow.log_params({{"lr": lr, "seed": seed, "width": 32}})
                for epoch in range(16):
                    level = 0.05 + math.exp(-0.2 * epoch) if lr else 0.8
                    mlflow.log_metric("val_loss", level * (1 + rng.gauss(0, 0.01)), step=epoch)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("orchestrator", "model"))
print("orch modules:", loaded)
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store holding the script's runs (logged once for the module)."""
    tmp = tmp_path_factory.mktemp("foreign")
    uri = f"sqlite:///{tmp}/mlflow.db"
    res = run_python(_SCRIPT.format(uri=uri), cwd=tmp, timeout=180)
    assert res.returncode == 0, res.stderr
    assert "orch modules: []" in res.stdout  # the runs were logged with no orch code at all
    return uri


def _verdicts(uri: str, *args: str) -> dict[str, dict]:
    res = runner.invoke(app, ["--tracking-uri", uri, "report", *args, "--format", "json"])
    assert res.exit_code == 0, res.output
    return {v["cell"]: v for v in json.loads(res.output)}


def test_runs_another_script_tagged_with_orch_cell_and_seed_are_judged(store: str) -> None:
    got = _verdicts(store, "--experiment", "tagged", "--metric", "val_loss")
    assert {c: v["verdict"] for c, v in got.items()} == {"frozen": "flat", "learns": "falls"}
    assert all(v["seeds"] == [0, 1, 2] for v in got.values())


def test_runs_without_orch_tags_are_grouped_by_their_params(store: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(
        app, ["--tracking-uri", store, "report", "--experiment", "plain", "--metric", "val_loss"]
    )
    assert res.exit_code == 2 and "--cell-by" in res.output and "params.lr" in res.output, res.output

    got = _verdicts(
        store,
        "--experiment",
        "plain",
        "--metric",
        "val_loss",
        "--cell-by",
        "params.lr",
        "--seed-by",
        "params.seed",
    )
    assert {c: v["verdict"] for c, v in got.items()} == {"lr=0.0": "flat", "lr=0.1": "falls"}
    assert got["lr=0.1"]["axes"] == {"lr": "0.1"} and got["lr=0.1"]["seeds"] == [0, 1, 2]

    # the table format also draws the figures and tags the runs with their cell's verdict
    args = ["--experiment", "plain", "--metric", "val_loss", "--cell-by", "params.lr,params.width"]
    res = runner.invoke(app, ["--tracking-uri", store, "report", *args])
    assert res.exit_code == 0 and "lr=0.1,width=32" in res.output and "val_loss_curves.png" in res.output
    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("plain")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 6
    assert {(r.data.params["lr"], r.data.tags.get("orch.verdict")) for r in runs} == {
        ("0.0", "flat"),
        ("0.1", "falls"),
    }


def test_bad_grouping_keys_exit_2_naming_them(store: str) -> None:
    for args, message in (
        (["--cell-by", "lr"], "params.NAME or tags.NAME"),
        (["--cell-by", "params.depth"], "no run of 'plain' has params.depth"),
        (["--cell-by", "params.lr", "--seed-by", "params.lr"], "not an integer seed"),
        (["--seed-by", "params.seed"], "--seed-by needs --cell-by"),
    ):
        res = runner.invoke(
            app, ["--tracking-uri", store, "report", "--experiment", "plain", "--metric", "val_loss", *args]
        )
        assert res.exit_code == 2 and message in res.output, (args, res.output)
