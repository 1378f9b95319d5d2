"""An SQLite tracking store created whole or not at all, and one left half-built recognised and rebuilt.

MLflow creates its SQLite schema in about 40 migrations that commit one by one: a creation killed half-way
(kill -9, a full disk) used to leave a file that MLflow never opens again ("table secrets already exists",
"_alembic_tmp_experiments", "out-of-date database schema"). Here a new store is built complete in a
temporary file beside the target, in SQLite's default rollback-journal mode (so no ``-wal`` of it is left
behind), and renamed into place with :func:`os.replace`: the target is either absent or complete. A store
left half-built by an older orch (or by MLflow itself) is rebuilt when it holds nothing, and left as it is,
with a message saying why, when it holds anything.

The caller holds the store's lock (:func:`orchestrator.tracking.store.prepare_store`).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from orchestrator.tracking.errors import TrackingError, first_line, os_reason

__all__ = ["Schema", "StoreState", "ensure_store", "inspect_store", "refuse_folder", "set_wal"]

_log = logging.getLogger(__name__)

#: Tables that hold no user data (bookkeeping), and those seeded with a row of their own at creation
_BOOKKEEPING = frozenset({"alembic_version", "sqlite_sequence"})
_SEEDED = {"experiments": "experiment_id != 0", "workspaces": "name != 'default'"}
#: Prefix of the copies alembic makes of a table while it migrates it on SQLite (batch mode)
_ALEMBIC_TMP = "_alembic_tmp_"
_BUILDING = ".building-"


class Schema(Enum):
    """What an SQLite file at the store's path holds."""

    MISSING = "missing"  # no file at all
    COMPLETE = "complete"  # MLflow's schema at the installed MLflow's head revision
    HALF_BUILT = "half-built"  # a creation or migration that did not finish (or an older MLflow's schema)
    FOREIGN = "foreign"  # a schema revision the installed MLflow does not know (a newer MLflow's)


@dataclass(frozen=True)
class StoreState:
    """An SQLite store as found: its schema, why (for messages), its tables and what it holds."""

    schema: Schema
    detail: str = ""
    tables: frozenset[str] = frozenset()
    runs: int = 0
    holds_data: bool = False


@functools.lru_cache(maxsize=1)
def _revisions() -> tuple[str, frozenset[str]]:
    """The installed MLflow's head schema revision and every revision it knows."""
    import mlflow
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(Path(mlflow.__file__).parent / "store" / "db_migrations"))
    (head,) = script.get_heads()
    return head, frozenset(r.revision for r in script.walk_revisions())


def _connect(db: Path) -> contextlib.closing[sqlite3.Connection]:
    """A connection to an existing ``db`` (never creating it), closed on exit."""
    return contextlib.closing(sqlite3.connect(f"{db.absolute().as_uri()}?mode=rw", uri=True, timeout=20))


