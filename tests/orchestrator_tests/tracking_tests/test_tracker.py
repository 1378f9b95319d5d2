"""The tracker against a real MLflow store in a temporary folder: what is written is what is read back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow import MlflowClient

from model.config import load_config
from model.trainer import EpochResult
from orchestrator.tracking import RunKind, RunStatus, Tracker, prepare_store, run_tags


@pytest.fixture
def tracker(tmp_path: Path) -> Tracker:
    return Tracker(prepare_store(f"sqlite:///{tmp_path}/store/mlflow.db"))


def _run(tracker: Tracker, tiny: dict, *, key: str, seed: int = 0, kind: RunKind = RunKind.RUN) -> str:
    tags = run_tags(kind, sweep="s", cell="c", seed=seed, run_key=key, axes={"recon_weight": 0.5})
    return tracker.start_run("exp", load_config(tiny), name=f"c/seed{seed}", tags=tags)


def test_prepare_store_creates_the_store_once_in_wal_mode(tmp_path: Path) -> None:
    uri = prepare_store(f"sqlite:///{tmp_path}/a/mlflow.db")
    assert uri == f"sqlite:///{tmp_path}/a/mlflow.db" and prepare_store(uri) == uri
    with sqlite3.connect(tmp_path / "a" / "mlflow.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_epochs_status_and_config_read_back(tracker: Tracker, tiny: dict) -> None:
    run_id = _run(tracker, tiny, key="k1")
    for epoch, value in enumerate([0.5, 0.4, 0.3]):
        tracker.log_epoch(run_id, EpochResult(epoch, {"cross": value, "recon": 1.0}))
    tracker.finish(run_id, RunStatus.DIVERGED, "non-finite cross loss at epoch 3, step 1")
    (rec,) = tracker.records("exp", ["cross"])
    assert rec.status is RunStatus.DIVERGED and rec.run_key == "k1" and rec.cell == "c" and rec.seed == 0
    assert list(rec.curve("cross")) == pytest.approx([0.5, 0.4, 0.3])
    assert rec.history["recon"] == [(-1, 1.0)]  # other metrics: final value only
    assert rec.params["trainer.batch_size"] == "8"
    run = MlflowClient(tracker.uri).get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["orch.failure"].startswith("nan")


def test_a_sweeps_params_are_its_axes_and_the_config_is_read_from_config_json(
    tracker: Tracker, tiny: dict
) -> None:
    tags = run_tags(RunKind.RUN, sweep="s", cell="c", seed=0, run_key="k", epochs=2, steps_per_epoch=None)
    params = {"recon_weight": 0.5, "decoder_features": [8, 4], "same_domain_skip": True}
    run_id = tracker.start_run("exp", load_config(tiny), name="c/seed0", tags=tags, params=params)
    tracker.finish(run_id, RunStatus.FINISHED)
    (rec,) = tracker.records("exp", [])
    # a list without spaces, so that an image card's param line stays short in mlflow ui
    assert rec.params == {"recon_weight": "0.5", "decoder_features": "[8,4]", "same_domain_skip": "True"}
    assert rec.budget("trainer.epochs") == "2" and rec.budget("trainer.steps_per_epoch") is None
    config = tracker.run_config(run_id)
    assert config is not None and config["trainer.batch_size"] == 8 and config["data.size"] == 16
    assert tracker.run_config(_run(tracker, tiny, key="old"))["model.encoder.features"] == [4, 8]


def test_attempts_are_listed_oldest_first_with_their_identity(tracker: Tracker, tiny: dict) -> None:
    first = _run(tracker, tiny, key="k")
    tracker.finish(first, RunStatus.CRASHED, "boom")
    second = _run(tracker, tiny, key="k")
    tracker.finish(second, RunStatus.FINISHED)
    attempts = tracker.attempts("exp")
    assert [(a.run_id, a.status) for a in attempts] == [
        (first, RunStatus.CRASHED),
        (second, RunStatus.FINISHED),
    ]
    assert attempts[0].config_key == "k" and attempts[0].code is None  # a run without identity tags
    tracker.mark_killed([first], "test")
    assert tracker.attempts("exp")[0].status is RunStatus.KILLED


def test_records_of_a_matrix_leave_out_search_trials(tracker: Tracker, tiny: dict) -> None:
    for kind, key in ((RunKind.RUN, "k1"), (RunKind.TRIAL, "k1"), (RunKind.RUN, "k2")):
        run_id = _run(tracker, tiny, key=key, kind=kind)
        tracker.log_epoch(run_id, EpochResult(0, {"cross": 1.0}))
        tracker.finish(run_id, RunStatus.FINISHED)
    assert len(tracker.records("exp", ["cross"])) == 3  # an experiment's view: everything
    assert sorted(r.run_key for r in tracker.records("exp", ["cross"], keys={"k1"})) == ["k1"]


def test_latest_sweep_and_sweep_runs(tracker: Tracker, tiny: dict) -> None:
    parent = tracker.start_sweep("exp", name="sweep-1", tags=run_tags(RunKind.SWEEP, sweep="s"))
    child = _run(tracker, tiny, key="k")
    assert tracker.latest_sweep("exp") == parent
    assert [r.info.run_id for r in tracker.sweep_runs("exp", "s")] == [child]
    assert tracker.latest_sweep("none") is None and tracker.attempts("none") == []
