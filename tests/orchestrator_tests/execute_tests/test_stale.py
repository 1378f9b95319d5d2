"""An edit to the model's code, then the same sweep: the finished runs are stale, run again, and the old
ones stay in the store to be judged side by side (real processes on a copy of the code)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[3]


def _orch(cwd: Path, src: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src), "XDG_CACHE_HOME": str(cwd / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "--tracking-uri",
        f"sqlite:///{cwd}/runs/mlflow.db",
        *args,
    ]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _runs(tmp_path: Path) -> list:
    client = MlflowClient(f"sqlite:///{tmp_path}/runs/mlflow.db")
    exp = client.get_experiment_by_name("stale")
    return client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'run'")


def test_edited_code_makes_finished_runs_stale_and_keeps_the_old_ones(tmp_path: Path, tiny: dict) -> None:
    src = tmp_path / "src"
    for package in ("model", "orchestrator"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    matrix = {"name": "stale", "base": tiny, "seeds": [0, 1, 2], "cells": {"c": {"recon_weight": 0.3}}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix))

    first = _orch(tmp_path, src, "sweep", "m.yaml", "--workers", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    (old_code,) = {r.data.tags["orch.code"] for r in _runs(tmp_path)}
    again = _orch(tmp_path, src, "sweep", "m.yaml", "--dry-run")
    assert "0 to run, 3 done" in again.stdout

    unet = src / "model" / "unet.py"
    unet.write_text(unet.read_text().replace("nn.MaxPool2d(2)", "nn.AvgPool2d(2)"))
    plan = _orch(tmp_path, src, "sweep", "m.yaml", "--dry-run")
    assert plan.returncode == 0 and "3 to run, 0 done" in plan.stdout, plan.stdout
    assert "3 stale: code changed since the run of" in plan.stdout

    second = _orch(tmp_path, src, "sweep", "m.yaml", "--workers", "2")
    assert second.returncode == 0 and "3 stale: code changed" in second.stdout, second.stdout + second.stderr
    runs = _runs(tmp_path)
    assert len(runs) == 6 and len({r.data.tags["orch.code"] for r in runs}) == 2  # old runs kept beside
    assert len({r.data.tags["orch.config_key"] for r in runs}) == 3
    assert all(r.data.tags["orch.git_commit"] and "orch.data" in r.data.tags for r in runs)

    new = json.loads(_orch(tmp_path, src, "report", "m.yaml", "--format", "json").stdout)[0]
    old = _orch(tmp_path, src, "report", "m.yaml", "--format", "json", "--code", old_code[:8])
    assert old.returncode == 0, old.stderr
    old = json.loads(old.stdout)[0]
    assert old["seeds"] == new["seeds"] == [0, 1, 2]
    assert old["finals"]["cross"] != new["finals"]["cross"]  # another model: other numbers