def inspect_store(db: Path) -> StoreState:
    """Read what ``db`` holds without MLflow (which would try to migrate a half-built store further).

    Raises:
        sqlite3.DatabaseError: not an SQLite file ("file is not a database"), or unreadable.
    """
    if not db.exists():
        return StoreState(Schema.MISSING)
    with _connect(db) as conn:
        tables = frozenset(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        version = None
        if "alembic_version" in tables:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            version = row[0] if row else None
        schema, detail = _classify(tables, version)
        if schema is Schema.COMPLETE:
            return StoreState(schema, detail, tables)
        runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
        return StoreState(schema, detail, tables, runs, runs > 0 or _holds_data(conn, tables))


def _classify(tables: frozenset[str], version: str | None) -> tuple[Schema, str]:
    """The schema state of a store with ``tables`` at alembic revision ``version``, and why."""
    head, known = _revisions()
    if not tables:
        return Schema.HALF_BUILT, "no tables"
    if any(t.startswith(_ALEMBIC_TMP) for t in tables):
        return Schema.HALF_BUILT, "a schema migration was interrupted"
    if version is None:
        return Schema.HALF_BUILT, "no schema version"
    if version == head:
        return Schema.COMPLETE, ""
    if version in known:
        return Schema.HALF_BUILT, f"schema version {version}, not the installed mlflow's {head}"
    return Schema.FOREIGN, f"schema version {version} is unknown to the installed mlflow"


def _holds_data(conn: sqlite3.Connection, tables: frozenset[str]) -> bool:
    """Whether any table holds a row that a new store would not have (an experiment, a model, a trace...)."""
    for table in sorted(tables):
        base = table.removeprefix(_ALEMBIC_TMP)
        if base in _BOOKKEEPING:
            continue
        try:
            row = conn.execute(f'SELECT 1 FROM "{table}" WHERE {_SEEDED.get(base, "1")} LIMIT 1').fetchone()
        except sqlite3.OperationalError:  # a seeded table caught mid-migration: any row counts
            row = conn.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone()
        if row is not None:
            return True
    return False


def _settled(db: Path, quiet: float = 2.0, limit: float = 60.0) -> StoreState:
    """The store's state once nobody is building it: a half-built store that still changes (MLflow creating
    it in a process that does not take orch's lock, such as ``mlflow ui``) is given time to finish."""
    deadline = time.monotonic() + limit
    while True:
        state = inspect_store(db)
        if state.schema is not Schema.HALF_BUILT or _idle(db) >= quiet or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def _idle(db: Path) -> float:
    """Seconds since ``db`` or its journal last changed (not ``-shm``: readers write it too)."""
    journals = [p for p in _sidecars(db) if not p.name.endswith("-shm")]
    times = [p.stat().st_mtime for p in (db, *journals) if p.exists()]
    return time.time() - max(times, default=0.0)


def _sidecars(db: Path) -> tuple[Path, ...]:
    """SQLite's files beside ``db``: a stale one would be replayed into a new store at the same path."""
    return tuple(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))


def refuse_folder(db: Path) -> None:
    """Raise :class:`TrackingError` when ``db`` is a folder (``sqlite:///runs``): SQLite says "unable to
    open", which read as a read-only parent."""
    if db.is_dir():
        raise TrackingError(
            f"cannot open the tracking store {db}: it is a folder, not a file: name a file in it "
            f"(sqlite:///{db / 'mlflow.db'}) or pass another --tracking-uri"
        )


def ensure_store(db: Path, artifact_uri: str | None) -> None:
    """Make ``db`` a complete MLflow store: create it, or rebuild one left half-built that holds nothing.

    Args:
        artifact_uri: where the store's default experiment keeps its artifacts.

    Raises:
        TrackingError: ``db`` is a folder or not an SQLite file, is half-built and holds data, has a newer
            MLflow's schema, holds tables that are not MLflow's, or cannot be created (no store is left then).
    """
    refuse_folder(db)
    _remove_builds(db)
    try:
        state = _settled(db)
    except sqlite3.DatabaseError as exc:
        raise TrackingError(_unreadable(db, exc)) from None
    if state.schema is Schema.COMPLETE:
        return
    if state.schema is Schema.FOREIGN:
        raise TrackingError(
            f"cannot open the tracking store {db}: {state.detail} (made by a newer MLflow?): upgrade mlflow "
            "or pass another --tracking-uri"
        )
    if state.holds_data:
        raise TrackingError(_kept(db, state))
    with _built(db, artifact_uri) as tmp:
        if state.schema is Schema.HALF_BUILT:
            _check_mlflow_tables(db, state, inspect_store(tmp))
        _install(tmp, db)
    if state.schema is Schema.HALF_BUILT:
        _log.warning("the tracking store %s was left half-built (holds no runs): rebuilt", db)


