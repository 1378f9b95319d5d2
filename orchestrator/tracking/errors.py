"""The tracking package's error, and OS errors said in words (no MLflow import: cheap to import anywhere)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import UserError


class TrackingError(UserError, RuntimeError):
    """The tracking store cannot be used (unreachable, unknown experiment...)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (MLflow's and SQLAlchemy's run to dozens of lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def os_reason(exc: OSError) -> str:
    """An OS error in words: ``runs is a file, not a folder`` rather than ``[Errno 17] File exists``."""
    path = Path(exc.filename) if exc.filename else None
    if path is not None and isinstance(exc, FileExistsError | NotADirectoryError):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return f"{blocker} is a file, not a folder"
    why = exc.strerror or first_line(exc)
    return f"{why}: {exc.filename}" if exc.filename else why
