"""`orch status MATRIX` without --storage: done / running / left in the local store, with an ETA from the
epochs measured so far (a real store, runs logged through the tracker as a sweep logs them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from model.trainer import EpochResult
from orchestrator.cli import app
from orchestrator.matrix import load_matrix
from orchestrator.tracking import RunKind, RunStatus, Tracker, prepare_store, run_tags
from tests.conftest import TINY


def test_status_counts_done_running_and_left_with_an_eta(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    m = {"name": "st", "base": TINY, "seeds": [0, 1], "cells": {"a": {}, "b": {"lr": 0.01}}}
    Path("m.yaml").write_text(yaml.safe_dump(m))
    res = CliRunner().invoke(app, ["status", "m.yaml"])
    assert res.exit_code == 0 and "st: 4 runs: 0 done, 0 running, 4 left" in res.output, res.output
    assert "ETA" not in res.output  # nothing measured yet

    _, specs = load_matrix(Path("m.yaml"))
    tracker = Tracker(prepare_store("sqlite:///runs/mlflow.db"))
    ids = []
    for spec in specs[:2]:  # a's two seeds: one finished, one in flight at epoch 1
        tags = run_tags(RunKind.RUN, sweep="s", cell=spec.cell, seed=spec.seed, run_key=spec.run_key)
        ids.append(tracker.start_run("st", spec.config, name=spec.cell, tags=tags))
    for epoch in range(3):
        tracker.log_epoch(ids[0], EpochResult(epoch, {"cross": 1.0 / (epoch + 1)}))
    tracker.finish(ids[0], RunStatus.FINISHED)
    for epoch in range(2):
        tracker.log_epoch(ids[1], EpochResult(epoch, {"cross": 1.0 / (epoch + 1)}))

    res = CliRunner().invoke(app, ["status", "m.yaml"])
    assert res.exit_code == 0, res.output
    assert re.search(r"st: 4 runs: 1 done, 1 running, 2 left; ETA \d\d:\d\d, [\d.]+ s an epoch", res.output)
    assert re.search(rf"a seed {specs[1].seed}: epoch 1/2, \d\d:\d\d", res.output), res.output
    # the store a sweep was pointed at, as every command takes it
    res = CliRunner().invoke(app, ["status", "m.yaml", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"])
    assert res.exit_code == 0 and "0 done, 0 running, 4 left" in res.output, res.output
