"""Everything orch writes to or reads from MLflow: this package is the only one that imports it.

- :mod:`~orchestrator.tracking.vocabulary`: run status, run kinds and tag names (no MLflow import).
- :mod:`~orchestrator.tracking.store`: opening or creating the store once, before workers start
  (:mod:`~orchestrator.tracking.sqlite_store`: an SQLite store built whole or not at all).
- :mod:`~orchestrator.tracking.errors`: :class:`TrackingError` (no MLflow import).
- :mod:`~orchestrator.tracking.uri`: where a store's URI points (no MLflow import).
- :mod:`~orchestrator.tracking.tracker`: :class:`Tracker`, the writes and reads of runs.
- :mod:`~orchestrator.tracking.single`: ``orch train``'s tracked run (:func:`open_single_run`).
- :mod:`~orchestrator.tracking.records`: the runs as read back (:class:`RunRecord`, no MLflow import).

The vocabulary is imported at once; the names that need MLflow on first use, so that a worker process can
read the vocabulary without importing MLflow.
"""

from __future__ import annotations

from orchestrator.lazy import lazy_attributes
from orchestrator.tracking.vocabulary import RunKind, RunStatus, axes_from_tags, run_tags

_LAZY, __getattr__ = lazy_attributes(
    __name__,
    {
        "errors": ("TrackingError",),
        "store": ("check_reachable", "prepare_store"),
        "uri": ("normalize_uri", "sqlite_path"),
        "records": ("Attempt", "RunRecord", "flatten"),
        "tracker": ("Tracker", "check_experiment_name"),
        "single": ("open_single_run",),
    },
)
__all__ = ["RunKind", "RunStatus", "axes_from_tags", "run_tags", *_LAZY]
