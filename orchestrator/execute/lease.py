"""The sweep lease: one coordinator of a matrix at a time, held where the queue lives.

Two coordinators of one matrix used to train every item twice, and the second marked the first one's live
runs KILLED. A coordinator now takes the matrix's lease before it reads or writes anything of the sweep,
and keeps it until it ends; the operating system or the database frees it when the process dies, even on
``kill -9``, so a lease is never left behind by a dead coordinator:

- on one machine (a journal queue under ``runs/queue/``), an OS file lock (:mod:`filelock`) on a file
  beside the tracking store (``runs/mlflow.db.leases/<matrix>.lock``), holding who took it;
- with a PostgreSQL queue (``--storage postgresql://...``), a session-level ``pg_advisory_lock`` keyed by
  the matrix's name, whose connection carries who took it as its ``application_name`` (the server frees
  the lock when the connection dies).

A second coordinator is refused with :class:`SweepBusy`, naming the holder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from orchestrator.execute.workqueue import QueueError, redact_url
from orchestrator.names import hashed_name

__all__ = ["Holder", "Lease", "SweepBusy", "hold_lease", "lease_path"]


@dataclass(frozen=True)
class Holder:
    """Who holds a matrix's lease: the coordinator's host, pid, start time (epoch seconds) and sweep id."""

    host: str
    pid: int
    since: float
    sweep: str = ""

    @classmethod
    def here(cls, sweep: str = "") -> Holder:
        return cls(socket.gethostname(), os.getpid(), time.time(), sweep)

    def when(self) -> str:
        """``14:02`` today, ``2026-05-04 14:02`` another day."""
        then = time.localtime(self.since)
        same_day = time.strftime("%Y-%m-%d", then) == time.strftime("%Y-%m-%d")
        return time.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M", then)


class SweepBusy(QueueError):
    """Another coordinator holds the matrix's lease (nothing was written)."""

    def __init__(self, matrix: str, holder: Holder | None, hint: str) -> None:
        self.matrix, self.holder = matrix, holder
        if holder is None:
            who = "another coordinator (it has not said who yet)"
        else:
            sweep = f" (sweep {holder.sweep})" if holder.sweep else ""
            who = f"pid {holder.pid} on host {holder.host} since {holder.when()}{sweep}"
        hint = hint.replace("PID", str(holder.pid) if holder is not None else "PID")
        super().__init__(f"matrix {matrix!r} is being swept by {who}: wait for it, or {hint}")


# ------------------------------------------------------------------------------------------ file lock


class _FileLease:
    """An OS lock on ``path``; the holder is written into the locked file."""

    def __init__(self, path: Path, matrix: str, hint: str) -> None:
        self.path, self.matrix, self.hint = path, matrix, hint
        self._lock: Any = None

    def acquire(self, holder: Holder) -> None:
        from filelock import FileLock, Timeout

        data = json.dumps(asdict(holder)).encode()

        def write_holder(fd: int) -> None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(self.path, on_acquired=write_holder)
            lock.acquire(blocking=False)
        except Timeout:
            raise SweepBusy(self.matrix, self._read_holder(), self.hint) from None
        except OSError as exc:
            raise QueueError(f"cannot take the sweep lease {self.path}: {exc.strerror or exc}") from None
        self._lock = lock

    def _read_holder(self, wait: float = 1.0) -> Holder | None:
        """The holder written in the file (a holder that has just taken it may not have written yet)."""
        deadline = time.monotonic() + wait
        while True:
            with contextlib.suppress(OSError, ValueError, TypeError):
                return Holder(**json.loads(self.path.read_text()))
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def announce(self, holder: Holder) -> None:
        """Rewrite who holds it (the sweep id, once known)."""
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(asdict(holder)).encode(), 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


# ------------------------------------------------------------------------------------------ PostgreSQL

_APP = "orch-sweep"


