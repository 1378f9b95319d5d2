"""The statistics behind a verdict: Theil-Sen, Mann-Kendall (Hamed-Rao), the hierarchical bootstrap of the
relative change over the analysis window (:func:`fit_window`) and the level a line is never extended below
(:func:`lower_bound`). Pure numpy/scipy; docs/verdicts.md gives the method and its measured error rates."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# Building blocks


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
    return tau, float(min(1.0, 2.0 * normal_sf(abs(z))))


@dataclass(frozen=True)
class Fit:
    """A window's fit over a cell's seeds: the relative change (``estimate``) with its interval (``low``,
    ``high``, fractions: -0.25 is a 25% fall) and the per-seed levels behind it."""

    estimate: float
    low: float
    high: float
    start: np.ndarray  # (S,) per-seed start level
    end: np.ndarray  # (S,) per-seed end level
    per_seed: np.ndarray  # (S,) per-seed relative change


def fit_window(
    curves: np.ndarray | Sequence[np.ndarray],
    window: tuple[int, int],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    block_length: int | None = None,
    seed: int = 0,
    extend: bool = False,
    lower: float | None = None,
    own_ends: bool = False,
) -> Fit:
    """Relative change over a window with a hierarchical (seeds, then epoch blocks) bootstrap interval.

    Each seed's window is summarised by a least-squares line; its start and end levels are the line at the
    window's first and last epoch, and the cell's relative change is ``mean(end) / mean(start) - 1`` over
    seeds. A replicate resamples seeds with replacement, then rebuilds each drawn seed as its fitted line
    plus a moving-block resample of its residuals (so autocorrelated epochs stay together), and refits. The
    interval is the percentile interval of the replicates. Resampling at both levels counts the epoch noise
    twice (once inside each seed's estimate, once in the blocks), which offsets the too-narrow seed level of a
    bootstrap over 3-5 seeds; docs/verdicts.md gives the measured error rates.

    With ``extend``, a curve that ends before the window's last epoch (a run stopped early) is fitted on
    the epochs it has (from the window's first) and its line is extended to the last, so that its change is
    over the same span as the others' (and its interval widens with the extension); without, that is an
    error. Seeds are grouped by the length they are fitted on; with one group (every seed over the whole
    window) the computation, random draws included, is that of a single fit over every seed. With
    ``own_ends`` (what seeds that stopped early measured), curves may end before the window does and each
    seed's end level is its line at its own last epoch: no extension at all.

    Args:
        curves: Array-like ``(seeds, epochs)`` of finite values, equal lengths, epoch 0 first (with
            ``extend`` or ``own_ends``: a sequence of curves of any lengths that leave at least 2 window
            epochs).
        window: ``(first, last)`` epoch indices, inclusive.
        n_boot: Number of bootstrap replicates.
        confidence: Two-sided interval level.
        block_length: Moving-block length; None chooses it from the residuals' lag-1 autocorrelation.
        seed: Generator seed (deterministic results).
        extend: Extend the lines of curves that end before the window's last epoch (else an error).
        lower: What the metric can be at the least (:func:`lower_bound`): every end level, and every
            replicate's, is bounded by it, so that a line extended past a run's last epoch cannot promise a
            level no run could reach.
        own_ends: Each seed's end level at its own last epoch.

    Returns:
        The :class:`Fit`.
    """
    ys = [np.asarray(c, dtype=float) for c in curves]
    if not ys or any(y.ndim != 1 for y in ys):
        shape = getattr(curves, "shape", (len(ys),))
        raise ValueError(f"curves must be (seeds, epochs) with at least one seed, got shape {shape}")
    first, last = window
    ends = [min(last, y.size - 1) for y in ys]
    if not 0 <= first < last:
        raise ValueError(f"window {window} is not (first, last) with 0 <= first < last")
    if not (extend or own_ends) and min(ends) < last:
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
        off_start[members], off_end[members] = tc[0], tc[0] + ((end if own_ends else last) - first)
        fits.append((members, resid, tc))
    start, end_level = a + b * off_start, a + b * off_end
    if lower is not None:  # what the metric can be: a line is not extended past it
        end_level = np.maximum(end_level, lower)
    per_seed = _rel(start, end_level)
    estimate = float(_rel(start.mean(), end_level.mean()))
    if not math.isfinite(estimate):
        return Fit(estimate, estimate, estimate, start, end_level, per_seed)

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
    e_seed = a_star + b_star * off_end[pick]  # (B, S)
    e_star = (e_seed if lower is None else np.maximum(e_seed, lower)).mean(axis=1)
    reps = _rel(s_star, e_star)  # (B,)
    reps = reps[np.isfinite(reps)]
    q = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(reps, [q, 1.0 - q])
    return Fit(estimate, float(lo), float(hi), start, end_level, per_seed)


def lower_bound(curves: Sequence[Sequence[float]] | np.ndarray, floor: float | None = None) -> float | None:
    """What a metric can be at the least, for a line extended past its curves' last epochs: its ``floor``
    when known, else zero for a metric none of whose ``curves`` ever went below zero (a loss), else None (no
    bound)."""
    if floor is not None:
        return floor
    return 0.0 if all(float(np.min(c)) >= 0 for c in curves) else None


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
    ranks = rank_average(resid)
    centred = ranks - ranks.mean()
    den = float(centred @ centred)
    if den <= 0:
        return 1.0
    lags = np.arange(1, n - 1)
    acf = np.array([float(centred[:-k] @ centred[k:]) / den for k in lags])
    bound = statistics.NormalDist().inv_cdf(1.0 - acf_alpha / 2.0) / math.sqrt(n)
    sig = np.abs(acf) > bound
    weights = (n - lags) * (n - lags - 1.0) * (n - lags - 2.0)
    factor = 1.0 + 2.0 / (n * (n - 1.0) * (n - 2.0)) * float(np.sum(weights[sig] * acf[sig]))
    # In short series, lags that look significantly negative are mostly chance; never let them make the test
    # more liberal than the uncorrected one.
    return max(1.0, factor)


def normal_sf(z: float) -> float:
    """The standard normal's survival function, P(Z > z) (scipy's ``norm.sf``, without importing scipy:
    ``scipy.stats`` takes about a second to import)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def rank_average(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given the mean of their ranks (scipy's ``rankdata``, method ``average``)."""
    x = np.asarray(x).ravel()
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    dense = np.cumsum(starts)[np.argsort(order, kind="mergesort")]  # (n,) tie group of each value, from 1
    bounds = np.r_[np.flatnonzero(starts), x.size]  # where each group starts, and the end
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def _rel(start: Any, end: Any) -> Any:
    start = np.asarray(start, dtype=float)
    end = np.asarray(end, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(start != 0, (end - start) / np.abs(start), np.nan)
    return out if out.ndim else float(out)
