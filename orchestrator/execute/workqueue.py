"""The work queue of a sweep, held in an Optuna storage.

Each (cell, seed) is enqueued as a WAITING trial of a study named after the sweep; a worker claims
one by moving it WAITING -> RUNNING, which the storage grants to exactly one caller (a journal file
under ``runs/`` on one machine, an RDB such as PostgreSQL across machines). Nothing here is a
home-made lock. On an RDB, workers record Optuna heartbeats for what they run; a claimed item whose
heartbeat goes stale (its worker died) is failed by :func:`optuna.storages.fail_stale_trials` and put
back as WAITING by :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`, for another worker to take.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from orchestrator.errors import UserError
from orchestrator.tracking.reach import database_unreachable, redact_url

optuna.logging.set_verbosity(optuna.logging.WARNING)
# heartbeats and their stale-trial hooks are marked experimental in Optuna; we rely on them knowingly (Optuna
# attributes the warning to its own modules, so the filter goes by category)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
logging.getLogger("optuna").setLevel(logging.WARNING)

__all__ = [
    "QueueError",
    "SweepStatus",
    "WorkQueue",
    "close_dead_queues",
    "find_sweep_queue",
    "live_claims",
    "open_storage",
    "redact_url",
    "sweep_status",
]

PREFIX = "orch-sweep"


class QueueError(UserError, RuntimeError):
    """The storage cannot be reached, or holds no sweep to join."""


def open_storage(url: str | Path, *, heartbeat: float = 10.0) -> BaseStorage:
    """A journal file (a path, or ``journal:///path``) or an RDB URL (``postgresql://...``).

    Args:
        heartbeat: RDB only: seconds between a worker's heartbeats; a claimed item whose worker has
            been silent for three heartbeats is handed to another worker.

    Raises:
        QueueError: the storage cannot be opened (unreachable server, bad URL).
    """
    text = str(url)
    if "://" not in text or text.startswith("journal://"):
        path = Path(text.removeprefix("journal://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    unreachable = database_unreachable(text)  # the driver would wait for the OS's TCP timeout
    if unreachable is not None:
        raise QueueError(f"cannot open the queue storage {redact_url(text)}: {unreachable}")
    interval = max(1, round(heartbeat))
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                text,
                heartbeat_interval=interval,
                grace_period=3 * interval,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
        except Exception as exc:  # noqa: BLE001 - sqlalchemy, driver and URL errors alike
            # machines starting together race to create Optuna's tables: the loser retries and finds them
            # (a duplicate key in its version table, or a table that "already exists")
            if ("duplicate key" in str(exc) or "already exists" in str(exc)) and attempt < 4:
                time.sleep(0.5 * (attempt + 1))
                continue
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise QueueError(f"cannot open the queue storage {redact_url(text)}: {first}") from None
    raise AssertionError("unreachable")


class WorkQueue:
    """Items (plain JSON-able dicts) handed out exactly once each."""

    def __init__(self, storage: BaseStorage, name: str) -> None:
        self.storage, self.name = storage, name
        self.study_id = storage.get_study_id_from_name(name)
        self._study = optuna.load_study(study_name=name, storage=storage)

    @classmethod
    def create(
        cls, storage: BaseStorage, name: str, items: list[dict[str, Any]], attrs: dict[str, Any] | None = None
    ) -> WorkQueue:
        """A new queue holding ``items`` in order; ``attrs`` are kept as the study's user attributes."""
        study = optuna.create_study(storage=storage, study_name=name, load_if_exists=False)
        for key, value in (attrs or {}).items():
            study.set_user_attr(key, value)
        for item in items:
            study.enqueue_trial({}, user_attrs={"item": item})
        return cls(storage, name)

    @property
    def attrs(self) -> dict[str, Any]:
        """The queue's attributes (``WorkQueue.create``'s ``attrs``)."""
        return self.storage.get_study_user_attrs(self.study_id)

    def items(self) -> list[dict[str, Any]]:
        """Every item of the queue, whatever its state."""
        return [t.user_attrs["item"] for t in self.storage.get_all_trials(self.study_id, deepcopy=False)]

    @property
    def heartbeats(self) -> bool:
        """Whether dead workers' items come back by heartbeat (RDB storages)."""
        get_interval = getattr(self.storage, "get_heartbeat_interval", None)
        return get_interval is not None and get_interval() is not None

    def claim(self) -> tuple[int, dict[str, Any]] | None:
        """Take the next waiting item, or None when none is waiting now."""
        if self.heartbeats:
            fail_stale_trials(self._study)  # items of dead workers go back to WAITING
        for trial in self.storage.get_all_trials(self.study_id, deepcopy=False, states=(TrialState.WAITING,)):
            try:
                if self.storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                    if self.heartbeats:
                        self.storage.record_heartbeat(trial._trial_id)
                    return trial._trial_id, self.storage.get_trial_user_attrs(trial._trial_id)["item"]
            except UpdateFinishedTrialError:
                continue
        return None

    @contextmanager
    def keep_alive(self, trial_id: int) -> Iterator[None]:
        """Record heartbeats for ``trial_id`` from a background thread while the block runs (RDB only),
        so that data loading or a long epoch never looks like a dead worker."""
        if not self.heartbeats:
            yield
            return
        interval = self.storage.get_heartbeat_interval()
        stop = threading.Event()

        def beat() -> None:
            while not stop.is_set():
                self.storage.record_heartbeat(trial_id)
                stop.wait(interval)

        thread = threading.Thread(target=beat, name=f"orch-heartbeat-{trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def done(self, trial_id: int, ok: bool, value: float | None = None) -> None:
        state = TrialState.COMPLETE if ok else TrialState.FAIL
        values = [value if value is not None and value == value else 0.0] if ok else None
        try:
            self.storage.set_trial_state_values(trial_id, state, values=values)
        except UpdateFinishedTrialError:
            pass  # failed as stale meanwhile: its retry is another worker's

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.storage.get_all_trials(self.study_id, deepcopy=False):
            out[t.state.name] = out.get(t.state.name, 0) + 1
        return out

    def pending(self, *, fail_stale: bool = True) -> int:
        """Items waiting or being run (by any worker, anywhere).

        ``fail_stale`` first hands back the items of dead workers (each comes back as a new waiting
        item): what a worker does before it decides whether to wait. A process that never claims (the
        coordinator) passes False: were it to fail a stale claim, a worker reading the queue between that
        failure and the item's retry would see nothing left and exit, leaving the retry to nobody.
        """
        if self.heartbeats and fail_stale:
            fail_stale_trials(self._study)
        c = self.counts()
        return c.get("WAITING", 0) + c.get("RUNNING", 0)

    def close(self) -> None:
        """Mark the queue finished, so that late workers do not join it."""
        self._study.set_user_attr("active", False)

    def set_attrs(self, attrs: dict[str, Any]) -> None:
        """Add ``attrs`` to the queue's attributes (e.g. the job that runs its workers)."""
        for key, value in attrs.items():
            self._study.set_user_attr(key, value)

    def abandon(self, states: tuple[TrialState, ...] = (TrialState.WAITING,)) -> list[dict[str, Any]]:
        """Fail every item in ``states`` so that no worker takes it; returns those items."""
        dropped = []
        for trial in self.storage.get_all_trials(self.study_id, deepcopy=False, states=states):
            try:
                if self.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                    dropped.append(trial.user_attrs["item"])
            except UpdateFinishedTrialError:
                continue
        return dropped


def find_sweep_queue(storage: BaseStorage, matrix_name: str, *, active_only: bool = True) -> str | None:
    """Name of the newest active sweep queue of ``matrix_name`` in ``storage`` (the newest of any state with
    ``active_only=False``), or None."""
    best: tuple[float, str] | None = None
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        attrs = summary.user_attrs
        if attrs.get("matrix") == matrix_name and (attrs.get("active", False) or not active_only):
            key = (float(attrs.get("created", 0.0)), summary.study_name)
            best = key if best is None or key > best else best
    return best[1] if best else None


@dataclass(frozen=True)
class SweepStatus:
    """Where the newest sweep of a matrix stands: its queue's attributes and items per state (``retried``:
    claims whose worker died, each handed back as a new waiting item)."""

    name: str
    attrs: dict[str, Any]
    waiting: int
    running: int
    done: int
    failed: int
    retried: int

    @property
    def sweep_id(self) -> str:
        return str(self.attrs.get("sweep_id", ""))


def sweep_status(storage: BaseStorage, matrix_name: str) -> SweepStatus | None:
    """The newest sweep queue of ``matrix_name`` (active or not) and its counts, or None when there is none.

    Read-only: a claim whose worker died still counts as running until a worker or the coordinator
    notices its stale heartbeat."""
    name = find_sweep_queue(storage, matrix_name, active_only=False)
    if name is None:
        return None
    work = WorkQueue(storage, name)
    trials = storage.get_all_trials(work.study_id, deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    states = [t.state for t in trials]
    return SweepStatus(
        name,
        work.attrs,
        waiting=states.count(TrialState.WAITING),
        running=states.count(TrialState.RUNNING),
        done=states.count(TrialState.COMPLETE),
        failed=sum(t.state is TrialState.FAIL and t.number not in retried for t in trials),
        retried=len(retried),
    )


def live_claims(storage: BaseStorage, matrix_name: str) -> set[tuple[str, str]]:
    """(sweep id, run key) of every item of ``matrix_name``'s sweeps that a worker is running now: claimed,
    and its heartbeat fresh (RDB storages; a journal queue has no workers without its coordinator)."""
    get_interval = getattr(storage, "get_heartbeat_interval", None)
    if get_interval is None or get_interval() is None:
        return set()
    live = set()
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if summary.user_attrs.get("matrix") != matrix_name:
            continue
        study_id = storage.get_study_id_from_name(summary.study_name)
        stale = set(storage._get_stale_trial_ids(study_id))  # Optuna's own test of a heartbeat's age
        sweep = str(summary.user_attrs.get("sweep_id", ""))
        for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            if trial._trial_id not in stale:
                live.add((sweep, trial.user_attrs["item"]["run_key"]))
    return live


def close_dead_queues(storage: BaseStorage, matrix_name: str) -> None:
    """Close the queues of ``matrix_name`` left active by a coordinator that died (its lease is free), so
    that no worker starts their waiting items: the new sweep enqueues what is still to run."""
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        attrs = summary.user_attrs
        if attrs.get("matrix") == matrix_name and attrs.get("active", False):
            work = WorkQueue(storage, summary.study_name)
            work.abandon()
            work.close()