def _pg_keys(matrix: str) -> tuple[int, int]:
    """The two 31-bit keys of ``pg_advisory_lock(int, int)`` for ``matrix``."""
    digest = hashlib.sha256(f"orch-sweep:{matrix}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1, int.from_bytes(digest[4:8], "big") >> 1


def _app_name(holder: Holder) -> str:
    """The holder as a connection's ``application_name`` (PostgreSQL keeps 63 bytes of it)."""
    return f"{_APP} {holder.pid} {int(holder.since)} {holder.sweep or '-'} {holder.host}"[:63]


def _parse_app_name(text: str | None) -> Holder | None:
    parts = (text or "").split(" ", 4)
    if len(parts) != 5 or parts[0] != _APP:
        return None
    try:
        return Holder(parts[4], int(parts[1]), float(parts[2]), "" if parts[3] == "-" else parts[3])
    except ValueError:
        return None


def _name_connection(conn: Any, holder: Holder) -> None:
    import sqlalchemy as sa

    conn.execute(sa.text("select set_config('application_name', :n, false)"), {"n": _app_name(holder)})


class _PgLease:
    """A session-level advisory lock on a connection of its own, open while the lease is held."""

    def __init__(self, url: str, matrix: str, hint: str) -> None:
        self.url, self.matrix, self.hint = url, matrix, hint
        self.keys = _pg_keys(matrix)
        self._conn: Any = None

    def acquire(self, holder: Holder) -> None:
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        try:
            engine = sa.create_engine(self.url, poolclass=NullPool)
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            _name_connection(conn, holder)
            got = bool(conn.execute(sa.text("select pg_try_advisory_lock(:a, :b)"), self._keys()).scalar())
        except Exception as exc:  # noqa: BLE001 - driver and URL errors alike
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QueueError(f"cannot take the sweep lease in {redact_url(self.url)}: {first}") from None
        if not got:
            holder_now = self._holder(conn, sa)
            conn.close()
            raise SweepBusy(self.matrix, holder_now, self.hint)
        self._conn = conn

    def _keys(self) -> dict[str, int]:
        return {"a": self.keys[0], "b": self.keys[1]}

    def _holder(self, conn: Any, sa: Any) -> Holder | None:
        row = conn.execute(
            sa.text(
                "select a.application_name from pg_locks l join pg_stat_activity a on a.pid = l.pid "
                "where l.locktype = 'advisory' and l.granted and l.classid::bigint = :a "
                "and l.objid::bigint = :b and l.objsubid = 2"
            ),
            self._keys(),
        ).first()
        return _parse_app_name(row[0]) if row else None

    def announce(self, holder: Holder) -> None:
        _name_connection(self._conn, holder)

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a dropped connection has released it already
                self._conn.close()
            self._conn = None


# ------------------------------------------------------------------------------------------ the lease


def lease_path(matrix: str, tracking_uri: str, queue_dir: Path) -> Path:
    """Where the file lease of ``matrix`` lives: beside an SQLite store, else (a tracking server) in the
    queue folder, keyed by the store's URI too."""
    from orchestrator.tracking.uri import sqlite_path

    db = sqlite_path(tracking_uri)
    if db is not None:
        return db.parent / f"{db.name}.leases" / f"{hashed_name(matrix)}.lock"
    store = hashlib.sha256(tracking_uri.encode()).hexdigest()[:10]
    return queue_dir / "leases" / f"{hashed_name(matrix)}-{store}.lock"


class Lease:
    """The leases a coordinator holds for one matrix (:func:`hold_lease`)."""

    def __init__(self, leases: list[Any], holder: Holder) -> None:
        self.leases, self.holder = leases, holder

    def announce(self, sweep_id: str) -> None:
        """Say which sweep holds it (known once the parent run is chosen)."""
        self.holder = replace(self.holder, sweep=sweep_id)
        for lease in self.leases:
            lease.announce(self.holder)


@contextlib.contextmanager
def hold_lease(
    matrix: str,
    *,
    tracking_uri: str,
    storage: str | None,
    queue_dir: Path,
    matrix_path: Path | None = None,
) -> Iterator[Lease]:
    """Hold the lease of ``matrix`` for the block: the file lease beside the tracking store (or in
    ``queue_dir`` for a tracking server), and with a PostgreSQL ``storage`` its advisory lock as well.

    Raises:
        SweepBusy: another coordinator holds it (nothing was written).
        QueueError: the lease cannot be taken (a folder that cannot be written, an unreachable database).
    """
    shown = str(matrix_path) if matrix_path else "MATRIX.yaml"
    stop = "stop it (Ctrl-C where it runs, or `kill PID`) and run this command again to finish the rest"
    leases: list[Any] = [_FileLease(lease_path(matrix, tracking_uri, queue_dir), matrix, stop)]
    if storage and storage.startswith(("postgresql", "postgres:")):
        hint = f"join it with `orch worker {shown} --storage {redact_url(storage)}`"
        leases.append(_PgLease(storage, matrix, hint))
    holder = Holder.here()
    with contextlib.ExitStack() as stack:
        for lease in leases:
            lease.acquire(holder)
            stack.callback(lease.release)
        yield Lease(leases, holder)
