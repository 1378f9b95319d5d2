"""Trend verdicts: does a cell's metric really fall after the warm-up?

Pure functions over per-epoch curves (numpy/scipy only): :mod:`~orchestrator.verdict.settings` (what a
matrix's ``verdict:`` section sets), :mod:`~orchestrator.verdict.stats` (window, Theil-Sen, Mann-Kendall,
bootstrap), :mod:`~orchestrator.verdict.cell` (:func:`judge_cell`) and :mod:`~orchestrator.verdict.result`
(:class:`CellVerdict`, the verdict JSON contract). Method and measured error rates: docs/verdicts.md.
"""

from orchestrator.verdict.cell import judge_cell
from orchestrator.verdict.result import CellVerdict, GuardResult
from orchestrator.verdict.settings import Expectation, Guard, Verdict, VerdictSettings
from orchestrator.verdict.stats import (
    default_warmup,
    hierarchical_bootstrap_rel_change,
    mann_kendall_hamed_rao,
    theil_sen,
)

__all__ = [
    "CellVerdict",
    "Expectation",
    "Guard",
    "GuardResult",
    "Verdict",
    "VerdictSettings",
    "default_warmup",
    "hierarchical_bootstrap_rel_change",
    "judge_cell",
    "mann_kendall_hamed_rao",
    "theil_sen",
]