def _unreadable(db: Path, exc: sqlite3.DatabaseError) -> str:
    """The message for a store SQLite cannot read: a damaged file is left for the user to look at."""
    if isinstance(exc, sqlite3.OperationalError):
        hint = ""
        if "unable to open" in str(exc) or "readonly" in str(exc):
            hint = f" (SQLite writes {db.name}-wal and {db.name}-shm beside it: is {db.parent} read-only?)"
        return f"cannot open the tracking store {db}: {exc}{hint}"
    return (
        f"cannot open the tracking store {db}: {exc} (damaged, or not MLflow's): it is left as it is; "
        "move it away or pass another --tracking-uri"
    )


def _kept(db: Path, state: StoreState) -> str:
    """The message for a half-built or outdated store that holds data: never deleted."""
    held = f"{state.runs} runs" if state.runs else "experiments or models but no runs"
    return (
        f"cannot open the tracking store {db}: it is not a complete MLflow store ({state.detail}) and "
        f"holds {held}: it is left as it is; back it up, then run `mlflow db upgrade sqlite:///{db}`, "
        "or pass another --tracking-uri"
    )


def _check_mlflow_tables(db: Path, found: StoreState, fresh: StoreState) -> None:
    """Refuse to replace an SQLite file with tables a new MLflow store does not have (not MLflow's)."""
    extra = sorted({t.removeprefix(_ALEMBIC_TMP) for t in found.tables} - fresh.tables)
    if extra:
        raise TrackingError(
            f"cannot use {db} as the tracking store: it holds tables that are not MLflow's "
            f"({', '.join(extra[:5])}): it is left as it is; pass another --tracking-uri"
        )


@contextlib.contextmanager
def _built(db: Path, artifact_uri: str | None) -> Iterator[Path]:
    """A complete new store in a temporary file beside ``db``, removed on exit unless renamed.

    Raises:
        TrackingError: it could not be built (a full disk...); nothing of it is left.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    tmp = db.with_name(f".{db.name}{_BUILDING}{os.getpid()}")
    uri = f"sqlite:///{tmp}"
    try:
        try:
            SqlAlchemyStore(uri, artifact_uri or (db.parent / "artifacts").as_uri())
        finally:
            _forget_engine(uri)
        if any(p.exists() for p in _sidecars(tmp)) or inspect_store(tmp).schema is not Schema.COMPLETE:
            raise RuntimeError("MLflow left the new store incomplete")
        _fsync(tmp)
        yield tmp
    except TrackingError:
        raise
    except OSError as exc:
        raise TrackingError(f"cannot create the tracking store {db}: {os_reason(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - whatever MLflow, SQLAlchemy or SQLite raise (disk full...)
        raise TrackingError(f"cannot create the tracking store {db}: {first_line(exc)}") from None
    finally:
        for path in (tmp, *_sidecars(tmp)):
            path.unlink(missing_ok=True)


def _forget_engine(uri: str) -> None:
    """Close MLflow's cached engine of ``uri`` (its connections would keep the file open)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    engine = getattr(SqlAlchemyStore, "_engine_map", {}).pop(uri, None)
    if engine is not None:
        engine.dispose()


def _install(tmp: Path, db: Path) -> None:
    """Rename the built store ``tmp`` over ``db`` (atomic), first removing the journals of what was there."""
    for path in _sidecars(db):
        path.unlink(missing_ok=True)
    os.replace(tmp, db)
    _fsync(db.parent)


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') writes to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_builds(db: Path) -> None:
    """Remove temporary stores of creations that were killed (the caller holds the lock: none is live)."""
    for path in db.parent.glob(glob.escape(f".{db.name}{_BUILDING}") + "*"):
        path.unlink(missing_ok=True)


def set_wal(db: Path) -> None:
    """Put the store in WAL mode (concurrent readers and writers; kept in the file once set).

    Raises:
        TrackingError: SQLite cannot (a full disk: the store stays complete, in rollback-journal mode).
    """
    try:
        with _connect(db) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as exc:
        raise TrackingError(_unreadable(db, exc)) from None
