"""Early verdicts: stop a run once its own curve has decided the trend, with margin.

A worker sees only its own run, so the rule judges the run's curve alone with the verdict's statistics
(the relative change over the analysis window, with the moving-block bootstrap interval of
:func:`~orchestrator.verdict.fit_window` on one seed), against the matrix's
``verdict.min_change``: ``falls`` / ``rises`` when the interval lies beyond it, ``flat`` when it lies
inside. An epoch's reading counts only when two intervals agree on it: the one over the window so far,
and the one the report will judge a stopped run by, its line extended to the budget's last epoch
(``judge_cell(planned_epochs=...)``). The first keeps a ``falls`` from resting on the extension alone;
the second keeps a slow, steady change, small over the epochs so far but not over the whole window, from
reading ``flat``. The extended line is never drawn below what the metric can be (its floor, logged as
``verdict.floor_metric``, else zero for a loss: :func:`~orchestrator.verdict.lower_bound`), as the report's
judge draws it. The warm-up and the window are the verdict's (:class:`~orchestrator.verdict.VerdictSettings`,
built from the rule's fields). The run stops when the
same reading holds at ``patience`` consecutive epochs, no earlier than ``verdict.min_window`` epochs into
the window, and never while its training schedule still changes (``hold_until``: the end of a skip-weight
decay, which keeps changing what the run learns).

It is a heuristic, not a guarantee: ``bench/time_to_verdict.py`` measures, on a matrix, the epochs saved
and whether every cell's verdict stayed what the full budget gives.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.verdict import Fit, VerdictSettings, fit_window, lower_bound

__all__ = ["EarlyStopRule", "decided"]


def decided(fit: Fit, min_change: float) -> str | None:
    """``falls`` / ``rises`` / ``flat`` when the fit's interval decides it, else None."""
    low, high = fit.low, fit.high
    if high < -min_change:
        return "falls"
    if low > min_change:
        return "rises"
    if -min_change < low and high < min_change:
        return "flat"
    return None


@dataclass
class EarlyStopRule:
    """Fed one epoch's metrics at a time (epoch 0 first); returns the reason to stop, or None."""

    metric: str
    epochs: int  # the run's budget: epochs after epoch 0
    min_change: float
    warmup: int | None = None
    min_window: int = 4
    patience: int = 1
    confidence: float = 0.95
    n_boot: int = 400
    hold_until: int = 0  # no stop before this epoch (the end of a schedule that still changes training)
    floor_metric: str | None = None  # the metric's attainable floor: an extended line is not drawn below it
    floor: float | None = None  # the latest value of floor_metric
    history: list[float] = field(default_factory=list)
    readings: list[str | None] = field(default_factory=list)

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> EarlyStopRule:
        return cls(**data)

    @functools.cached_property
    def settings(self) -> VerdictSettings:
        """The verdict settings the rule reads with (the matrix's, as far as the rule's fields carry them)."""
        return VerdictSettings(
            metric=self.metric,
            warmup=self.warmup,
            min_window=self.min_window,
            min_change=self.min_change,
            confidence=self.confidence,
            n_boot=self.n_boot,
        )

    def __call__(self, metrics: dict[str, float]) -> str | None:
        if self.floor_metric and math.isfinite(metrics.get(self.floor_metric, math.nan)):
            self.floor = float(metrics[self.floor_metric])
        value = metrics.get(self.metric, math.nan)
        self.history.append(float(value))
        epoch = len(self.history) - 1
        if epoch >= self.epochs or not all(math.isfinite(v) for v in self.history):
            return None  # the last epoch ends anyway; NaN is the trainer's to report
        window = self.settings.window(self.epochs + 1, last=epoch)
        if window is None:
            self.readings.append(None)
            return None
        curve = np.asarray([self.history])
        options = self.settings.fit_options()
        fit = fit_window(curve, window, **options)
        reading = decided(fit, self.min_change)
        extended = fit
        if reading is not None:
            # What the judge will see of a stopped run: its line extended to the budget's last epoch.
            lower = lower_bound(curve, self.floor)
            extended = fit_window(curve, (window[0], self.epochs), extend=True, lower=lower, **options)
            if decided(extended, self.min_change) != reading:
                reading = None
        self.readings.append(reading)
        last = self.readings[-self.patience :]
        if reading is None or len(last) < self.patience or any(r != reading for r in last):
            return None
        if epoch < self.hold_until:
            return None
        run = f" for {self.patience} epochs in a row" if self.patience > 1 else ""
        return (
            f"early stop at epoch {epoch} of {self.epochs}: {self.metric} reads {reading}{run} "
            f"({_interval(fit)} over epochs {window[0]}-{epoch}, {_interval(extended)} with its line "
            f"extended to epoch {self.epochs}; min change {self.min_change:.0%})"
        )


def _interval(fit: Fit) -> str:
    return f"{fit.estimate:+.1%} [{fit.low:+.1%}, {fit.high:+.1%}]"
