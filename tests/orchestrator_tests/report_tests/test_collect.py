"""From a real store to each cell's curves: which attempt counts, and how failed seeds are counted."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from model.trainer import EpochResult
from orchestrator.matrix import load_matrix
from orchestrator.report.collect import ReportError, collect_cells, judge_cells
from orchestrator.tracking import RunKind, RunStatus, Tracker, prepare_store, run_tags
from orchestrator.verdict import Verdict, VerdictSettings


def _log(tracker: Tracker, spec, status: RunStatus, values: list[float]) -> str:  # noqa: ANN001
    tags = run_tags(RunKind.RUN, sweep="s", cell=spec.cell, seed=spec.seed, run_key=spec.run_key)
    run_id = tracker.start_run("col", spec.config, name=spec.cell, tags=tags)
    for epoch, value in enumerate(values):
        tracker.log_epoch(run_id, EpochResult(epoch, {"cross": value}))
    tracker.finish(run_id, status, "why")
    return run_id


@pytest.fixture
def store(tmp_path: Path, tiny: dict) -> tuple[Tracker, list]:
    tiny["trainer"]["epochs"] = 9
    matrix = {"name": "col", "base": tiny, "seeds": [0, 1, 2, 3], "cells": {"a": {"recon_weight": 0.5}}}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix))
    return Tracker(prepare_store(f"sqlite:///{tmp_path}/mlflow.db")), load_matrix(path)[1]


def test_statuses_are_counted_and_the_latest_finished_attempt_counts(store: tuple[Tracker, list]) -> None:
    tracker, specs = store
    falling = [1.0 - 0.05 * e for e in range(10)]
    _log(tracker, specs[0], RunStatus.CRASHED, falling[:3])
    kept = _log(tracker, specs[0], RunStatus.FINISHED, falling)
    _log(tracker, specs[0], RunStatus.KILLED, falling[:2])  # a later attempt that was interrupted
    _log(tracker, specs[1], RunStatus.DIVERGED, falling[:4])
    _log(tracker, specs[2], RunStatus.CRASHED, falling[:2])
    stopped = _log(tracker, specs[3], RunStatus.STOPPED, falling[:7])
    (cell,) = collect_cells(tracker, "col", "cross", specs=specs)
    assert cell.run_ids == [kept, stopped] and cell.seeds == [0, 3]
    assert (cell.diverged, cell.crashed, cell.missing) == (1, 1, 0)
    assert cell.planned_epochs == 10  # a stopped run is judged over the budget's window
    (verdict,) = judge_cells([cell], VerdictSettings())
    assert (
        verdict.verdict is Verdict.INCONCLUSIVE and "too few seeds: 2 usable (1 diverged)" in verdict.reason
    )


def test_nothing_to_judge_says_why(store: tuple[Tracker, list]) -> None:
    tracker, specs = store
    with pytest.raises(ReportError, match="no experiment named 'col'"):
        collect_cells(tracker, "col", "cross", specs=specs)
    tracker.experiment_id("col")
    with pytest.raises(ReportError, match="has no runs tagged orch.cell and orch.seed for this matrix"):
        collect_cells(tracker, "col", "cross", specs=specs)
    tags = run_tags(RunKind.RUN, cell="a", seed=0, run_key=specs[0].run_key)
    tracker.finish(tracker.start_run("col", specs[0].config, name="a", tags=tags), RunStatus.CRASHED, "boom")
    with pytest.raises(
        ReportError, match=r"every run in 'col' failed \(1 crashed\); the first, a seed 0: boom"
    ):
        collect_cells(tracker, "col", "cross", specs=specs)
