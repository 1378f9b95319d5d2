"""A store moved or copied as a folder: the artifact locations recorded under its old folder follow it.

MLflow records where artifacts live as absolute locations: each experiment's ``artifact_location``
(``file:///old/runs/artifacts``) and each run's ``artifact_uri`` (``.../artifacts/<run id>/artifacts``).
After ``mv runs elsewhere`` (or a copy, then the original deleted) those point at the old folder: MLflow
shows no images, and a new artifact would be written there, recreating it. When orch opens an SQLite
store whose locations were recorded under another folder, it rewrites them, one UPDATE per column,
replacing the old folder with the store's folder now; ``mlflow ui`` started from the new place then
shows the images too.

The old folder is the one an orch store records at creation: the default experiment's location is
``<store folder>/artifacts/0`` (:func:`~orchestrator.tracking.sqlite_store.ensure_store`). Locations
outside that folder (an experiment a user pointed elsewhere, a remote artifact store) are left as they
are. The caller holds the store's lock (:func:`orchestrator.tracking.store.prepare_store`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Move", "detect_move", "relocate"]

_log = logging.getLogger(__name__)

#: The columns of MLflow's schema (``mlflow/store/tracking/dbmodels/models.py``) that hold an absolute
#: artifact location: experiments', runs' and logged models'.
LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
)

#: ``<folder>/artifacts/0``: the default experiment's location in a store orch created
_DEFAULT_LOCATION = re.compile(r"(?P<folder>.+)/artifacts/0/?")


@dataclass(frozen=True)
class Move:
    """A store found in ``new`` whose artifact locations were recorded under ``old`` (both folders)."""

    old: Path
    new: Path

    def prefixes(self) -> tuple[tuple[str, str], ...]:
        """(old, new) location prefixes: as ``file://`` URIs (what MLflow records) and as plain paths."""
        return ((self.old.as_uri() + "/", self.new.as_uri() + "/"), (f"{self.old}/", f"{self.new}/"))


def _connect(db: Path, mode: str) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(f"{db.absolute().as_uri()}?mode={mode}", uri=True, timeout=20))


def _recorded_folder(conn: sqlite3.Connection) -> Path | None:
    """The folder the store's artifact locations were recorded under, from its default experiment."""
    row = conn.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0").fetchone()
    match = _DEFAULT_LOCATION.fullmatch(row[0] or "") if row else None
    if match is None:
        return None  # not created by orch (or the default experiment points elsewhere): left alone
    folder = match["folder"]
    if folder.startswith("file://"):
        folder = urllib.parse.unquote(urllib.parse.urlsplit(folder).path)
    return Path(folder) if folder.startswith("/") else None


def detect_move(db: Path) -> Move | None:
    """The move of the store ``db`` from the folder its locations were recorded in, or None.

    A store still in its folder (reached by another path: a symlink, a relative path) has not moved; a
    store that cannot be read here is left for MLflow to say why.
    """
    new = db.resolve().parent
    try:
        with _connect(db, "ro") as conn:
            old = _recorded_folder(conn)
    except sqlite3.Error:
        return None
    if old is None or old == new:
        return None
    with contextlib.suppress(OSError):
        if os.path.samefile(old, new):
            return None
    return Move(old, new)


def relocate(db: Path) -> Move | None:
    """Point the artifact locations of a moved or copied store ``db`` under its folder now (one line says
    so); returns the move, or None when the store is where its locations say.

    Raises:
        sqlite3.Error: the store cannot be written (the caller says why).
    """
    move = detect_move(db)
    if move is None:
        return None
    with _connect(db, "rw") as conn, conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        changed = 0
        for table, column in LOCATION_COLUMNS:
            if table not in tables:
                continue
            for old, new in move.prefixes():
                sql = (
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?"
                )
                changed += conn.execute(sql, (new, len(old) + 1, len(old), old)).rowcount
    _log.warning(
        "the tracking store %s was moved from %s: its %d artifact locations now point under %s",
        db,
        move.old,
        changed,
        move.new,
    )
    return move
