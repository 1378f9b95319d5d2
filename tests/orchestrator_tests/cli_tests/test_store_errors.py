"""A store that cannot be used is one message and exit 2, never a traceback, and nothing is written: a
`runs/` that is a file or read-only, a damaged mlflow.db, an experiment name MLflow refuses, a deleted
experiment, and a report whose figures cannot be written."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner, Result

from model.trainer import EpochResult
from orchestrator.cli import app
from orchestrator.tracking import RunKind, RunStatus, Tracker, prepare_store, run_tags
from tests.conftest import TINY

runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder with a tiny matrix ``m.yaml`` and config ``tiny.json``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _matrix(tmp_path / "m.yaml", "tiny_sweep")
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    return tmp_path


def _matrix(path: Path, name: str) -> Path:
    matrix = {"name": name, "base": TINY, "seeds": [0], "cells": {"a": {}}, "budget": {"epochs": 1}}
    path.write_text(yaml.safe_dump(matrix))
    return path


def _orch(*args: str) -> Result:
    return runner.invoke(app, list(args))


def _fails(res: Result, *words: str) -> None:
    """Exit 2 with one message holding ``words``, and no traceback."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.output.count("error:") == 1, res.output
    for word in words:
        assert word in res.output, res.output


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a digest of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


COMMANDS = {
    "sweep": ["sweep", "m.yaml"],
    "dry-run": ["sweep", "m.yaml", "--dry-run"],
    "train": ["train", "--config", "tiny.json", "--epochs", "1"],
}


@pytest.mark.parametrize("command", ["sweep", "train"])
def test_runs_that_is_a_file(folder: Path, command: str) -> None:
    (folder / "runs").write_text("not a folder")
    before = _tree(folder)
    _fails(_orch(*COMMANDS[command]), "cannot create the tracking store", "runs is a file, not a folder")
    assert _tree(folder) == before


@pytest.fixture
def immutable(folder: Path) -> Iterator[Path]:
    """``runs/`` made read-only even for root (``chattr +i``); skipped where that is not possible."""
    runs = folder / "runs"
    runs.mkdir(exist_ok=True)
    yield runs
    subprocess.run(["chattr", "-i", str(runs)], capture_output=True)


def _freeze(runs: Path) -> None:
    try:
        res = subprocess.run(["chattr", "+i", str(runs)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no chattr here: a read-only folder cannot be enforced for root")
    if res.returncode != 0:
        pytest.skip(f"chattr +i is not permitted here: {res.stderr.strip()}")


@pytest.mark.parametrize("command", ["sweep", "train"])
def test_a_read_only_runs_folder(folder: Path, immutable: Path, command: str) -> None:
    _freeze(immutable)
    _fails(_orch(*COMMANDS[command]), "cannot create the tracking store", "Operation not permitted")
    assert list(immutable.iterdir()) == []


@pytest.mark.parametrize("command", ["sweep", "dry-run", "train"])
def test_a_read_only_runs_folder_with_a_store(folder: Path, immutable: Path, command: str) -> None:
    prepare_store(f"sqlite:///{immutable}/mlflow.db")
    _forget_engines()
    _freeze(immutable)
    before = _tree(folder)
    _fails(_orch(*COMMANDS[command]), f"cannot open the tracking store {immutable}/mlflow.db", "read-only?")
    assert _tree(folder) == before


@pytest.mark.parametrize("command", ["sweep", "dry-run", "train"])
def test_a_store_uri_that_names_a_folder(folder: Path, command: str) -> None:
    """``sqlite:///runs`` (a folder): said as such, not blamed on a read-only parent; nothing written."""
    (folder / "runs").mkdir()
    before = _tree(folder)
    res = _orch("--tracking-uri", f"sqlite:///{folder}/runs", *COMMANDS[command])
    _fails(res, f"cannot open the tracking store {folder}/runs: it is a folder, not a file")
    assert "read-only" not in res.output
    assert _tree(folder) == before and list((folder / "runs").iterdir()) == []


def _forget_engines() -> None:
    """Close the connections MLflow keeps open in this process (a real command starts without them)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    while SqlAlchemyStore._engine_map:
        SqlAlchemyStore._engine_map.popitem()[1].dispose()


@pytest.mark.parametrize("command", ["sweep", "dry-run", "train"])
def test_a_damaged_store_is_left_as_it_is(folder: Path, command: str) -> None:
    (folder / "runs").mkdir()
    (folder / "runs" / "mlflow.db").write_bytes(os.urandom(64 * 1024))
    before = _tree(folder)
    _fails(
        _orch(*COMMANDS[command]),
        f"cannot open the tracking store {folder}/runs/mlflow.db: file is not a database",
        "left as it is",
    )
    after = _tree(folder)
    after.pop("runs/mlflow.db.lock", None)
    assert after == before


def test_a_report_of_a_damaged_store(folder: Path) -> None:
    (folder / "runs").mkdir()
    (folder / "runs" / "mlflow.db").write_bytes(os.urandom(64 * 1024))
    _fails(_orch("report", "m.yaml"), "sqlite:///runs/mlflow.db", "file is not a database")


@pytest.mark.parametrize("command", ["sweep", "dry-run"])
def test_an_experiment_name_mlflow_refuses(folder: Path, command: str) -> None:
    _matrix(folder / "m.yaml", "x" * 501)
    _fails(_orch(*COMMANDS[command]), "is 501 characters long; MLflow allows at most 500")
    assert not (folder / "runs").exists()


@pytest.mark.parametrize("command", ["sweep", "dry-run"])
def test_a_deleted_experiment(folder: Path, command: str) -> None:
    uri = prepare_store(f"sqlite:///{folder}/runs/mlflow.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment("tiny_sweep")
    client.delete_experiment(exp_id)
    _fails(
        _orch(*COMMANDS[command]),
        "experiment 'tiny_sweep' was deleted in the store",
        f"mlflow experiments restore --experiment-id {exp_id}",
    )
    assert client.search_runs([exp_id]) == []


def test_a_report_whose_figures_cannot_be_written(
    folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The store is elsewhere and readable; ``reports`` beside it, where figures go, is a file."""
    store = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{store}/mlflow.db"
    tracker = Tracker(prepare_store(uri))
    from model.config import load_config

    for seed in (0, 1):
        tags = run_tags(RunKind.RUN, sweep="s", cell="a", seed=seed, run_key=f"k{seed}")
        run_id = tracker.start_run("elsewhere", load_config(TINY), name=f"a/seed{seed}", tags=tags)
        for epoch in range(4):
            tracker.log_epoch(run_id, EpochResult(epoch, {"cross": 1.0 - 0.1 * epoch}))
        tracker.finish(run_id, RunStatus.FINISHED)
    (store / "reports").write_text("not a folder")
    res = _orch("--tracking-uri", uri, "report", "--experiment", "elsewhere")
    _fails(res, f"cannot write figures to {store}/reports/elsewhere/", f"{store}/reports is a file, not a")
    assert not (folder / "runs").exists()  # nothing written where the command ran
    assert "cannot read the tracking store" not in res.output
