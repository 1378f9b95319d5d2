"""The work queue of a sweep, held in an Optuna storage.

Each (cell, seed) is enqueued as a WAITING trial of a study named after the sweep; a worker claims
one by moving it WAITING -> RUNNING, which the storage grants to exactly one caller (a journal file
under ``runs/`` on one machine, an RDB such as PostgreSQL across machines). Nothing here is a
home-made lock.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)
logging.getLogger("optuna").setLevel(logging.WARNING)

__all__ = ["WorkQueue", "open_storage"]


def open_storage(url: str | Path) -> BaseStorage:
    """A journal file (a path, or ``journal:///path``) or an RDB URL (``postgresql://...``)."""
    text = str(url)
    if "://" not in text or text.startswith("journal://"):
        path = Path(text.removeprefix("journal://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    return optuna.storages.RDBStorage(text, heartbeat_interval=10, grace_period=30)


class WorkQueue:
    """Items (plain JSON-able dicts) handed out exactly once each."""

    def __init__(self, storage: BaseStorage, name: str) -> None:
        self.storage, self.name = storage, name
        self.study_id = storage.get_study_id_from_name(name)

    @classmethod
    def create(cls, storage: BaseStorage, name: str, items: list[dict[str, Any]]) -> WorkQueue:
        """A new queue holding ``items`` in order."""
        study = optuna.create_study(storage=storage, study_name=name, load_if_exists=False)
        for item in items:
            study.enqueue_trial({}, user_attrs={"item": item})
        return cls(storage, name)

    def claim(self) -> tuple[int, dict[str, Any]] | None:
        """Take the next waiting item, or None when none is left."""
        for trial in self.storage.get_all_trials(self.study_id, deepcopy=False, states=(TrialState.WAITING,)):
            try:
                if self.storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                    return trial._trial_id, self.storage.get_trial_user_attrs(trial._trial_id)["item"]
            except UpdateFinishedTrialError:
                continue
        return None

    def done(self, trial_id: int, ok: bool, value: float | None = None) -> None:
        state = TrialState.COMPLETE if ok else TrialState.FAIL
        values = [value if value is not None else float("nan")] if ok else None
        self.storage.set_trial_state_values(trial_id, state, values=values)

    def requeue(self, item: dict[str, Any]) -> None:
        """Put an item back (e.g. its worker died)."""
        optuna.load_study(study_name=self.name, storage=self.storage).enqueue_trial(
            {}, user_attrs={"item": item}
        )

    def counts(self) -> dict[str, int]:
        trials = self.storage.get_all_trials(self.study_id, deepcopy=False)
        out: dict[str, int] = {}
        for t in trials:
            out[t.state.name] = out.get(t.state.name, 0) + 1
        return out
