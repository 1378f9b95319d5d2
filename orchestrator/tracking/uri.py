"""Where a tracking store is, read from its URI without importing MLflow (a command checks its arguments
before it loads MLflow: ``orch report`` says there is no store in a fraction of a second)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["artifact_root", "normalize_uri", "sqlite_path"]


def sqlite_path(uri: str) -> Path | None:
    """The database file of an SQLite store's URI (``sqlite:///runs/mlflow.db``), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


def normalize_uri(uri: str) -> str:
    """Make a relative SQLite store absolute (MLflow caches stores by URI, whatever the cwd)."""
    db = sqlite_path(uri)
    return f"sqlite:///{db.resolve()}" if db is not None and not db.is_absolute() else uri


def artifact_root(uri: str) -> str | None:
    """``sqlite:///runs/mlflow.db`` keeps its artifacts in ``runs/artifacts``."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.resolve().parent / "artifacts").as_uri()
