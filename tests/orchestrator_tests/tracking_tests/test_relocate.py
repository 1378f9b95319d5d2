"""A store moved or copied as a folder: opening it where it is now points its artifact locations under
its folder, once and with one line; a location a user chose elsewhere, and a store reached through a
symlink, are left as they are."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from model.config import load_config
from model.trainer import EpochResult
from orchestrator.tracking import RunKind, RunStatus, Tracker, prepare_store, run_tags
from orchestrator.tracking.store import follow_move
from tests.conftest import TINY

MOVED = "was moved from"


def _forget_engines() -> None:
    """Close the connections MLflow keeps open in this process (a moved store is a new command's)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    while SqlAlchemyStore._engine_map:
        SqlAlchemyStore._engine_map.popitem()[1].dispose()


def _store(folder: Path, *, elsewhere: Path | None = None) -> Path:
    """A store in ``folder`` with one run that logged an image; with ``elsewhere``, also an experiment a
    user pointed at that folder."""
    db = folder / "mlflow.db"
    tracker = Tracker(prepare_store(f"sqlite:///{db}"))
    tags = run_tags(RunKind.RUN, sweep="s", cell="a", seed=0, run_key="k0")
    run_id = tracker.start_run("moving", load_config(TINY), name="a/seed0", tags=tags)
    tracker.log_epoch(run_id, EpochResult(0, {"cross": 1.0}, {"x_a_from_b": np.eye(4)}))
    tracker.finish(run_id, RunStatus.FINISHED)
    if elsewhere is not None:
        tracker.client.create_experiment("mine", artifact_location=elsewhere.as_uri())
    _forget_engines()
    return db


def _locations(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT artifact_location FROM experiments UNION ALL SELECT artifact_uri FROM runs"
        )
        return sorted(r[0] for r in rows)


def test_a_moved_store_points_its_artifacts_under_its_new_folder_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    user_chosen = tmp_path / "big-disk" / "artifacts"
    db = _store(tmp_path / "a" / "runs", elsewhere=user_chosen)
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = tmp_path / "b" / "runs" / "mlflow.db"
    with caplog.at_level(logging.WARNING):
        prepare_store(f"sqlite:///{moved}")
        prepare_store(f"sqlite:///{moved}")
        follow_move(f"sqlite:///{moved}")
    assert [r.getMessage() for r in caplog.records] == [
        f"the tracking store {moved} was moved from {db.parent}: its 3 artifact locations now point under "
        f"{moved.parent}"
    ]
    locations = _locations(moved)
    assert user_chosen.as_uri() in locations  # a location outside the store's folder is the user's
    ours = [loc for loc in locations if loc != user_chosen.as_uri()]
    assert len(ours) == 3 and all(loc.startswith((moved.parent / "artifacts").as_uri()) for loc in ours)
    assert not (tmp_path / "a").exists()
    tracker = Tracker(f"sqlite:///{moved}")
    (run,) = tracker.client.search_runs([tracker.experiment_id("moving")])
    assert tracker.images(run.info.run_id, "x_a_from_b") is not None
    _forget_engines()


def test_a_store_reached_through_a_symlink_is_not_rewritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = _store(tmp_path / "real")
    before = _locations(db)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with caplog.at_level(logging.WARNING):
        prepare_store(f"sqlite:///{tmp_path}/link/mlflow.db")
    assert MOVED not in caplog.text
    assert _locations(db) == before
    _forget_engines()


def test_a_copy_points_at_itself_and_the_original_is_untouched(tmp_path: Path) -> None:
    db = _store(tmp_path / "a")
    before = _locations(db)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    follow_move(f"sqlite:///{tmp_path}/b/mlflow.db")
    assert _locations(db) == before
    copy = _locations(tmp_path / "b" / "mlflow.db")
    assert copy == sorted(loc.replace(db.parent.as_uri(), (tmp_path / "b").as_uri()) for loc in before)
    _forget_engines()
