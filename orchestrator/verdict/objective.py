"""What a search can minimise of a cell's verdict (``orch search --objective``, the matrix's
``search.objective``), and how a window's line scores on it.

Defined once here, beside the verdict it reads, without imports, so that the command line names the
objectives without loading Optuna or scipy; the search computes them in
:mod:`orchestrator.execute.search.trend`.
"""

from __future__ import annotations

import math
from enum import StrEnum


class Objective(StrEnum):
    """What a search minimises."""

    FINAL = "final"  # where the window's fitted line ends, mean over seeds (vs the constant baseline)
    DROP = "drop"  # the verdict's relative change over the window


def score(objective: Objective, start: float, end: float, baseline: float | None) -> float:
    """The objective of a cell whose window line runs from ``start`` to ``end`` (means over seeds): ``drop``
    is the verdict's ``rel_change``, ``final`` its ``vs_baseline`` (the end level itself without a
    baseline)."""
    if objective is Objective.DROP:
        return (end - start) / abs(start) if start else math.nan
    return end / baseline - 1.0 if baseline is not None and baseline > 0 else end
