"""`orch ablate` on a real tiny matrix and store: one change a step, finished runs reused, the flip named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app

runner = CliRunner()


@pytest.fixture
def walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny: dict) -> Path:
    """Two cells three axes apart: ``start`` learns (its cross loss falls); ``end`` cannot (lr ~ 0)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tiny["data"]["pairs"] = 48
    matrix = {
        "name": "walk",
        "base": tiny,
        "seeds": [0, 1],
        "cells": {
            "start": {"lr": 0.001, "recon_weight": 0.5, "content_weight": 1.0},
            "end": {"lr": 1.0e-12, "recon_weight": 1.0, "content_weight": 0.5},
        },
        "verdict": {"warmup": 5, "min_seeds": 2, "min_window": 3},
        "budget": {"epochs": 12, "steps_per_epoch": 12},
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix, sort_keys=False))
    return tmp_path


def _orch(tmp: Path, *args: str):  # noqa: ANN202
    return runner.invoke(app, [*args, "--tracking-uri", f"sqlite:///{tmp}/runs/mlflow.db"])


def _children(tmp: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/runs/mlflow.db")
    exp = client.get_experiment_by_name("walk")
    return client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'run'", max_results=1000)


def test_each_step_changes_one_axis_reuses_finished_runs_and_names_the_flip(walk: Path) -> None:
    res = _orch(walk, "sweep", str(walk / "m.yaml"), "--workers", "1")
    assert res.exit_code == 0, res.output
    args = ["ablate", str(walk / "m.yaml"), "--from", "start", "--to", "end"]
    res = _orch(walk, *args, "--order", "lr,recon_weight,content_weight", "--workers", "1")
    assert res.exit_code == 0, res.output
    assert "8 runs, 4 already finished, 4 to run" in res.output  # the two ends are the sweep's runs
    runs = _children(walk)
    assert len(runs) == 8
    keys = {r.data.tags["orch.run_key"]: r.data.params for r in runs if r.data.tags["orch.seed"] == "0"}
    # one step after the other, each differs from the previous in one axis (the params: the path's axes)
    path = [{"recon": "0.5", "content": "1.0", "lr": "0.001"}]
    path.append({**path[-1], "lr": "1e-12"})
    path.append({**path[-1], "recon": "1.0"})
    path.append({**path[-1], "content": "0.5"})
    params = []
    for want in path:
        (p,) = [
            p
            for p in keys.values()
            if (p["recon_weight"], p["content_weight"], p["lr"])
            == (want["recon"], want["content"], want["lr"])
        ]
        params.append(p)
    for before, after in zip(params, params[1:], strict=False):
        assert len({k for k in before if before[k] != after[k]}) == 1
    # once lr is ~0 nothing learns, whatever the loss weights: the one flip is the lr step
    flipped = [line for line in res.output.splitlines() if " flips the verdict: " in line]
    assert len(flipped) == 1 and flipped[0].startswith("step 1 flips the verdict: lr: 0.001 -> 1e-12")
    again = _orch(walk, *args, "--order", "lr,recon_weight,content_weight", "--workers", "1")
    assert again.exit_code == 0, again.output
    assert "8 runs, 8 already finished, 0 to run" in again.output and "ran 0" in again.output
    assert len(_children(walk)) == 8
    assert [line for line in again.output.splitlines() if " flips the verdict: " in line] == flipped
    parents = MlflowClient(tracking_uri=f"sqlite:///{walk}/runs/mlflow.db").search_runs(
        [_children(walk)[0].info.experiment_id], "tags.`orch.kind` = 'sweep'"
    )
    edits = [json.loads(p.data.tags["orch.edits"]) for p in parents if "orch.edits" in p.data.tags]
    assert {"from": "start", "to": "end", "order": ["lr", "recon_weight", "content_weight"]} in [
        e.get("ablate") for e in edits
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "strat", "--to", "end"], "--from: no cell named 'strat'; did you mean 'start'?"),
        (["--from", "start", "--to", "edn"], "--to: no cell named 'edn'; did you mean 'end'?"),
        (["--from", "start", "--to", "start"], "do not differ in any axis"),
        (["--from", "start", "--to", "end", "--order", "lrr"], "--order: 'lrr' is no axis of either cell"),
        (["--from", "start"], "give both ends of the path"),
        (["--from", "start", "--to", "end", "budget.epochz=3"], "epochz"),
    ],
)
def test_bad_ablations_exit_2_with_one_message_and_write_nothing(
    walk: Path, args: list, message: str
) -> None:
    res = _orch(walk, "ablate", str(walk / "m.yaml"), *args)
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()) and "Traceback" not in res.output
    assert not (walk / "runs").exists()
