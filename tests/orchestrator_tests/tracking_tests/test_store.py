"""Creating and opening the SQLite store with real processes and files: a creation killed half-way (kill -9,
a full disk) leaves no store or a complete one, a store left half-built is rebuilt when it holds nothing
and never touched when it holds anything, and an unreachable tracking server fails in seconds."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from orchestrator.tracking import RunKind, Tracker, TrackingError, check_reachable, prepare_store, run_tags
from orchestrator.tracking.sqlite_store import Schema, inspect_store
from tests.conftest import TINY, Mounts

REPO = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
ENV.pop("MLFLOW_TRACKING_URI", None)
REBUILT = "was left half-built (holds no runs): rebuilt"


def _forget(db: Path) -> None:
    """Close the engine MLflow caches for ``db`` in this process (it keeps the file open)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engine = SqlAlchemyStore._engine_map.pop(f"sqlite:///{db}", None)
    if engine is not None:
        engine.dispose()


def _opens(db: Path) -> bool:
    """Whether MLflow opens ``db`` and finds its schema complete."""
    try:
        MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments(max_results=1)
        return inspect_store(db).schema is Schema.COMPLETE
    finally:
        _forget(db)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def complete(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete store, copied (SQLite's backup: WAL included) by the tests that break it."""
    db = tmp_path_factory.mktemp("complete") / "mlflow.db"
    prepare_store(f"sqlite:///{db}")
    _forget(db)
    return db


def _copy(complete: Path, db: Path) -> Path:
    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(complete) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    dst.close()
    return db


def _break(db: Path, *sql: str) -> None:
    """Run ``sql`` on ``db``, then date it a minute back (a store still changing is waited for)."""
    conn = sqlite3.connect(db)
    for statement in sql:
        conn.execute(statement)
    conn.commit()
    conn.close()
    _age(db)


def _age(db: Path) -> None:
    past = time.time() - 60
    os.utime(db, (past, past))


def _older_revision() -> str:
    from orchestrator.tracking.sqlite_store import _revisions

    head, known = _revisions()
    return sorted(known - {head})[0]


# --------------------------------------------------------------------------- half-built stores


@pytest.mark.parametrize(
    "damage",
    [
        ["DROP TABLE alembic_version"],
        ["UPDATE alembic_version SET version_num = '{older}'"],
        ["CREATE TABLE _alembic_tmp_experiments AS SELECT * FROM experiments", "DROP TABLE experiments"],
        ["DROP TABLE alembic_version", "DROP TABLE secrets", "DROP TABLE trace_info", "DROP TABLE datasets"],
    ],
    ids=["no-version", "interrupted-migration", "alembic-tmp-table", "tables-missing"],
)
def test_a_half_built_store_that_holds_nothing_is_rebuilt_once(
    tmp_path: Path, complete: Path, damage: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    db = _copy(complete, tmp_path / "runs" / "mlflow.db")
    _break(db, *(s.format(older=_older_revision()) for s in damage))
    assert inspect_store(db).schema is Schema.HALF_BUILT
    with caplog.at_level(logging.WARNING):
        prepare_store(f"sqlite:///{db}")
        prepare_store(f"sqlite:///{db}")
    assert [r.getMessage() for r in caplog.records] == [f"the tracking store {db} {REBUILT}"]
    assert _opens(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not list(db.parent.glob(".mlflow.db.building-*"))


def test_an_empty_file_is_rebuilt(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.touch()
    _age(db)
    prepare_store(f"sqlite:///{db}")
    assert _opens(db)


def test_a_half_built_store_that_holds_runs_is_never_deleted(
    tmp_path: Path, complete: Path, tiny: dict
) -> None:
    from model.config import load_config

    db = _copy(complete, tmp_path / "mlflow.db")
    tracker = Tracker(f"sqlite:///{db}")
    tags = run_tags(RunKind.RUN, sweep="s", cell="c", seed=0, run_key="k")
    tracker.start_run("exp", load_config(tiny), name="c/seed0", tags=tags)
    _forget(db)
    _break(db, "DROP TABLE alembic_version")
    before = _digest(db)
    with pytest.raises(TrackingError, match=r"holds 1 runs: it is left as it is.*mlflow db upgrade"):
        prepare_store(f"sqlite:///{db}")
    assert _digest(db) == before


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (["UPDATE alembic_version SET version_num = 'ffffffffffff'"], "unknown to the installed mlflow"),
        ("not mlflow's", "tables that are not MLflow's \\(notes\\)"),
    ],
)
def test_a_store_of_another_kind_is_left_as_it_is(
    tmp_path: Path, complete: Path, make: list[str] | str, message: str
) -> None:
    db = tmp_path / "mlflow.db"
    if isinstance(make, list):
        _break(_copy(complete, db), *make)
    else:
        _break(db, "CREATE TABLE notes (text TEXT)")
    before = _digest(db)
    with pytest.raises(TrackingError, match=message):
        prepare_store(f"sqlite:///{db}")
    assert _digest(db) == before
    assert not list(tmp_path.glob(".mlflow.db.building-*"))


def test_a_stale_journal_beside_a_deleted_store_is_not_replayed(tmp_path: Path, complete: Path) -> None:
    """The user deleted mlflow.db but not its -wal: the new store must not take the old pages."""
    db = _copy(complete, tmp_path / "mlflow.db")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("UPDATE experiments SET name = 'old' WHERE experiment_id = 0")
    conn.commit()
    wal = (tmp_path / "mlflow.db-wal").read_bytes()
    conn.close()
    db.unlink()
    (tmp_path / "mlflow.db-wal").write_bytes(wal)
    prepare_store(f"sqlite:///{db}")
    assert _opens(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM experiments").fetchall() == [("Default",)]


def test_a_migration_killed_half_way_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """What an older orch did (WAL first, then MLflow's ~40 migrations in place), killed with -9 at
    increasing delays until it dies half-way; the store it leaves is then rebuilt."""
    script = (
        "import sqlite3, sys\n"
        "from mlflow import MlflowClient\n"
        "import alembic.command, mlflow.store.tracking.sqlalchemy_store\n"
        "sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL')\n"
        "print('migrating', flush=True)\n"
        "MlflowClient(tracking_uri='sqlite:///' + sys.argv[1]).search_experiments()\n"
    )
    for attempt, delay in enumerate((0.3, 0.6, 0.15, 1.0, 0.05, 1.4)):
        db = tmp_path / str(attempt) / "mlflow.db"
        db.parent.mkdir()
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(db)],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout.readline().strip() == "migrating"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        state = inspect_store(db)
        if state.schema is Schema.HALF_BUILT and state.tables:
            break
    else:
        pytest.fail("no kill landed during the migration")
    with caplog.at_level(logging.WARNING):
        prepare_store(f"sqlite:///{db}")
    assert [r.getMessage() for r in caplog.records] == [f"the tracking store {db} {REBUILT}"]
    assert _opens(db)


def test_kill_9_of_the_first_sweep_while_it_creates_the_store(tmp_path: Path) -> None:
    """A real first `orch sweep` in an empty folder, killed while the store is being created: there is then
    no store or a complete one, and the same command finishes."""
    matrix = {"name": "first", "base": TINY, "seeds": [0], "cells": {"a": {}}, "budget": {"epochs": 1}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix))
    cmd = [sys.executable, "-m", "orchestrator.cli", "sweep", "m.yaml", "--workers", "1"]
    runs = tmp_path / "runs"
    for delay in (0.3, 0.1, 0.6, 1.0):
        shutil.rmtree(runs, ignore_errors=True)
        proc = subprocess.Popen(
            cmd, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        # the store's first file: a temporary store being built (or, formerly, mlflow.db being migrated)
        while not (runs.exists() and [p for p in runs.iterdir() if not p.name.endswith(".lock")]):
            assert time.monotonic() < deadline and proc.poll() is None, "the sweep never created its store"
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        building = list(runs.glob(".mlflow.db.building-*"))
        state = inspect_store(runs / "mlflow.db")
        assert state.schema in (Schema.MISSING, Schema.COMPLETE), state
        if building or state.schema is Schema.MISSING:
            break  # the kill landed during the creation
    else:
        pytest.fail("no kill landed during the store's creation")
    res = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "finished 1" in res.stdout
    assert not list(runs.glob(".mlflow.db.building-*"))


# --------------------------------------------------------------------------- a full disk


def test_a_full_disk_leaves_no_store_or_a_complete_one(tmp_path: Path, mounts: Mounts) -> None:
    failures = []
    for size in ("96k", "320k", "640k", "900k", "1200k", "2m", "3m"):
        db = mounts.tmpfs(tmp_path / f"disk-{size}", size) / "runs" / "mlflow.db"
        try:
            prepare_store(f"sqlite:///{db}")
        except TrackingError as exc:
            failures.append(size)
            assert "full" in str(exc) or "space" in str(exc), exc
            assert str(db) in str(exc)
        finally:
            _forget(db)
        assert not db.exists() or _opens(db), f"{size}: a half-built store"
        assert not list(db.parent.glob(".mlflow.db.building-*")), f"{size}: a temporary store left"
    assert failures, "no size was too small: the test did not run out of disk"


# --------------------------------------------------------------------------- a tracking server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_fails_in_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow retries a server that refuses connections for about 5 minutes; orch says so in seconds.
    Timed in this process (Python's imports aside), then once as a real command."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    monkeypatch.chdir(tmp_path)
    matrix = {"name": "far", "base": TINY, "seeds": [0], "cells": {"a": {}}, "budget": {"epochs": 1}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix))
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    uri = f"http://127.0.0.1:{_closed_port()}"
    message = f"cannot reach the tracking server {uri}: Connection refused"
    for args in (
        ["sweep", "m.yaml"],
        ["sweep", "m.yaml", "--dry-run"],
        ["report", "m.yaml"],
        ["train", "--config", "tiny.json", "--epochs", "1"],
    ):
        start = time.monotonic()
        res = CliRunner().invoke(app, ["--tracking-uri", uri, *args])
        elapsed = time.monotonic() - start
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
        assert elapsed < 15, f"{args}: {elapsed:.1f} s"
    cmd = [sys.executable, "-m", "orchestrator.cli", "--tracking-uri", uri, "report", "m.yaml"]
    start = time.monotonic()
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert time.monotonic() - start < 60  # imports included (MLflow's retries took 250 s)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.yaml", "tiny.json"]


def test_an_unreachable_database_fails_in_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``postgresql://`` tracking URI or ``--storage`` that refuses connections: MLflow retried for about
    two minutes (a driver waits for the OS's TCP timeout where a host never answers); orch says so in
    seconds, without the password."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    monkeypatch.chdir(tmp_path)
    matrix = {"name": "far", "base": TINY, "seeds": [0], "cells": {"a": {}}, "budget": {"epochs": 1}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix))
    url = f"postgresql://orch:secret@127.0.0.1:{_closed_port()}/orch"
    for args in (
        ["--tracking-uri", url, "sweep", "m.yaml"],
        ["--tracking-uri", url, "report", "m.yaml"],
        ["sweep", "m.yaml", "--storage", url],
    ):
        start = time.monotonic()
        res = CliRunner().invoke(app, args)
        elapsed = time.monotonic() - start
        assert res.exit_code == 2 and "Connection refused" in res.output, (args, res.output)
        assert "secret" not in res.output and "Traceback" not in res.output, res.output
        assert elapsed < 30, f"{args}: {elapsed:.1f} s"  # MLflow's retries took 107-120 s
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.yaml"]


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_that_answers_even_an_error_is_reachable_and_one_that_never_answers_is_not() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_reachable(f"http://127.0.0.1:{server.server_port}/some/prefix")
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        start = time.monotonic()
        with pytest.raises(
            TrackingError, match=r"cannot reach the tracking server .*: no answer within 0.5 s"
        ):
            check_reachable(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        assert time.monotonic() - start < 5
