"""Trend verdicts: does a cell's metric really fall after the warm-up?

Pure functions over per-epoch curves (numpy/scipy only). A cell is judged over its seeds on the
analysis window, the epochs after the warm-up, so that a loss that drops once in the first epoch (the
decoder learning the mean image) and then stays flat reads as ``flat``, not as ``falls``. The drop over
the whole run (epoch 0 to the end) is reported beside the verdict, never in its place.

The method, its calibration and the measured error rates are in ``docs/verdicts.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats

__all__ = [
    "CellVerdict",
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

Expectation = Literal["pass", "fail", "partial"]


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

    model_config = ConfigDict(extra="forbid", frozen=True)

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
        warmup: Epochs left out at the start of the analysis window; None = ``default_warmup``.
        min_change: Smallest relative change over the window that matters (0.05 = 5%).
        confidence: Level of the bootstrap interval for the relative change.
        alpha: Significance level of the Mann-Kendall trend test (reported; see ``require_trend``).
        require_trend: Also require the trend test's p < alpha for ``falls`` / ``rises``.
        n_boot: Bootstrap replicates (2000 keep ``judge_cell`` at a few ms for 5 seeds x 30 epochs).
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
        guards: Guards applied to every cell (cells may add their own).
        partial_progress: ``partial`` holds when the metric falls but has closed less than this fraction
            of the gap between its epoch-0 level and the floor.
        bootstrap_seed: Seed of the bootstrap generator; equal inputs give equal verdicts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

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
    guards: list[Guard] = Field(default_factory=list)
    partial_progress: float = Field(default=0.5, gt=0.0, le=1.0)
    bootstrap_seed: int = 0


@dataclass(frozen=True)
class GuardResult:
    """A guard evaluated on one cell: ``value`` is None (and ``holds`` None) when the metric is missing."""

    metric: str
    min: float | None
    max: float | None
    value: float | None
    holds: bool | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "metric": self.metric,
            "min": self.min,
            "max": self.max,
            "value": self.value,
            "holds": self.holds,
        }


@dataclass(frozen=True)
class CellVerdict:
    """The verdict on one cell over its seeds; ``to_dict`` is the Verdict JSON contract of DESIGN.md.

    Levels (``start``, ``end``) are the per-seed linear fits over the window evaluated at its first and last
    epoch, averaged over seeds; ``*_sd`` is their spread over seeds (sample standard deviation).
    """

    cell: str
    metric: str
    axes: dict[str, Any]
    seeds: list[int]
    seeds_failed: int
    seeds_diverged: list[int]
    epochs: int
    warmup: int
    window: tuple[int, int] | None
    start: float | None
    start_sd: float | None
    end: float | None
    end_sd: float | None
    start_per_seed: list[float]
    end_per_seed: list[float]
    rel_change: float | None
    ci: tuple[float, float] | None
    confidence: float
    p_value: float | None
    tau: float | None
    theil_sen: float | None
    seed_agreement: float | None
    whole_run_change: float | None
    floor: float | None
    progress: float | None
    at_floor: bool | None
    state: str | None
    verdict: Verdict
    reason: str
    guards: list[GuardResult]
    finals: dict[str, float | None]
    expected: Expectation | None
    observed: Expectation | None
    agrees: bool | None
    notes: list[str] = field(default_factory=list)

    @property
    def failed_guards(self) -> list[GuardResult]:
        """Guards that do not hold."""
        return [g for g in self.guards if g.holds is False]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (non-finite numbers become None), following the Verdict JSON contract."""
        return {
            "cell": self.cell,
            "metric": self.metric,
            "axes": {k: _jsonable(v) for k, v in self.axes.items()},
            "seeds": list(self.seeds),
            "seeds_failed": self.seeds_failed,
            "seeds_diverged": list(self.seeds_diverged),
            "epochs": self.epochs,
            "warmup": self.warmup,
            "window": list(self.window) if self.window is not None else None,
            "start": {
                "mean": _num(self.start),
                "sd": _num(self.start_sd),
                "per_seed": [_num(v) for v in self.start_per_seed],
            },
            "end": {
                "mean": _num(self.end),
                "sd": _num(self.end_sd),
                "per_seed": [_num(v) for v in self.end_per_seed],
            },
            "rel_change": _num(self.rel_change),
            "ci": [_num(self.ci[0]), _num(self.ci[1])] if self.ci is not None else None,
            "confidence": self.confidence,
            "p_value": _num(self.p_value),
            "tau": _num(self.tau),
            "theil_sen": _num(self.theil_sen),
            "seed_agreement": _num(self.seed_agreement),
            "whole_run_change": _num(self.whole_run_change),
            "floor": _num(self.floor),
            "progress": _num(self.progress),
            "at_floor": self.at_floor,
            "state": self.state,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "guards": [g.to_dict() for g in self.guards],
            "finals": {k: _num(v) for k, v in self.finals.items()},
            "expected": self.expected,
            "observed": self.observed,
            "agrees": self.agrees,
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------------------
# Building blocks


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


def theil_sen(y: Sequence[float] | np.ndarray) -> float:
    """Theil-Sen slope (median of pairwise slopes) of ``y`` against its index, in units per epoch.

    Args:
        y: Values at consecutive epochs; non-finite values are skipped.

    Returns:
        The slope, or NaN with fewer than two finite values.
    """
    y = np.asarray(y, dtype=float)
    t = np.arange(y.size, dtype=float)
    ok = np.isfinite(y)
    y, t = y[ok], t[ok]
    if y.size < 2:
        return float("nan")
    i, j = np.triu_indices(y.size, k=1)
    return float(np.median((y[j] - y[i]) / (t[j] - t[i])))


def mann_kendall_hamed_rao(
    y: Sequence[float] | np.ndarray, *, acf_alpha: float = 0.05
) -> tuple[float, float]:
    """Mann-Kendall trend test with the Hamed-Rao (1998) variance correction for autocorrelation.

    The series is detrended with its Theil-Sen slope; the autocorrelations of the ranks of the residuals that
    are significant at ``acf_alpha`` inflate the variance of the S statistic (never deflate it: the factor is
    at least 1). Ties are accounted for. On short, strongly autocorrelated series the p-value is still too
    small (docs/verdicts.md gives rates), which is why the verdict rests on the bootstrap interval.

    Args:
        y: Values at consecutive epochs; non-finite values are dropped.
        acf_alpha: Significance level used to select autocorrelation lags.

    Returns:
        ``(tau, p)``: Kendall's tau against time and the two-sided p-value. With fewer than three values,
        ``(nan, 1.0)``.
    """
    y = np.asarray(y, dtype=float)
    y = y[np.isfinite(y)]
    n = y.size
    if n < 3:
        return float("nan"), 1.0
    i, j = np.triu_indices(n, k=1)
    s = float(np.sign(y[j] - y[i]).sum())
    _, counts = np.unique(y, return_counts=True)
    var_s = (n * (n - 1) * (2 * n + 5) - float(np.sum(counts * (counts - 1) * (2 * counts + 5)))) / 18.0
    tau = s / (n * (n - 1) / 2.0)
    if var_s <= 0:
        return tau, 1.0
    var_s *= _hamed_rao_factor(y, acf_alpha)
    z = (s - np.sign(s)) / math.sqrt(var_s)
    return tau, float(min(1.0, 2.0 * stats.norm.sf(abs(z))))


def hierarchical_bootstrap_rel_change(
    curves: Sequence[Sequence[float]] | np.ndarray,
    window: tuple[int, int],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    block_length: int | None = None,
    seed: int = 0,
    extend: bool = False,
) -> tuple[float, float, float]:
    """Relative change over a window with a hierarchical (seeds, then epoch blocks) bootstrap interval.

    Each seed's window is summarised by a least-squares line; its start and end levels are the line at the
    window's first and last epoch, and the cell's relative change is ``mean(end) / mean(start) - 1`` over
    seeds. A replicate resamples seeds with replacement, then rebuilds each drawn seed as its fitted line
    plus a moving-block resample of its residuals (so autocorrelated epochs stay together), and refits. The
    interval is the percentile interval of the replicates. Resampling at both levels counts the epoch noise
    twice (once inside each seed's estimate, once in the blocks), which offsets the too-narrow seed level of a
    bootstrap over 3-5 seeds; docs/verdicts.md gives the measured error rates.

    With ``extend``, curves may end before the window does (runs stopped early): each such seed's line is
    fitted on its epochs from the window's first on and extended to the window's last epoch, so that its
    change is over the same span as the others' (and its interval widens with the extension).

    Args:
        curves: Array-like ``(seeds, epochs)`` of finite values, equal lengths, epoch 0 first (with
            ``extend``: a sequence of curves of any lengths that leave at least 2 window epochs).
        window: ``(first, last)`` epoch indices, inclusive.
        n_boot: Number of bootstrap replicates.
        confidence: Two-sided interval level.
        block_length: Moving-block length; None chooses it from the residuals' lag-1 autocorrelation.
        seed: Generator seed (deterministic results).
        extend: Extend the lines of curves that end before the window's last epoch (else an error).

    Returns:
        ``(estimate, low, high)`` as fractions (-0.25 = a 25% fall).
    """
    fit = _bootstrap(
        curves,
        window,
        n_boot=n_boot,
        confidence=confidence,
        block_length=block_length,
        seed=seed,
        extend=extend,
    )
    return fit.estimate, fit.low, fit.high


# ---------------------------------------------------------------------------------------------------------
# The cell verdict


def judge_cell(
    name: str,
    curves: Sequence[Sequence[float]],
    settings: VerdictSettings,
    *,
    axes: Mapping[str, Any] | None = None,
    expect: Expectation | None = None,
    floor: float | None = None,
    finals: Mapping[str, Sequence[float]] | None = None,
    cell_guards: Sequence[Guard] = (),
    diverged_seeds: int = 0,
    crashed_seeds: int = 0,
    seeds: Sequence[int] | None = None,
    planned_epochs: int | None = None,
) -> CellVerdict:
    """Judge one cell: does ``settings.metric`` fall over the analysis window, over the cell's seeds?

    Args:
        name: Cell name.
        curves: One curve per finished seed, index = epoch (epoch 0 included). A curve with NaN/Inf is a
            diverged seed. Lengths may differ: without ``planned_epochs`` the common prefix is judged and a
            note says so.
        settings: The matrix's verdict settings.
        axes: The cell's axis values, copied into the verdict.
        expect: The matrix's expectation for the cell (``pass`` / ``fail`` / ``partial``), if any.
        floor: Attainable floor of the metric (e.g. clean target against noisy target on the validation
            pairs). None: taken from ``finals[settings.floor_metric]`` when present, else unknown.
        finals: Metric name -> final-epoch value per seed, for guards and the report (e.g. ``noise_leak``).
        cell_guards: Guards of this cell, in addition to ``settings.guards``.
        diverged_seeds: Runs that went NaN/Inf and have no curve here (counted as diverged seeds).
        crashed_seeds: Runs that failed for other reasons (counted in ``seeds_failed`` only).
        seeds: Seed ids of ``curves`` (default 0, 1, ...).
        planned_epochs: The runs' budget in recorded epochs (epoch 0 included), given when some runs
            stopped early (``budget.early_stop``). The window is then the budget's, and each shorter
            curve's line over its own window epochs is extended to the budget's last epoch (its
            interval widens accordingly), so that the verdict is about the same span as the full
            budget's rather than about the shorter one, on which a steady change reads smaller. The
            trend test (p-value, Theil-Sen slope) covers the window epochs every seed has.

    Returns:
        The cell's verdict.
    """
    if diverged_seeds < 0 or crashed_seeds < 0:
        raise ValueError("diverged_seeds and crashed_seeds must be >= 0")
    raw = [np.asarray(c, dtype=float).ravel() for c in curves]
    seed_ids = list(seeds) if seeds is not None else list(range(len(raw)))
    if len(seed_ids) != len(raw):
        raise ValueError(f"{len(seed_ids)} seed ids for {len(raw)} curves")
    finals = {k: np.asarray(v, dtype=float).ravel() for k, v in (finals or {}).items()}
    notes: list[str] = []

    bad = [i for i, c in enumerate(raw) if not np.all(np.isfinite(c))]
    good = [i for i in range(len(raw)) if i not in bad]
    n_diverged = len(bad) + diverged_seeds
    n_total = len(raw) + diverged_seeds
    if n_diverged:
        notes.append(f"{n_diverged} of {n_total} seeds diverged (NaN/Inf)")

    floor_value = _floor(floor, finals, settings.floor_metric)
    guard_results = _evaluate_guards([*settings.guards, *cell_guards], finals)
    finals_mean = {k: _finite_mean(v) for k, v in finals.items()}

    lengths = [raw[i].size for i in good]
    common = min(lengths) if lengths else 0
    extend = planned_epochs is not None and bool(lengths) and common < planned_epochs
    epochs = planned_epochs if extend and planned_epochs is not None else common
    if extend:
        stops = sorted(n - 1 for n in lengths if n < epochs)
        notes.append(
            f"{len(stops)} of {len(lengths)} seeds stopped early (after epochs {', '.join(map(str, stops))} "
            f"of {epochs - 1}): each one's line over its window epochs is extended to epoch {epochs - 1}"
        )
    elif lengths and max(lengths) != epochs:
        notes.append(f"curves have {min(lengths)}..{max(lengths)} epochs; judged on the common {epochs}")
    y = np.stack([raw[i][:common] for i in good]) if good else np.empty((0, 0))  # the common epochs
    warmup = settings.warmup if settings.warmup is not None else default_warmup(epochs)
    window = (warmup, epochs - 1) if epochs - warmup >= 1 else None
    own = common - warmup  # window epochs of the shortest curve (all of the window without early stops)

    base: dict[str, Any] = dict(
        cell=name,
        metric=settings.metric,
        axes=dict(axes or {}),
        seeds=[seed_ids[i] for i in good],
        seeds_failed=n_diverged + crashed_seeds,
        seeds_diverged=[seed_ids[i] for i in bad],
        epochs=epochs,
        warmup=warmup,
        window=window,
        confidence=settings.confidence,
        guards=guard_results,
        finals=finals_mean,
        floor=floor_value,
        expected=expect,
        notes=notes,
    )
    empty: dict[str, Any] = dict(
        start=None,
        start_sd=None,
        end=None,
        end_sd=None,
        start_per_seed=[],
        end_per_seed=[],
        rel_change=None,
        ci=None,
        p_value=None,
        tau=None,
        theil_sen=None,
        seed_agreement=None,
        whole_run_change=None,
        progress=None,
        at_floor=None,
        state=None,
    )

    if n_total == 0:
        return _finish(base, empty, Verdict.INCONCLUSIVE, "too few seeds: no finished runs", settings)
    if n_diverged and n_diverged >= settings.diverged_fraction * n_total:
        return _finish(
            base,
            empty,
            Verdict.DIVERGED,
            f"{n_diverged} of {n_total} seeds went NaN/Inf in {settings.metric}",
            settings,
        )
    if len(good) < settings.min_seeds:
        extra = f" ({n_diverged} diverged)" if n_diverged else ""
        return _finish(
            base,
            empty,
            Verdict.INCONCLUSIVE,
            f"too few seeds: {len(good)} usable{extra}, need {settings.min_seeds}",
            settings,
        )
    if window is None or window[1] - window[0] + 1 < settings.min_window:
        have = 0 if window is None else window[1] - window[0] + 1
        return _finish(
            base,
            empty,
            Verdict.INCONCLUSIVE,
            f"too short: {epochs} epochs leave {have} after a warm-up of {warmup}, "
            f"need {settings.min_window}",
            settings,
        )
    if extend and own < settings.min_window:
        return _finish(
            base,
            empty,
            Verdict.INCONCLUSIVE,
            f"too short: a seed stopped after epoch {common - 1}, {max(own, 0)} epochs after a warm-up of "
            f"{warmup}, need {settings.min_window}",
            settings,
        )

    fit = _bootstrap(
        [raw[i] for i in good] if extend else y,
        window,
        n_boot=settings.n_boot,
        confidence=settings.confidence,
        block_length=settings.block_length,
        seed=settings.bootstrap_seed,
        extend=extend,
    )
    mean_window = y[:, window[0] : min(window[1], common - 1) + 1].mean(axis=0)  # the epochs every seed has
    tau, p = mann_kendall_hamed_rao(mean_window, acf_alpha=settings.alpha)
    start, end = float(fit.start.mean()), float(fit.end.mean())
    epoch0 = float(y[:, 0].mean())
    stats_: dict[str, Any] = dict(
        start=start,
        start_sd=_sd(fit.start),
        end=end,
        end_sd=_sd(fit.end),
        start_per_seed=[float(v) for v in fit.start],
        end_per_seed=[float(v) for v in fit.end],
        rel_change=fit.estimate,
        ci=(fit.low, fit.high),
        p_value=p,
        tau=tau,
        theil_sen=theil_sen(mean_window),
        whole_run_change=(end - epoch0) / abs(epoch0) if epoch0 != 0 else None,
    )
    progress, at_floor = _floor_position(epoch0, end, floor_value, settings.floor_tolerance)
    stats_.update(progress=progress, at_floor=at_floor)
    if not math.isfinite(fit.estimate):
        stats_.update(seed_agreement=None, state=None)
        return _finish(
            base, stats_, Verdict.INCONCLUSIVE, "relative change undefined: the start level is 0", settings
        )

    verdict, reason, agreement = _classify(fit, p, settings)
    stats_["seed_agreement"] = agreement
    stats_["state"] = _state(verdict, at_floor)
    return _finish(base, stats_, verdict, reason, settings)


# ---------------------------------------------------------------------------------------------------------
# Private helpers


@dataclass(frozen=True)
class _Fit:
    estimate: float
    low: float
    high: float
    start: np.ndarray  # (S,) per-seed start level
    end: np.ndarray  # (S,) per-seed end level
    per_seed: np.ndarray  # (S,) per-seed relative change


def _bootstrap(
    curves: np.ndarray | Sequence[np.ndarray],
    window: tuple[int, int],
    *,
    n_boot: int,
    confidence: float,
    block_length: int | None,
    seed: int,
    extend: bool = False,
) -> _Fit:
    """The fit and interval behind :func:`hierarchical_bootstrap_rel_change` (see there).

    With ``extend``, a curve that ends before the window's last epoch is fitted on the epochs it has (from
    the window's first) and its line is extended to the last; without, that is an error. Seeds are grouped
    by the length they are fitted on; with one group (every seed over the whole window) the computation,
    random draws included, is that of a single fit over every seed.
    """
    ys = [np.asarray(c, dtype=float) for c in curves]
    if not ys or any(y.ndim != 1 for y in ys):
        shape = getattr(curves, "shape", (len(ys),))
        raise ValueError(f"curves must be (seeds, epochs) with at least one seed, got shape {shape}")
    first, last = window
    ends = [min(last, y.size - 1) for y in ys]
    if not 0 <= first < last:
        raise ValueError(f"window {window} is not (first, last) with 0 <= first < last")
    if not extend and min(ends) < last:
        raise ValueError(f"window {window} does not fit {min(y.size for y in ys)} epochs")
    if any(e - first < 1 for e in ends):
        raise ValueError(f"window {window} leaves fewer than 2 epochs of a curve with {min(map(len, ys))}")
    groups: dict[int, list[int]] = {}
    for i, e in enumerate(ends):
        groups.setdefault(e, []).append(i)
    n_seeds = len(ys)
    a, b = np.empty(n_seeds), np.empty(n_seeds)
    off_start, off_end = np.empty(n_seeds), np.empty(n_seeds)  # window's first / last epoch - seed's centre
    fits = []
    for end, members in groups.items():
        w = np.stack([ys[i][first : end + 1] for i in members])  # (S_g, L_g)
        if not np.all(np.isfinite(w)):
            raise ValueError("curves must be finite inside the window")
        length = w.shape[1]
        tc = np.arange(length, dtype=float) - (length - 1) / 2.0  # centred epoch index
        a_g = w.mean(axis=1)
        b_g = w @ tc / float(tc @ tc)
        resid = w - a_g[:, None] - b_g[:, None] * tc
        a[members], b[members] = a_g, b_g
        off_start[members], off_end[members] = tc[0], tc[0] + (last - first)
        fits.append((members, resid, tc))
    start, end_level = a + b * off_start, a + b * off_end
    per_seed = _rel(start, end_level)
    estimate = float(_rel(start.mean(), end_level.mean()))
    if not math.isfinite(estimate):
        return _Fit(estimate, estimate, estimate, start, end_level, per_seed)

    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # (B, S) seeds drawn with replacement
    da, db = np.zeros((n_boot, n_seeds)), np.zeros((n_boot, n_seeds))
    for members, resid, tc in fits:  # line shifts from resampled residuals, per group of equal length
        blk = block_length if block_length is not None else _auto_block_length(resid)
        blk = max(1, min(blk, tc.size))
        local = np.zeros(n_seeds, dtype=pick.dtype)  # seed -> its row in the group (one group: identity)
        local[members] = np.arange(len(members))
        da_g, db_g = _block_resample_fit(resid, tc, blk, local[pick], rng)
        mine = np.isin(pick, members)
        da, db = np.where(mine, da_g, da), np.where(mine, db_g, db)
    a_star, b_star = a[pick] + da, b[pick] + db  # (B, S)
    s_star = (a_star + b_star * off_start[pick]).mean(axis=1)
    e_star = (a_star + b_star * off_end[pick]).mean(axis=1)
    reps = _rel(s_star, e_star)  # (B,)
    reps = reps[np.isfinite(reps)]
    q = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(reps, [q, 1.0 - q])
    return _Fit(estimate, float(lo), float(hi), start, end_level, per_seed)


def _block_resample_fit(
    resid: np.ndarray, tc: np.ndarray, blk: int, pick: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares intercept and slope of moving-block resamples of the residuals of the drawn seeds.

    Equivalent to gathering ``(B, S, L)`` resampled series and refitting, but works on per-block sums: a
    block starting at residual position ``p`` and placed at slot ``k`` adds ``R[p]`` to the sum and
    ``tc[k * blk] * R[p] + J[p]`` to the time-weighted sum, with ``R`` the block's sum and ``J`` its
    within-block index-weighted sum (the last slot holds a truncated block when ``blk`` does not divide
    ``L``).

    Args:
        resid: ``(S, L)`` residuals of each seed's line.
        tc: ``(L,)`` centred epoch index.
        blk: Block length.
        pick: ``(B, N)`` drawn seed indices (rows of ``resid``).
        rng: Generator for block positions.

    Returns:
        ``(da, db)``, each ``(B, N)``.
    """
    n_seeds, length = resid.shape
    n_boot, n_slots = pick.shape
    n_pos = length - blk + 1
    n_blocks = -(-length // blk)
    last = length - (n_blocks - 1) * blk  # length of the last (possibly truncated) block
    win = np.lib.stride_tricks.sliding_window_view(resid, blk, axis=1)  # (S, P, blk)
    j = np.arange(blk, dtype=float)
    r_tab = np.stack([win.sum(-1), win[..., :last].sum(-1)])  # (2, S, P): full blocks, last block
    j_tab = np.stack([win @ j, win[..., :last] @ j[:last]])  # (2, S, P)
    starts = rng.integers(0, n_pos, size=(n_boot, n_slots, n_blocks), dtype=np.uint16)  # (B, S, K)
    is_last = np.zeros(n_blocks, dtype=np.int32)
    is_last[-1] = n_seeds * n_pos
    flat = is_last + (pick.astype(np.int32) * n_pos)[..., None] + starts  # (B, S, K) into the tables
    r_g = r_tab.ravel()[flat]
    offsets = tc[np.arange(n_blocks) * blk]  # (K,) centred index of each slot's first epoch
    da = r_g.sum(-1) / length
    db = r_g.reshape(-1, n_blocks) @ offsets
    if blk > 1:
        db += j_tab.ravel()[flat].sum(-1).ravel()
    db = db.reshape(n_boot, n_slots) / float(tc @ tc)
    return da, db


def _auto_block_length(resid: np.ndarray) -> int:
    """Moving-block length from the pooled lag-1 autocorrelation of the residuals (AR(1) rule of thumb)."""
    length = resid.shape[1]
    if length < 4:
        return 1
    num = float(np.sum(resid[:, 1:] * resid[:, :-1]))
    den = float(np.sum(resid * resid))
    if den <= 0:
        return 1
    # The lag-1 autocorrelation of OLS residuals is biased low by about (1 + 3 rho) / L; undo it roughly.
    rho = num / den
    rho = min(0.95, max(0.0, rho + (1.0 + 3.0 * max(rho, 0.0)) / length))
    if rho <= 0.0:
        return 1
    blk = (1.5 ** (1.0 / 3.0)) * (2.0 * rho / (1.0 - rho * rho)) ** (2.0 / 3.0) * length ** (1.0 / 3.0)
    return int(max(1, min(length // 2, math.ceil(blk))))


def _hamed_rao_factor(y: np.ndarray, acf_alpha: float) -> float:
    n = y.size
    if n < 4:
        return 1.0
    resid = y - theil_sen(y) * np.arange(n)
    ranks = stats.rankdata(resid)
    centred = ranks - ranks.mean()
    den = float(centred @ centred)
    if den <= 0:
        return 1.0
    lags = np.arange(1, n - 1)
    acf = np.array([float(centred[:-k] @ centred[k:]) / den for k in lags])
    bound = stats.norm.ppf(1.0 - acf_alpha / 2.0) / math.sqrt(n)
    sig = np.abs(acf) > bound
    weights = (n - lags) * (n - lags - 1.0) * (n - lags - 2.0)
    factor = 1.0 + 2.0 / (n * (n - 1.0) * (n - 2.0)) * float(np.sum(weights[sig] * acf[sig]))
    # In short series, lags that look significantly negative are mostly chance; never let them make the test
    # more liberal than the uncorrected one.
    return max(1.0, factor)


def _classify(fit: _Fit, p: float, settings: VerdictSettings) -> tuple[Verdict, str, float]:
    """Verdict, reason and seed agreement (fraction of seeds whose own change reads the same way)."""
    m = settings.min_change
    low, high, est = fit.low, fit.high, fit.estimate
    per_seed = fit.per_seed
    n = per_seed.size
    interval = f"{est:+.1%} [{low:+.1%}, {high:+.1%}]"
    if high < -m or low > m:
        falling = high < -m
        agree = int(np.sum(per_seed <= -m)) if falling else int(np.sum(per_seed >= m))
        frac = agree / n
        word = "fall" if falling else "rise"
        if frac < settings.seed_agreement:
            return (
                Verdict.INCONCLUSIVE,
                f"seeds disagree: {interval} but only {agree}/{n} seeds {word} by >= {m:.0%}",
                frac,
            )
        if settings.require_trend and p >= settings.alpha:
            return (
                Verdict.INCONCLUSIVE,
                f"too noisy: {interval} but the trend test is not significant (p={p:.3g})",
                frac,
            )
        verdict = Verdict.FALLS if falling else Verdict.RISES
        return verdict, f"{word}s {interval} over the window; {agree}/{n} seeds agree, trend p={p:.3g}", frac
    if -m < low and high < m:
        inside = int(np.sum(np.abs(per_seed) < m))
        return Verdict.FLAT, f"flat: {interval} lies within +/-{m:.0%}; {inside}/{n} seeds within", inside / n
    same = int(np.sum(per_seed <= -m)) if est < 0 else int(np.sum(per_seed >= m))
    if high - low > 2 * m:
        why = "too noisy"
    else:
        why = "borderline"
    return (
        Verdict.INCONCLUSIVE,
        f"{why}: {interval} straddles +/-{m:.0%} (more seeds or epochs would tell)",
        same / n,
    )


def _state(verdict: Verdict, at_floor: bool | None) -> str | None:
    if verdict == Verdict.FLAT:
        return None if at_floor is None else ("converged" if at_floor else "stalled")
    if verdict == Verdict.FALLS:
        return None if at_floor is None else ("converged" if at_floor else "approaching")
    return None


def _floor(floor: float | None, finals: Mapping[str, np.ndarray], floor_metric: str | None) -> float | None:
    if floor is not None:
        return float(floor) if math.isfinite(floor) else None
    if floor_metric is not None and floor_metric in finals:
        return _finite_mean(finals[floor_metric])
    return None


def _floor_position(
    epoch0: float, end: float, floor: float | None, tolerance: float
) -> tuple[float | None, bool | None]:
    if floor is None:
        return None, None
    scale = abs(floor) if abs(floor) > 1e-12 else abs(epoch0)
    at_floor = end - floor <= tolerance * scale
    gap = epoch0 - floor
    progress = (epoch0 - end) / gap if gap > 1e-12 else None
    return progress, bool(at_floor)


def _evaluate_guards(guards: Sequence[Guard], finals: Mapping[str, np.ndarray]) -> list[GuardResult]:
    out = []
    for g in guards:
        value = _finite_mean(finals[g.metric]) if g.metric in finals else None
        holds = None
        if value is not None:
            holds = (g.min is None or value >= g.min) and (g.max is None or value <= g.max)
        out.append(GuardResult(g.metric, g.min, g.max, value, holds))
    return out


def _outcomes(
    verdict: Verdict,
    at_floor: bool | None,
    progress: float | None,
    guards: Sequence[GuardResult],
    partial_progress: float,
) -> tuple[bool | None, bool | None, bool | None]:
    """Three-valued (True / False / None = cannot tell) pass, partial and fail predicates."""
    holds = [g.holds for g in guards]
    guards_ok: bool | None = False if False in holds else (None if None in holds else True)
    if guards_ok is False or verdict in (Verdict.DIVERGED, Verdict.RISES):
        return False, False, True
    if verdict == Verdict.INCONCLUSIVE:
        return None, None, None
    if verdict == Verdict.FLAT:
        trend_pass: bool | None = at_floor
        trend_partial: bool | None = False
    else:  # falls
        trend_pass = True
        trend_partial = None if progress is None else progress < partial_progress
    passes = _and(trend_pass, guards_ok)
    partial = _and(trend_partial, guards_ok)
    if passes is True or partial is True:
        fails: bool | None = False
    elif passes is False and partial is False:
        fails = True
    else:
        fails = None
    return passes, partial, fails


def _and(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _finish(
    base: dict[str, Any], stats_: dict[str, Any], verdict: Verdict, reason: str, settings: VerdictSettings
) -> CellVerdict:
    failed = [g for g in base["guards"] if g.holds is False]
    if failed:
        names = ", ".join(f"{g.metric}={g.value:.4g} (needs {_guard_text(g)})" for g in failed)
        reason = f"{reason}; guard fails: {names}"
    if verdict in (Verdict.FLAT, Verdict.FALLS) and stats_.get("state") is not None:
        reason = f"{reason}; {stats_['state']} (progress {_pct(stats_.get('progress'))} toward floor)"
    elif verdict == Verdict.FLAT and base["floor"] is None:
        reason = f"{reason}; floor unknown: converged or stalled cannot be told"
    passes, partial, fails = _outcomes(
        verdict, stats_.get("at_floor"), stats_.get("progress"), base["guards"], settings.partial_progress
    )
    observed = "partial" if partial else "pass" if passes else "fail" if fails else None
    expect = base["expected"]
    agrees = None if expect is None else {"pass": passes, "partial": partial, "fail": fails}[expect]
    return CellVerdict(**base, **stats_, verdict=verdict, reason=reason, observed=observed, agrees=agrees)


def _guard_text(g: GuardResult) -> str:
    if g.min is not None and g.max is not None:
        return f"{g.min:g}..{g.max:g}"
    return f">={g.min:g}" if g.min is not None else f"<={g.max:g}"


def _rel(start: Any, end: Any) -> Any:
    start = np.asarray(start, dtype=float)
    end = np.asarray(end, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(start != 0, (end - start) / np.abs(start), np.nan)
    return out if out.ndim else float(out)


def _sd(v: np.ndarray) -> float | None:
    return float(np.std(v, ddof=1)) if v.size > 1 else None


def _finite_mean(v: np.ndarray) -> float | None:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)
