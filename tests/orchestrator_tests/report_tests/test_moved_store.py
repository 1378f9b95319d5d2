"""A `runs/` folder copied elsewhere, the original deleted: `orch report` and `orch sweep` on the copy work
as they did where it was made, read and write only the copy, and never recreate the old folder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from model.config import load_config
from model.trainer import EpochResult
from orchestrator.cli import app
from orchestrator.report import build_report
from orchestrator.tracking import RunKind, RunStatus, Tracker, prepare_store, run_tags
from orchestrator.verdict import VerdictSettings
from tests.conftest import TINY

runner = CliRunner()
IMAGE = "x_a_from_b_last_epoch.png"


def _forget_engines() -> None:
    """Close the connections MLflow keeps open in this process (each command here is a new one's)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    while SqlAlchemyStore._engine_map:
        SqlAlchemyStore._engine_map.popitem()[1].dispose()


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny matrix swept into ``a/runs`` (images every epoch), copied to ``b/runs``, ``a`` deleted; the
    commands then run in ``elsewhere/``."""
    tmp = tmp_path_factory.mktemp("moved")
    base = json.loads(json.dumps(TINY))
    base["trainer"]["image_every"] = 1
    matrix = {
        "name": "moving",
        "base": base,
        "seeds": [0, 1],
        "cells": {"slow": {"lr": 1.0e-4}, "fast": {"lr": 3.0e-3}},
        "verdict": {"warmup": 1, "min_seeds": 2, "min_window": 3},
        "budget": {"epochs": 4, "steps_per_epoch": 2},
    }
    (tmp / "m.yaml").write_text(yaml.safe_dump(matrix, sort_keys=False))
    (tmp / "a").mkdir()
    (tmp / "elsewhere").mkdir()
    cwd = pytest.MonkeyPatch()
    cwd.chdir(tmp / "a")
    res = runner.invoke(
        app, ["--tracking-uri", "sqlite:///runs/mlflow.db", "sweep", "../m.yaml", "--workers", "1"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp / "a" / "runs" / "reports" / "moving" / IMAGE).exists()
    _forget_engines()
    shutil.copytree(tmp / "a", tmp / "b")
    shutil.rmtree(tmp / "a")
    cwd.chdir(tmp / "elsewhere")
    yield tmp
    cwd.undo()
    _forget_engines()


def _orch(tmp: Path, *args: str):  # noqa: ANN202
    return runner.invoke(app, [*args, "--tracking-uri", f"sqlite:///{tmp}/b/runs/mlflow.db"])


def _cache(tmp: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (tmp / "b" / "runs" / "cache" / "curves").glob("*.json")}


def test_a_report_on_a_copied_store_draws_its_images_and_writes_only_the_copy(moved: Path) -> None:
    figures = moved / "b" / "runs" / "reports" / "moving"
    cache = _cache(moved)
    res = _orch(moved, "report", str(moved / "m.yaml"))
    assert res.exit_code == 0, res.output
    (drawn,) = [p for p in figures.iterdir() if p.is_dir()]  # not the sweep's own report: a subfolder
    assert (drawn / IMAGE).exists() and str(drawn / IMAGE) in res.output.replace("\n", ""), res.output
    assert not (moved / "a").exists()
    assert not (moved / "elsewhere" / "runs").exists()
    assert len(cache) == 4 and _cache(moved) == cache  # the curves cache moved with the store and was used
    client = MlflowClient(tracking_uri=f"sqlite:///{moved}/b/runs/mlflow.db")
    exp = client.get_experiment_by_name("moving")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 5  # the sweep's parent run and its four runs
    for run in runs:
        root = Path(unquote(urlsplit(run.info.artifact_uri).path))
        assert root.is_relative_to(moved / "b" / "runs" / "artifacts"), run.info.artifact_uri
        sweep = run.data.tags.get("orch.kind") == "sweep"
        for folder in ("report", "reports") if sweep else ("images",):  # logged before and after the copy
            listed = [a.path for a in client.list_artifacts(run.info.run_id, folder)]
            assert listed and all((root / path).exists() for path in listed), (folder, listed)


def test_a_sweep_on_a_copied_store_runs_nothing_again(moved: Path) -> None:
    res = _orch(moved, "sweep", str(moved / "m.yaml"), "--workers", "1")
    assert res.exit_code == 0, res.output
    assert "4 already finished, 0 to run" in res.output
    assert "ran 0" in res.output
    client = MlflowClient(tracking_uri=f"sqlite:///{moved}/b/runs/mlflow.db")
    exp = client.get_experiment_by_name("moving")
    children = client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'run'")
    assert len(children) == 4
    assert not (moved / "a").exists()
    assert not (moved / "elsewhere" / "runs").exists()


def test_a_stale_image_figure_is_removed_when_none_can_be_drawn(tmp_path: Path) -> None:
    """Runs that logged no images: an image grid left by an older report is not shown beside this one's."""
    uri = prepare_store(f"sqlite:///{tmp_path}/runs/mlflow.db")
    tracker = Tracker(uri)
    for seed in range(3):
        tags = run_tags(RunKind.RUN, sweep="s", cell="a", seed=seed, run_key=f"k{seed}")
        run_id = tracker.start_run("plain", load_config(TINY), name=f"a/seed{seed}", tags=tags)
        for epoch in range(6):
            tracker.log_epoch(run_id, EpochResult(epoch, {"cross": 1.0 / (epoch + 1) + 0.01 * seed}))
        tracker.finish(run_id, RunStatus.FINISHED)
    out = tmp_path / "runs" / "reports" / "plain"
    out.mkdir(parents=True)
    stale = out / IMAGE
    stale.write_bytes(b"an older report's grid")
    stale.with_suffix(".digest").write_text("of other runs")
    rep = build_report(uri, "plain", VerdictSettings(warmup=1, min_window=3), out_dir=out)
    assert set(rep.figures) == {"curves"} and rep.figures["curves"].exists()
    assert not stale.exists() and not stale.with_suffix(".digest").exists()
    assert [v.cell for v in rep.verdicts] == ["a"]
