"""Runs as orch reads them back from the store: :class:`Attempt` (how a run of a (cell, seed) ended, and
which code and data it ran) and :class:`RunRecord` (a child run with its tags and curves), and
:func:`flatten`, the flat ``a.b`` names of a nested config. No MLflow import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.tracking.vocabulary import (
    TAG_CODE,
    TAG_CONFIG_KEY,
    TAG_DATA,
    TAG_EPOCHS,
    TAG_GIT_COMMIT,
    TAG_KEY,
    TAG_STEPS,
    RunStatus,
)

__all__ = ["Attempt", "RunRecord", "flatten"]


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, f"{name}.")
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class Attempt:
    """One run of a (cell, seed) as the store holds it: how it ended and which code and data it ran."""

    run_id: str
    status: RunStatus
    run_key: str
    config_key: str
    code: str | None
    data: str | None
    git_commit: str | None
    start_time: int

    @classmethod
    def of(cls, run: Any) -> Attempt:
        tags = run.data.tags
        key = tags.get(TAG_KEY, "")
        return cls(
            run_id=run.info.run_id,
            status=RunStatus.of(run.info.status, tags),
            run_key=key,
            # runs logged before code fingerprints had their config key as their run key
            config_key=tags.get(TAG_CONFIG_KEY, key),
            code=tags.get(TAG_CODE),
            data=tags.get(TAG_DATA),
            git_commit=tags.get(TAG_GIT_COMMIT) or tags.get("mlflow.source.git.commit"),
            start_time=run.info.start_time or 0,
        )


@dataclass
class RunRecord:
    """A child run as read back from the store."""

    run_id: str
    cell: str
    seed: int
    run_key: str
    config_key: str
    status: RunStatus
    sweep: str
    tags: dict[str, str]
    params: dict[str, str]
    start_time: int = 0  # ms since the epoch, as MLflow keeps it
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    end_time: int | None = None  # ms; None while it runs

    def budget(self, field: str) -> str | None:
        """The run's ``trainer.epochs`` or ``trainer.steps_per_epoch``: its budget tag, else its param of that
        name (runs logged with their whole config as params, and others' runs)."""
        tag = {"trainer.epochs": TAG_EPOCHS, "trainer.steps_per_epoch": TAG_STEPS}[field]
        value = self.tags.get(tag, self.params.get(field))
        return None if value in (None, "None") else value

    def curve(self, metric: str) -> np.ndarray:
        """Values of ``metric`` by step (epoch), NaN where an epoch is missing."""
        points = self.history.get(metric, [])
        if not points:
            return np.array([], dtype=float)
        last = max(s for s, _ in points)
        out = np.full(last + 1, np.nan)
        for step, value in points:
            out[step] = value
        return out
