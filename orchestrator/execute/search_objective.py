"""The objectives `orch search` can minimise (``--objective``), apart so that the command line names them
without importing Optuna or scipy; what each one computes is in :mod:`orchestrator.execute.trend_pruner`."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Objective"]


class Objective(StrEnum):
    """What a search minimises (``--objective``, the matrix's ``search.objective``)."""

    FINAL = "final"  # where the window's fitted line ends, mean over seeds (vs the constant baseline)
    DROP = "drop"  # the verdict's relative change over the window
