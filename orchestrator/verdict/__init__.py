"""Trend verdicts: does a cell's metric really fall after the warm-up?

Pure functions over per-epoch curves (numpy/scipy only): :mod:`~orchestrator.verdict.settings` (what a
matrix's ``verdict:`` section sets, and the warm-up, window, bootstrap and divergence rules every reading of a
cell takes from it), :mod:`~orchestrator.verdict.stats` (window fit, Theil-Sen, Mann-Kendall, bootstrap, the
lower bound of an extended line), :mod:`~orchestrator.verdict.cell` (:class:`CellData`, :func:`judge_cell`)
and :mod:`~orchestrator.verdict.result` (:class:`CellVerdict`, the verdict JSON contract);
:mod:`~orchestrator.verdict.objective` says what a search can minimise of a verdict. Method and measured
error rates: docs/verdicts.md.

Names are imported on first use: reading a matrix needs the settings, not scipy (about 0.9 s to import).
"""

from __future__ import annotations

from orchestrator.lazy import lazy_attributes

__all__, __getattr__ = lazy_attributes(
    __name__,
    {
        "cell": ("CellData", "judge_cell"),
        "objective": ("Objective", "score"),
        "result": ("CellVerdict", "GuardResult"),
        "settings": ("Expectation", "Guard", "Verdict", "VerdictSettings", "default_warmup"),
        "stats": ("Fit", "fit_window", "lower_bound", "mann_kendall_hamed_rao", "theil_sen"),
    },
)
