"""The tracking package's errors, and OS errors said in words (no MLflow import: cheap to import anywhere).

- :class:`TrackingError`: the store cannot be used as given (exit 2, nothing started).
- :class:`StoreFault`: the machine failed a write or a read mid-work (:func:`fault_of`): a full disk, a
  folder turned read-only, a store another program holds locked, a store deleted or replaced under a
  running sweep. SQLite, MLflow and SQLAlchemy say these in their own words, several exceptions deep; they
  are recognised here once, for the coordinator and the worker processes alike.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

from orchestrator.errors import Fault, UserError

__all__ = [
    "DISK_FULL",
    "GONE",
    "LOCKED",
    "READ_ONLY",
    "StoreFault",
    "TrackingError",
    "fault_of",
    "store_gone",
]


class TrackingError(UserError, RuntimeError):
    """The tracking store cannot be used (unreachable, unknown experiment...)."""


#: The kinds of :class:`StoreFault`.
DISK_FULL, READ_ONLY, LOCKED, GONE = "disk full", "read-only", "locked", "gone"

_ERRNOS = {
    errno.ENOSPC: DISK_FULL,
    errno.EDQUOT: DISK_FULL,
    errno.EFBIG: DISK_FULL,
    errno.EROFS: READ_ONLY,
    errno.EACCES: READ_ONLY,
    errno.EPERM: READ_ONLY,
}
#: SQLite's words for the same faults, as MLflow and SQLAlchemy pass them on.
_SQLITE_WORDS = {
    "database or disk is full": DISK_FULL,
    "attempt to write a readonly database": READ_ONLY,
    "database is locked": LOCKED,
    "no such table": GONE,
    "disk i/o error": GONE,
}


class StoreFault(Fault):
    """A write or read of the store or of a folder beside it failed for the machine's reason: ``kind`` is
    one of :data:`DISK_FULL`, :data:`READ_ONLY`, :data:`LOCKED`, :data:`GONE`."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]


def fault_of(exc: BaseException, where: str | Path) -> StoreFault | None:
    """The fault ``exc`` is (a full disk, a read-only folder, a locked or vanished store), said with
    ``where`` (the store, or the file written) and what to do; None when it is not one.

    An :class:`OSError` names the file it failed on, which is said instead of ``where``.
    """
    for e in _chain(exc):
        if isinstance(e, StoreFault):
            return e
        if isinstance(e, OSError) and e.errno in _ERRNOS:
            kind = _ERRNOS[e.errno]
            return StoreFault(kind, _say(kind, e.filename or where, e.strerror or first_line(e)))
        text = str(e).lower()
        for words, kind in _SQLITE_WORDS.items():
            if words in text:
                return StoreFault(kind, _say(kind, where, words))
    return None


#: The libraries that read the store (their errors are the store's, in their words).
_STORE_LIBRARIES = (
    "mlflow",
    "sqlalchemy",
    "sqlite3",
    "psycopg",
    "psycopg2",
    "pymysql",
    "requests",
    "urllib3",
)


def from_the_store(exc: BaseException) -> bool:
    """Whether ``exc`` was raised reading or writing the store (by MLflow, SQLAlchemy, a database driver,
    an HTTP client), not by orch's own code or its output."""
    return any(type(e).__module__.split(".")[0] in _STORE_LIBRARIES for e in _chain(exc))


def fault_writing(exc: BaseException, path: str | Path) -> StoreFault | None:
    """:func:`fault_of` for a failed write of the file ``path``, which also counts as a full disk an error
    said in other words (torch's "unexpected pos", "failed writing file") while the disk holding ``path``
    has less than 1 MiB free."""
    fault = fault_of(exc, path)
    if fault is not None:
        return fault
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < 1 << 20:
        return StoreFault(
            DISK_FULL, _say(DISK_FULL, path, f"{first_line(exc)}, and no space left on the disk")
        )
    return None


def store_gone(where: str | Path, why: str) -> StoreFault:
    """The store at ``where`` was deleted or replaced under the process that writes to it (``why``)."""
    return StoreFault(GONE, _say(GONE, where, why))


def _say(kind: str, where: str | Path, why: str) -> str:
    if kind == DISK_FULL:
        return f"the disk is full ({why}: {where}): free some space, then run the same command"
    if kind == READ_ONLY:
        return f"{where} cannot be written ({why}): make it writable, then run the same command"
    if kind == LOCKED:
        return (
            f"the tracking store {where} is locked by another program (a backup, an sqlite3 shell, "
            "another tool): close it, then run the same command"
        )
    return (
        f"the tracking store {where} was deleted or replaced while orch used it ({why}): what was recorded "
        "in it is lost unless you kept a copy; the same command starts a new store and runs everything again"
    )


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
