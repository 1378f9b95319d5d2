"""`orch train` stopped by SIGTERM, and `orch train --resume RUN_ID`."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient
from typer.testing import CliRunner

from model.checkpoint import load_checkpoint
from orchestrator.cli import app
from tests.conftest import write_config

runner = CliRunner()
EPOCHS = 8


def _orch(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return env | {"PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def _train_runs(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name("orch-train")
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_sigterm_of_orch_train_then_resume_continues_the_same_run(tmp_path: Path, tiny: dict) -> None:
    tiny["trainer"] |= {"epochs": EPOCHS, "steps_per_epoch": 40}
    config = write_config(tmp_path, tiny)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    proc = subprocess.Popen(
        _orch("train", str(config), "--out", "first"),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while True:  # wait for epoch 2 in the store, then stop it as Slurm or `timeout` would
        assert proc.poll() is None and time.monotonic() < deadline, "orch train ended before it was stopped"
        runs = _train_runs(client) if (tmp_path / "runs" / "mlflow.db").exists() else []
        if runs and len(client.get_metric_history(runs[0].info.run_id, "cross")) >= 3:
            break
        time.sleep(0.1)
    run_id = runs[0].info.run_id
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert f"orch train --resume {run_id}" in out
    killed = client.get_run(run_id)
    assert (
        killed.info.status == "KILLED" and f"orch train --resume {run_id}" in killed.data.tags["orch.failure"]
    )
    k = int(killed.data.tags["orch.checkpoint_epoch"])
    assert 2 <= k < EPOCHS and load_checkpoint(tmp_path / "first" / "checkpoint.pt").epoch == k

    res = subprocess.run(
        _orch("train", "--resume", run_id, "--out", "second"),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and len(_train_runs(client)) == 1
    history = client.get_metric_history(run_id, "cross")
    steps = [m.step for m in history]
    assert sorted(steps) == list(range(EPOCHS + 1))  # every epoch once
    local = client.download_artifacts(run_id, "checkpoint/last.pt", str(tmp_path))
    assert load_checkpoint(local).epoch == EPOCHS

    # never interrupted, not tracked: the same numbers
    whole = subprocess.run(
        _orch("train", str(config), "--out", "whole", "--no-track"),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert whole.returncode == 0, whole.stdout + whole.stderr
    with (tmp_path / "whole" / "metrics.csv").open() as fh:
        expected = {int(r["epoch"]): float(r["cross"]) for r in csv.DictReader(fh)}
    got = {m.step: m.value for m in history}
    assert got.keys() == expected.keys()
    for epoch, value in expected.items():
        assert math.isclose(got[epoch], value, rel_tol=1e-5, abs_tol=1e-7), (epoch, got[epoch], value)


def test_resume_refuses_an_unknown_a_finished_or_a_checkpointless_run(
    tmp_path: Path, tiny: dict, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = write_config(tmp_path, tiny)
    done = runner.invoke(app, ["train", str(config), "--out", "done"])
    assert done.exit_code == 0, done.output
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    (finished,) = _train_runs(client)
    bare = client.create_run(finished.info.experiment_id)  # interrupted before any epoch: no checkpoint
    client.set_terminated(bare.info.run_id, "KILLED")
    for run_id, message in (
        ("0123456789abcdef", "no run '0123456789abcdef'"),
        (finished.info.run_id, "already ended (finished)"),
        (bare.info.run_id, "logged no checkpoint"),
    ):
        res = runner.invoke(app, ["train", "--resume", run_id, "--out", "again"])
        assert res.exit_code == 2 and message in res.output, res.output
        assert not (tmp_path / "again").exists()
    both = runner.invoke(app, ["train", str(config), "--resume", finished.info.run_id])
    assert both.exit_code == 2 and "--resume continues a run as configured" in both.output
    assert client.get_run(finished.info.run_id).info.status == "FINISHED"
