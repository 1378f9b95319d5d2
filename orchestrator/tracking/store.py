"""The MLflow store: where it is, and opening (or creating) it once before any worker starts.

Known traps this handles: several processes creating an SQLite store at once race MLflow's schema
migration (creation is serialised with a file lock); a creation killed half-way (kill -9, a full disk)
left a store MLflow never opens again (a new store is built whole beside its path and renamed into place,
and a half-built one that holds nothing is rebuilt: :mod:`~orchestrator.tracking.sqlite_store`);
concurrent writers can hit "database is locked" (SQLite is put in WAL mode, and :func:`retry`); an
unreachable tracking server or database kept MLflow retrying for minutes (:func:`check_reachable` fails in
seconds);
a store moved or copied as a folder kept its artifacts' old absolute locations (they are pointed under its
folder now when it is opened: :mod:`~orchestrator.tracking.relocate`).
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import logging
import os
import sqlite3
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
warnings.filterwarnings("ignore", module="mlflow")
logging.getLogger("mlflow").setLevel(logging.ERROR)
logging.getLogger("alembic").setLevel(logging.WARNING)

from mlflow import MlflowClient  # noqa: E402

from orchestrator.tracking.errors import LOCKED, TrackingError, fault_of, first_line, os_reason  # noqa: E402
from orchestrator.tracking.reach import database_unreachable, redact_url  # noqa: E402
from orchestrator.tracking.relocate import detect_move, relocate  # noqa: E402
from orchestrator.tracking.sqlite_store import ensure_store, refuse_folder, set_wal  # noqa: E402
from orchestrator.tracking.uri import artifact_root, normalize_uri, sqlite_path  # noqa: E402

for _name in ("mlflow", "alembic"):  # mlflow resets its loggers on import
    logging.getLogger(_name).setLevel(logging.WARNING if _name == "alembic" else logging.ERROR)
# it logs every database error with its traceback before raising it: orch says each once, in words
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def prepare_store(uri: str) -> str:
    """Create the store once, before any worker starts, and put SQLite in WAL mode.

    Several processes creating an SQLite store at once race MLflow's schema migration, so the
    coordinator calls this first. A new SQLite store appears whole or not at all; one left half-built by
    an older orch is rebuilt when it holds nothing (:func:`~orchestrator.tracking.sqlite_store.ensure_store`);
    a store moved or copied from another folder gets its artifact locations pointed under its folder now
    (:func:`~orchestrator.tracking.relocate.relocate`).

    Raises:
        TrackingError: the store cannot be created or opened, or its server cannot be reached.
    """
    uri = normalize_uri(uri)
    db = sqlite_path(uri)
    if db is None:
        check_reachable(uri)
        _open_store(uri)
        return uri
    refuse_folder(db)  # before the lock file beside it: nothing written
    # processes on this machine (a coordinator and `orch worker`s started at once) take turns: the
    # first creates the schema, the others find it
    with _store_lock(db):
        try:
            ensure_store(db, artifact_root(uri))
            set_wal(db)
        except OSError as exc:
            raise TrackingError(f"cannot open the tracking store {db}: {os_reason(exc)}") from None
        _relocate(db)
        _open_store(uri)
    return uri


def follow_move(uri: str) -> str:
    """For an existing SQLite store opened elsewhere than where its artifacts were recorded (moved or
    copied as a folder), point its artifact locations under its folder now; returns the normalised URI.
    A store that has not moved is only read (under no lock); any other URI is returned as it is.

    Raises:
        TrackingError: the moved store cannot be rewritten (a read-only folder...).
    """
    uri = normalize_uri(uri)
    db = sqlite_path(uri)
    if db is None or not db.exists() or detect_move(db) is None:
        return uri
    with _store_lock(db):
        _relocate(db)
    return uri


def _relocate(db: Path) -> None:
    """:func:`~orchestrator.tracking.relocate.relocate` under the caller's lock, its failure in one line."""
    try:
        moved = relocate(db)
    except sqlite3.Error as exc:
        fault = fault_of(exc, db)  # locked by another program, read-only, a full disk
        if fault is not None:
            raise TrackingError(
                f"{fault}; nothing was changed (the store was moved here: its artifact locations are "
                "updated first)"
            ) from None
        raise TrackingError(
            f"the tracking store {db} was moved here and its artifact locations cannot be updated: {exc}"
        ) from None
    if moved is not None:  # MLflow keeps each run's artifact location per process, by run id: forget them
        from mlflow.tracking._tracking_service import utils

        getattr(utils, "_artifact_repos_cache", {}).clear()


