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
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.verdict.result import CellVerdict, GuardResult
from orchestrator.verdict.settings import Expectation, Guard, Verdict, VerdictSettings
from orchestrator.verdict.stats import Fit, default_warmup, fit_window, mann_kendall_hamed_rao, theil_sen

__all__ = ["judge_cell"]


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

    bad = [i for i, c in enumerate(raw) if not np.all(np.isfinite(c))]
    good = [i for i in range(len(raw)) if i not in bad]
    n_diverged, n_total = len(bad) + diverged_seeds, len(raw) + diverged_seeds
    notes = [f"{n_diverged} of {n_total} seeds diverged (NaN/Inf)"] if n_diverged else []
    span = _span([raw[i] for i in good], planned_epochs, settings, notes)
    floor_value = _floor(floor, finals, settings.floor_metric)
    base: dict[str, Any] = dict(
        cell=name,
        metric=settings.metric,
        axes=dict(axes or {}),
        seeds=[seed_ids[i] for i in good],
        seeds_failed=n_diverged + crashed_seeds,
        seeds_diverged=[seed_ids[i] for i in bad],
        epochs=span.epochs,
        warmup=span.warmup,
        window=span.window,
        confidence=settings.confidence,
        guards=_evaluate_guards([*settings.guards, *cell_guards], finals),
        finals={k: _finite_mean(v) for k, v in finals.items()},
        floor=floor_value,
        expected=expect,
        notes=notes,
    )
    refusal = _refusal(len(good), n_diverged, n_total, span, settings)
    if refusal is not None:
        return _finish(base, dict(_EMPTY), *refusal, settings)

    fit, stats_ = _trend(span, floor_value, settings)
    if not math.isfinite(fit.estimate):
        stats_.update(seed_agreement=None, state=None)
        return _finish(
            base, stats_, Verdict.INCONCLUSIVE, "relative change undefined: the start level is 0", settings
        )
    verdict, reason, agreement = _classify(fit, stats_["p_value"], settings)
    stats_["seed_agreement"] = agreement
    stats_["state"] = _state(verdict, stats_["at_floor"])
    return _finish(base, stats_, verdict, reason, settings)


#: The trend fields of a verdict that could not be judged.
_EMPTY: dict[str, Any] = dict(
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


@dataclass(frozen=True)
class _Span:
    """The epochs a cell is judged over.

    Attributes:
        curves: the usable seeds' curves (finite), of their own lengths.
        common: epochs every usable seed has.
        epochs: epochs judged: the common ones, or the budget's when seeds stopped early (``extend``).
        extend: seeds stopped early and their lines are extended to the budget's last epoch.
        warmup: epochs left out at the start.
        window: (first, last) epoch of the analysis window, or None when nothing is left after the warm-up.
    """

    curves: list[np.ndarray]
    common: int
    epochs: int
    extend: bool
    warmup: int
    window: tuple[int, int] | None

    @property
    def y(self) -> np.ndarray:
        """(S, common): the epochs every seed has."""
        return np.stack([c[: self.common] for c in self.curves]) if self.curves else np.empty((0, 0))


def _span(
    curves: list[np.ndarray], planned_epochs: int | None, settings: VerdictSettings, notes: list[str]
) -> _Span:
    """Which epochs to judge; says in ``notes`` when seeds stopped early or have different lengths."""
    lengths = [c.size for c in curves]
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
    warmup = settings.warmup if settings.warmup is not None else default_warmup(epochs)
    window = (warmup, epochs - 1) if epochs - warmup >= 1 else None
    return _Span(curves, common, epochs, extend, warmup, window)


def _refusal(
    n_good: int, n_diverged: int, n_total: int, span: _Span, settings: VerdictSettings
) -> tuple[Verdict, str] | None:
    """Why the cell cannot be judged on its trend (too few seeds or epochs, or diverged), or None."""
    if n_total == 0:
        return Verdict.INCONCLUSIVE, "too few seeds: no finished runs"
    if n_diverged and n_diverged >= settings.diverged_fraction * n_total:
        return Verdict.DIVERGED, f"{n_diverged} of {n_total} seeds went NaN/Inf in {settings.metric}"
    if n_good < settings.min_seeds:
        extra = f" ({n_diverged} diverged)" if n_diverged else ""
        return Verdict.INCONCLUSIVE, f"too few seeds: {n_good} usable{extra}, need {settings.min_seeds}"
    window, warmup = span.window, span.warmup
    if window is None or window[1] - window[0] + 1 < settings.min_window:
        have = 0 if window is None else window[1] - window[0] + 1
        return Verdict.INCONCLUSIVE, (
            f"too short: {span.epochs} epochs leave {have} after a warm-up of {warmup}, "
            f"need {settings.min_window}"
        )
    own = span.common - warmup  # window epochs of the shortest curve (all of the window without early stops)
    if span.extend and own < settings.min_window:
        return Verdict.INCONCLUSIVE, (
            f"too short: a seed stopped after epoch {span.common - 1}, {max(own, 0)} epochs after a warm-up "
            f"of {warmup}, need {settings.min_window}"
        )
    return None


def _trend(span: _Span, floor: float | None, settings: VerdictSettings) -> tuple[Fit, dict[str, Any]]:
    """The window's fit and the verdict's trend fields (levels, change and interval, trend test, floor)."""
    assert span.window is not None
    y = span.y
    fit = fit_window(
        span.curves if span.extend else y,
        span.window,
        n_boot=settings.n_boot,
        confidence=settings.confidence,
        block_length=settings.block_length,
        seed=settings.bootstrap_seed,
        extend=span.extend,
    )
    first, last = span.window
    mean_window = y[:, first : min(last, span.common - 1) + 1].mean(axis=0)  # the epochs every seed has
    tau, p = mann_kendall_hamed_rao(mean_window, acf_alpha=settings.alpha)
    start, end = float(fit.start.mean()), float(fit.end.mean())
    epoch0 = float(y[:, 0].mean())
    progress, at_floor = _floor_position(epoch0, end, floor, settings.floor_tolerance)
    return fit, dict(
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
        progress=progress,
        at_floor=at_floor,
    )


def _classify(fit: Fit, p: float, settings: VerdictSettings) -> tuple[Verdict, str, float]:
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


def _sd(v: np.ndarray) -> float | None:
    return float(np.std(v, ddof=1)) if v.size > 1 else None


def _finite_mean(v: np.ndarray) -> float | None:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"
