"""Trend verdicts: does a cell's metric really fall after the warm-up?

Pure functions over per-epoch curves (numpy/scipy only): :mod:`~orchestrator.verdict.settings` (what a
matrix's ``verdict:`` section sets), :mod:`~orchestrator.verdict.stats` (window, Theil-Sen, Mann-Kendall,
bootstrap), :mod:`~orchestrator.verdict.cell` (:func:`judge_cell`) and :mod:`~orchestrator.verdict.result`
(:class:`CellVerdict`, the verdict JSON contract). Method and measured error rates: docs/verdicts.md.

Names are imported on first use: reading a matrix needs the settings, not scipy (about 0.9 s to import).
"""

from __future__ import annotations

from orchestrator.lazy import lazy_attributes

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

_LAZY = {
    "judge_cell": "cell",
    "CellVerdict": "result",
    "GuardResult": "result",
    "Expectation": "settings",
    "Guard": "settings",
    "Verdict": "settings",
    "VerdictSettings": "settings",
    "default_warmup": "stats",
    "hierarchical_bootstrap_rel_change": "stats",
    "mann_kendall_hamed_rao": "stats",
    "theil_sen": "stats",
}

__getattr__ = lazy_attributes(__name__, _LAZY)
