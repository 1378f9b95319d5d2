"""budget.scale on a real tiny sweep: its own runs and keys, the 1x runs reused, and `orch report` pairing
each cell's verdicts at every budget the matrix was swept at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.matrix import read_matrix
from orchestrator.report.budgets import build_budgets

runner = CliRunner()


def _orch(tmp: Path, *args: str):  # noqa: ANN202
    return runner.invoke(app, [*args, "--tracking-uri", f"sqlite:///{tmp}/runs/mlflow.db"])


def _children(tmp: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/runs/mlflow.db")
    exp = client.get_experiment_by_name("budgets")
    return client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'run'", max_results=1000)


def test_a_scaled_sweep_has_its_own_runs_and_the_report_pairs_the_budgets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny: dict
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tiny["data"]["pairs"] = 48
    matrix = {
        "name": "budgets",
        "base": tiny,
        "seeds": [0, 1],
        # at 12 steps an epoch the first cell's cross loss falls (as in test_ablate); lr ~ 0 never learns
        "cells": {"learns": {"lr": 0.001, "recon_weight": 0.5}, "frozen": {"lr": 1.0e-12}},
        "verdict": {"warmup": 5, "min_seeds": 2, "min_window": 3},
        "budget": {"epochs": 12, "steps_per_epoch": 3},
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix, sort_keys=False))
    m = str(path)
    assert _orch(tmp_path, "sweep", m, "--workers", "1").exit_code == 0
    first = {r.data.tags["orch.run_key"] for r in _children(tmp_path)}
    res = _orch(tmp_path, "sweep", m, "budget.scale=4", "--workers", "1")
    assert res.exit_code == 0, res.output
    assert "4 runs, 0 already finished, 4 to run" in res.output
    runs = _children(tmp_path)
    scaled = {r.data.tags["orch.run_key"] for r in runs} - first
    assert len(runs) == 8 and len(scaled) == 4  # new runs under their own keys
    steps = {r.data.tags["orch.run_key"]: r.data.tags["orch.steps_per_epoch"] for r in runs}
    assert {steps[k] for k in first} == {"3"} and {steps[k] for k in scaled} == {"12"}
    assert {r.data.tags["orch.epochs"] for r in runs} == {"12"}  # the same epochs: the same window
    for again in (["budget.scale=1"], ["--budget-scale", "1"], []):  # at 1 the keys are the old ones
        res = _orch(tmp_path, "sweep", m, *again, "--workers", "1")
        assert res.exit_code == 0 and "4 runs, 4 already finished, 0 to run" in res.output, res.output
    assert "4 runs, 4 already finished, 0 to run" in _orch(tmp_path, "sweep", m, "--budget-scale", "4").output
    assert len(_children(tmp_path)) == 8

    # the pairing judges each budget's own runs, as a report of the matrix at that budget does
    mx, root = read_matrix(path)
    scales, rows = build_budgets(f"sqlite:///{tmp_path}/runs/mlflow.db", mx, mx.verdict, root=root)
    assert scales == [1.0, 4.0]
    for scale in scales:
        res = _orch(tmp_path, "report", m, f"budget.scale={scale:g}", "--format", "json")
        assert res.exit_code == 0, res.output
        alone = {v["cell"]: {k: x for k, x in v.items() if k != "report"} for v in json.loads(res.output)}
        for row in rows:
            judged = row.verdicts[scale]
            assert judged is not None and json.loads(json.dumps(judged.to_dict())) == alone[row.cell]
    for row in rows:  # marked where the verdict or its state is not the same at both budgets
        (one, four) = ((v.verdict, v.state) for v in row.verdicts.values())  # type: ignore[union-attr]
        assert row.changed == (one != four)
    assert {r.cell: r for r in rows}["learns"].verdicts[4.0].verdict.value == "falls"

    res = _orch(tmp_path, "report", m)
    assert res.exit_code == 0, res.output
    text = res.output.split("the verdict at each budget")[1]
    assert "1x: verdict" in text and "4x: verdict" in text
    for row in rows:
        (line,) = [line for line in text.splitlines() if line.strip().startswith(row.cell)]
        assert ("≠" in line) == row.changed
    changed = sum(r.changed for r in rows)
    assert f"{changed} of 2 cells change verdict with the budget" in text


def test_a_scale_that_does_not_fit_a_cells_steps_exits_2(tmp_path: Path, tiny: dict) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"name": "b", "base": tiny, "axes": {"lr": [0.001]}}))
    uri = f"sqlite:///{tmp_path}/runs/mlflow.db"
    res = runner.invoke(app, ["sweep", str(path), "budget.scale=2", "--tracking-uri", uri])
    assert res.exit_code == 2 and "give budget.steps_per_epoch" in " ".join(res.output.split())
    res = runner.invoke(app, ["sweep", str(path), "--budget-scale", "0", "--tracking-uri", uri])
    assert res.exit_code == 2 and "budget.scale" in res.output
    assert not (tmp_path / "runs").exists()