@contextlib.contextmanager
def _store_lock(db: Path) -> Iterator[None]:
    """Hold the lock file beside ``db`` (its folder is created first).

    Raises:
        TrackingError: the folder cannot be created or written (a file in the way, read-only...).
    """
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        lock = open(db.parent / f"{db.name}.lock", "w")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise TrackingError(f"cannot create the tracking store {db}: {os_reason(exc)}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


#: HTTP tracking servers this process reached (probed once)
_REACHED: set[str] = set()


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """Fail in seconds when nothing answers at an HTTP tracking server's address (MLflow itself retries
    for about 5 minutes before it says so), or at a database server's (``postgresql://``: about 2
    minutes; :func:`~orchestrator.tracking.reach.database_unreachable`). Any HTTP answer, even an error,
    means it is reachable.

    Raises:
        TrackingError: connection refused, unknown host, or no answer within ``timeout`` seconds.
    """
    why = database_unreachable(uri, timeout=max(timeout, 5.0))
    if why is not None:
        raise TrackingError(f"cannot reach the tracking store's database {redact_url(uri)}: {why}")
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or uri in _REACHED:
        return
    netloc = parts.hostname or ""
    netloc = f"[{netloc}]" if ":" in netloc else netloc  # an IPv6 address
    netloc += f":{parts.port}" if parts.port else ""
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        pass  # it answered: whether it is MLflow, and lets us in, is MLflow's to say
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if not isinstance(reason, ssl.SSLError):  # TLS is MLflow's to judge (MLFLOW_TRACKING_INSECURE_TLS)
            why = _net_reason(reason, timeout)
            raise TrackingError(f"cannot reach the tracking server {uri}: {why}") from None
    _REACHED.add(uri)


def _net_reason(reason: object, timeout: float) -> str:
    """``Connection refused`` rather than ``[Errno 111] Connection refused``."""
    if isinstance(reason, TimeoutError) or str(reason) == "timed out":
        return f"no answer within {timeout:g} s"
    return getattr(reason, "strerror", None) or str(reason)


def _open_store(uri: str, attempts: int = 5) -> None:
    for i in range(attempts):
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
            return
        except Exception as exc:  # noqa: BLE001 - any failure here means the store is unusable
            # another process holds the store's write lock (one that did not take orch's lock, e.g.
            # `mlflow ui` creating it): wait for it
            if "locked" in str(exc).lower() and i < attempts - 1:
                time.sleep(0.5 * (i + 1))
                continue
            raise TrackingError(
                f"cannot open the tracking store {redact_url(uri)}: {first_line(exc)}"
            ) from None


def lock_wait() -> float:
    """Seconds a write waits for a store another program holds locked before it gives up: 30, or
    ``ORCH_LOCK_WAIT``."""
    try:
        return max(0.0, float(os.environ.get("ORCH_LOCK_WAIT", "30")))
    except ValueError:
        return 30.0


def retry(fn, *args, **kwargs):  # noqa: ANN001, ANN202
    """Call ``fn`` (a method of an :class:`MlflowClient`): a store locked by another process is tried again
    with back-off for :func:`lock_wait` seconds, and a fault of the machine (a full disk, a read-only
    folder, a store locked for longer, or deleted) is raised as one
    :class:`~orchestrator.tracking.errors.StoreFault` naming the store (MLflow's own runs to three chained
    tracebacks).

    Raises:
        StoreFault: as said; anything else ``fn`` raises, as it is.
    """
    deadline, delay = time.monotonic() + lock_wait(), 0.05
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            fault = fault_of(exc, _store_of(fn))
            if fault is None:
                raise
            if fault.kind == LOCKED and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(2 * delay, 1.0)
                continue
            raise fault from None


def _store_of(fn: object) -> str:
    """The store a client's bound method writes to, as a user names it (a path for SQLite)."""
    client = getattr(getattr(fn, "__self__", None), "_tracking_client", None)
    uri = str(getattr(client, "tracking_uri", "") or "")
    db = sqlite_path(uri)
    return str(db) if db is not None else uri or "(the tracking store)"


#: The searches a block of reads shares (:func:`shared_searches`): key -> runs; None outside one.
_SHARED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("orch_shared_searches", default=None)


@contextlib.contextmanager
def shared_searches() -> Iterator[None]:
    """Within the block, each search of a store's runs is made once and its result reused: for a command
    that reads the same runs several times and writes none of them (`orch report`: its verdicts, then the
    verdict at each budget; `orch status`: its plan, then the runs' epochs)."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def shared(key: tuple, search: Callable[[], list]) -> list:
    """``search()``, or inside :func:`shared_searches` the result of the first search under ``key``."""
    memo = _SHARED.get()
    if memo is None:
        return search()
    if key not in memo:
        memo[key] = search()
    return memo[key]
