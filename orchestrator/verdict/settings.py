"""What a matrix's ``verdict:`` section sets: the metric judged, the window, the thresholds, the guards."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Expectation = Literal["pass", "fail", "partial"]


def default_warmup(epochs: int) -> int:
    """Number of leading epochs left out of the analysis window by default.

    Epoch 0 and at least epoch 1, or the first 20% of the epochs when that is more (epochs whose index is
    below ``0.2 * epochs``).

    Args:
        epochs: Number of recorded epochs, epoch 0 included.

    Returns:
        The warm-up length; the window starts at this epoch index.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    return max(2, math.ceil(0.2 * epochs - 1e-9))


class Verdict(StrEnum):
    """What a cell's metric does over the analysis window."""

    FALLS = "falls"
    FLAT = "flat"
    RISES = "rises"
    DIVERGED = "diverged"
    INCONCLUSIVE = "inconclusive"


class Guard(BaseModel):
    """A bound on a metric's final value (mean over seeds of the last epoch), e.g. ``noise_leak <= 0.02``.

    A guard that does not hold makes the cell fail, whatever its trend.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every float finite

    metric: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _check_bounds(self) -> Guard:
        if self.min is None and self.max is None:
            raise ValueError(f"guard on {self.metric!r} needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"guard on {self.metric!r}: min {self.min} > max {self.max}")
        return self

    def describe(self) -> str:
        """Short text such as ``noise_leak<=0.02`` or ``0.1<=x<=0.2``."""
        if self.min is not None and self.max is not None:
            return f"{self.min:g}<={self.metric}<={self.max:g}"
        if self.min is not None:
            return f"{self.metric}>={self.min:g}"
        return f"{self.metric}<={self.max:g}"


class VerdictSettings(BaseModel):
    """The ``verdict:`` section of a matrix: which metric, which window, which thresholds.

    Attributes:
        metric: Per-epoch validation metric judged (epoch 0 included).
        warmup: Epochs left out at the start of the analysis window; None = :func:`default_warmup`.
        min_change: Smallest relative change over the window that matters (0.05 = 5%).
        confidence: Level of the bootstrap interval for the relative change.
        alpha: Significance level of the Mann-Kendall trend test (reported; see ``require_trend``).
        require_trend: Also require the trend test's p < alpha for ``falls`` / ``rises``.
        n_boot: Bootstrap replicates (their cost: docs/verdicts.md).
        block_length: Moving-block length in epochs; None = chosen from the residuals' autocorrelation.
        seed_agreement: Fraction of seeds whose own change must exceed ``min_change`` in the verdict's
            direction for ``falls`` / ``rises``.
        min_seeds: Fewer usable seeds than this is ``inconclusive`` (too few seeds).
        min_window: Fewer window epochs than this is ``inconclusive`` (too short).
        diverged_fraction: The cell is ``diverged`` when at least this fraction of its seeds went NaN/Inf;
            fewer diverged seeds are left out and counted in ``seeds_failed``.
        floor_tolerance: The end level is "at the floor" when it exceeds the floor by at most this
            fraction of the floor (of the epoch-0 level when the floor is 0).
        floor_metric: Name of the per-epoch metric that carries the attainable floor (None: no floor).
        baseline_metric: Name of the metric that carries the constant-prediction baseline the end level is
            read against (what a model gets for free: the target domain's mean image, or zeros). ``auto``:
            ``cross_baseline`` when the judged metric is ``cross`` or ``recon`` (both are L1 against the
            same targets), else none. A cell that does not end below it by ``min_change`` is not a pass.
        guards: Guards applied to every cell (cells may add their own).
        partial_progress: ``partial`` holds when the metric falls but has closed less than this fraction
            of the gap between its epoch-0 level and the floor.
        bootstrap_seed: Seed of the bootstrap generator; equal inputs give equal verdicts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every float finite

    metric: str = "cross"
    warmup: int | None = Field(default=None, ge=0)
    min_change: float = Field(default=0.05, gt=0.0, lt=1.0)
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    require_trend: bool = False
    n_boot: int = Field(default=2000, ge=200, le=100_000)
    block_length: int | None = Field(default=None, ge=1)
    seed_agreement: float = Field(default=0.75, gt=0.5, le=1.0)
    min_seeds: int = Field(default=3, ge=2)
    min_window: int = Field(default=4, ge=3)
    diverged_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    floor_tolerance: float = Field(default=0.10, ge=0.0)
    floor_metric: str | None = "cross_floor"
    baseline_metric: str | None = "auto"
    guards: list[Guard] = Field(default_factory=list)
    partial_progress: float = Field(default=0.5, gt=0.0, le=1.0)
    bootstrap_seed: int = Field(default=0, ge=0, description="numpy generators take non-negative seeds")

    def baseline_name(self) -> str | None:
        """The metric holding the constant-prediction baseline of :attr:`metric` (see ``baseline_metric``)."""
        if self.baseline_metric != "auto":
            return self.baseline_metric
        return "cross_baseline" if self.metric in ("cross", "recon") else None

    # Every reading of a cell (the verdict, the early-stop rule, a search's objective and pruner) takes its
    # warm-up, window, bootstrap and divergence rule from here. Epochs are counted as recorded: epoch 0
    # included, so a budget of ``trainer.epochs`` records ``trainer.epochs + 1``.

    def warmup_of(self, epochs: int) -> int:
        """The warm-up of curves of ``epochs`` recorded epochs: :attr:`warmup`, else the default one."""
        return self.warmup if self.warmup is not None else default_warmup(epochs)

    def window(self, epochs: int, last: int | None = None) -> tuple[int, int] | None:
        """The analysis window ``(first, last)`` of a budget of ``epochs`` recorded epochs: from the end of
        its warm-up to epoch ``last`` (default: the budget's last); None when that holds fewer than
        :attr:`min_window` epochs (too short to judge)."""
        first = self.warmup_of(epochs)
        last = epochs - 1 if last is None else last
        return (first, last) if last - first + 1 >= self.min_window else None

    def fit_options(self) -> dict[str, Any]:
        """The bootstrap's settings as :func:`~orchestrator.verdict.stats.fit_window` takes them."""
        return {
            "n_boot": self.n_boot,
            "confidence": self.confidence,
            "block_length": self.block_length,
            "seed": self.bootstrap_seed,
        }

    def too_many_diverged(self, diverged: int, seeds: int) -> bool:
        """Whether ``diverged`` of a cell's ``seeds`` seeds (NaN/Inf) make it ``diverged``: at least
        :attr:`diverged_fraction` of them (fewer are left out of the verdict, and counted)."""
        return diverged > 0 and diverged >= self.diverged_fraction * seeds


#: Metrics the trainer logs only for data with clean images (a guard on one cannot be judged without them).
NEEDS_CLEAN_IMAGES = (
    "cross_floor",
    "cross_clean",
    "cross_psnr_clean",
    "noise_leak",
    "cross_mean_image_psnr_clean",
)
