"""Trend verdicts: does a cell's metric really fall after the warm-up?

Pure functions over per-epoch curves (numpy/scipy only). A cell is judged over its seeds on the
analysis window, the epochs after the warm-up, so that a loss that drops once in the first epoch (the
decoder learning the mean image) and then stays flat reads as ``flat``, not as ``falls``. The drop over
the whole run (epoch 0 to the end) is reported beside the verdict, never in its place.

The method, its calibration and the measured error rates are in ``docs/verdicts.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.verdict.outcome import evaluate_guards, finite_mean, guard_text, outcomes
from orchestrator.verdict.result import CellVerdict
from orchestrator.verdict.settings import NEEDS_CLEAN_IMAGES, Guard, Verdict, VerdictSettings
from orchestrator.verdict.stats import Fit, fit_window, lower_bound, mann_kendall_hamed_rao, theil_sen


@dataclass
class CellData:
    """One cell's runs, as the verdict judges them (and a report draws them).

    Attributes:
        name: Cell name.
        axes: The cell's axis values, copied into the verdict.
        expect: The matrix's expectation for the cell (``pass`` / ``fail`` / ``partial``), if any.
        guards: Guards of this cell, in addition to the settings' own.
        seeds: Seed ids of ``curves`` (empty: 0, 1, ...).
        curves: One curve per finished seed, index = epoch (epoch 0 included). A curve with NaN/Inf is a
            diverged seed. Lengths may differ: without ``planned_epochs`` the common prefix is judged and a
            note says so.
        finals: Metric name -> final-epoch value per seed, for guards and the report (e.g. ``noise_leak``).
        floor: Attainable floor of the metric (e.g. clean target against noisy target on the validation
            pairs). None: taken from ``finals[settings.floor_metric]`` when present, else unknown.
        baseline: The metric's constant-prediction level (what a model gets for free). None: taken from
            ``finals[settings.baseline_name()]`` when present, else unknown.
        diverged: Runs that went NaN/Inf and have no curve here (counted as diverged seeds).
        crashed: Runs that failed for other reasons (counted in ``seeds_failed`` only).
        missing: Runs of the matrix not in the store (not judged).
        run_ids: The MLflow runs of ``curves``.
        config: The cell's flat resolved config (``"data.size": 32``) or a foreign run's params, for the
            report's context (not judged).
        planned_epochs: The runs' budget in recorded epochs (epoch 0 included), set when some runs stopped
            early (``budget.early_stop``). The window is then the budget's, and each shorter curve's line over
            its own window epochs is extended to the budget's last epoch (its interval widens accordingly),
            so that the verdict is about the same span as the full budget's rather than about the shorter
            one, on which a steady change reads smaller. An extended line never goes below what the metric
            can be (:func:`~orchestrator.verdict.stats.lower_bound`), a ``falls`` or ``rises`` must already
            show in the epochs the seeds measured (else the cell is ``inconclusive``), and the floor and
            baseline are read against the measured end level. The trend test (p-value, Theil-Sen slope)
            covers the window epochs every seed has.
    """

    name: str
    axes: dict[str, Any] = field(default_factory=dict)
    expect: str | None = None
    guards: tuple[Guard, ...] = ()
    seeds: list[int] = field(default_factory=list)
    curves: list[np.ndarray] = field(default_factory=list)
    finals: dict[str, list[float]] = field(default_factory=dict)
    diverged: int = 0
    crashed: int = 0
    missing: int = 0
    run_ids: list[str] = field(default_factory=list)
    planned_epochs: int | None = None
    floor: float | None = None
    baseline: float | None = None
    config: dict[str, Any] = field(default_factory=dict)  # flat resolved config ("data.size": 32) or params


def judge_cell(cell: CellData, settings: VerdictSettings) -> CellVerdict:
    """Judge one cell: does ``settings.metric`` fall over the analysis window, over the cell's seeds?

    Args:
        cell: The cell's curves, seeds, final values and expectation (:class:`CellData`).
        settings: The matrix's verdict settings.

    Returns:
        The cell's verdict.
    """
    if cell.diverged < 0 or cell.crashed < 0:
        raise ValueError("diverged and crashed seed counts must be >= 0")
    raw = [np.asarray(c, dtype=float).ravel() for c in cell.curves]
    seed_ids = list(cell.seeds) if cell.seeds else list(range(len(raw)))
    if len(seed_ids) != len(raw):
        raise ValueError(f"{len(seed_ids)} seed ids for {len(raw)} curves")
    finals = {k: np.asarray(v, dtype=float).ravel() for k, v in cell.finals.items()}

    bad = [i for i, c in enumerate(raw) if not np.all(np.isfinite(c))]
    good = [i for i in range(len(raw)) if i not in bad]
    n_diverged, n_total = len(bad) + cell.diverged, len(raw) + cell.diverged
    notes = [f"{n_diverged} of {n_total} seeds diverged (NaN/Inf)"] if n_diverged else []
    span = _span([raw[i] for i in good], cell.planned_epochs, settings, notes)
    floor_value = _from_finals(cell.floor, finals, settings.floor_metric)
    baseline_value = _from_finals(cell.baseline, finals, settings.baseline_name())
    base: dict[str, Any] = dict(
        cell=cell.name,
        metric=settings.metric,
        axes=dict(cell.axes),
        seeds=[seed_ids[i] for i in good],
        seeds_failed=n_diverged + cell.crashed,
        seeds_diverged=[seed_ids[i] for i in bad],
        epochs=span.epochs,
        warmup=span.warmup,
        window=span.window,
        confidence=settings.confidence,
        guards=evaluate_guards([*settings.guards, *cell.guards], finals),
        finals={k: finite_mean(v) for k, v in finals.items()},
        floor=floor_value,
        baseline=baseline_value,
        expected=cell.expect,
        notes=notes,
    )
    refusal = _refusal(len(good), n_diverged, n_total, span, settings)
    if refusal is not None:
        seen = (
            _measured_only(span, floor_value, baseline_value, settings)
            if refusal[0] is Verdict.INCONCLUSIVE
            else None
        )
        if seen is None:
            return _finish(base, dict(_EMPTY), *refusal, settings)
        return _finish(base, seen, Verdict.INCONCLUSIVE, f"{refusal[1]}; {_measured_text(seen)}", settings)

    fit, measured, stats_ = _trend(span, floor_value, baseline_value, settings)
    if not math.isfinite(fit.estimate):
        stats_.update(seed_agreement=None, state=None)
        return _finish(
            base, stats_, Verdict.INCONCLUSIVE, "relative change undefined: the start level is 0", settings
        )
    verdict, reason, agreement = _classify(fit, stats_["p_value"], settings)
    if measured is not None and verdict in (Verdict.FALLS, Verdict.RISES):
        verdict, reason = _as_measured(verdict, reason, measured, settings)
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
    vs_baseline=None,
    beats_baseline=None,
    level=None,
    measured=None,
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
    warmup = settings.warmup_of(epochs)
    window = (warmup, epochs - 1) if epochs - warmup >= 1 else None  # shown even when too short to judge
    return _Span(curves, common, epochs, extend, warmup, window)


def _refusal(
    n_good: int, n_diverged: int, n_total: int, span: _Span, settings: VerdictSettings
) -> tuple[Verdict, str] | None:
    """Why the cell cannot be judged on its trend (too few seeds or epochs, or diverged), or None."""
    if n_total == 0:
        return Verdict.INCONCLUSIVE, "too few seeds: no finished runs"
    if settings.too_many_diverged(n_diverged, n_total):
        return Verdict.DIVERGED, f"{n_diverged} of {n_total} seeds went NaN/Inf in {settings.metric}"
    if n_good < settings.min_seeds:
        extra = f" ({n_diverged} diverged)" if n_diverged else ""
        return Verdict.INCONCLUSIVE, f"too few seeds: {n_good} usable{extra}, need {settings.min_seeds}"
    window, warmup = span.window, span.warmup
    if settings.window(span.epochs) is None:
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


#: What a cell too small to judge (too few seeds or window epochs) still reports as measured: its levels,
#: their change over the window and where it ends against the constant; no interval, trend test or
#: reading of them (``undecided``).
_MEASURED = ("start", "start_sd", "end", "end_sd", "start_per_seed", "end_per_seed", "rel_change")
_MEASURED += ("whole_run_change", "progress", "vs_baseline")


def _measured_only(
    span: _Span, floor: float | None, baseline: float | None, settings: VerdictSettings
) -> dict[str, Any] | None:
    """The trend fields of a cell that cannot be judged, with what its seeds measured filled in: over a
    window of two epochs or more its levels and their change, else (a run shorter than the warm-up) the
    last epoch's level; None when there is nothing to measure (no usable seed, seeds that stopped early)."""
    if not span.curves or span.extend or span.common < 1:
        return None
    if span.window is not None and span.window[1] - span.window[0] >= 1:
        try:
            _, _, stats_ = _trend(span, floor, baseline, settings)
        except ValueError:
            return None
        if stats_["rel_change"] is None or not math.isfinite(stats_["rel_change"]):
            return None
        return {**_EMPTY, **{k: stats_[k] for k in _MEASURED}, "undecided": True}
    y = span.y  # (S, common): no window to fit a line over; the last epoch every seed has
    last, epoch0 = y[:, -1], float(y[:, 0].mean())
    end = float(last.mean())
    seen = dict(end=end, end_sd=_sd(last), end_per_seed=[float(v) for v in last], undecided=True)
    seen["whole_run_change"] = (end - epoch0) / abs(epoch0) if epoch0 != 0 and y.shape[1] > 1 else None
    seen["vs_baseline"] = _baseline_position(end, baseline, settings.min_change)[0]
    return {**_EMPTY, **seen}


def _measured_text(seen: dict[str, Any]) -> str:
    """What an undecided cell measured, in words."""
    if seen["rel_change"] is None:
        text = f"measured, not enough to decide: ending at {seen['end']:.3g}"
    else:
        text = (
            f"measured, not enough to decide: {seen['rel_change']:+.1%} over the window "
            f"({seen['start']:.3g} to {seen['end']:.3g})"
        )
    if seen["vs_baseline"] is not None:
        text += f"{', ' if seen['rel_change'] is None else ', ending '}{seen['vs_baseline']:+.0%}"
        text += " against the constant prediction"
    return text


def _trend(
    span: _Span, floor: float | None, baseline: float | None, settings: VerdictSettings
) -> tuple[Fit, Fit | None, dict[str, Any]]:
    """The window's fit, the fit of what early-stopped seeds measured (None without early stops), and the
    verdict's trend fields (levels, change and interval, trend test, floor, baseline)."""
    assert span.window is not None
    y = span.y
    first, last = span.window
    fit_args = settings.fit_options()
    if span.extend:
        lower = lower_bound(span.curves, floor)
        fit = fit_window(span.curves, span.window, extend=True, lower=lower, **fit_args)
        measured: Fit | None = fit_window(span.curves, span.window, own_ends=True, **fit_args)
    else:
        fit, measured = fit_window(y, span.window, **fit_args), None
    mean_window = y[:, first : min(last, span.common - 1) + 1].mean(axis=0)  # the epochs every seed has
    tau, p = mann_kendall_hamed_rao(mean_window, acf_alpha=settings.alpha)
    start, end = float(fit.start.mean()), float(fit.end.mean())
    seen_end = float(measured.end.mean()) if measured is not None else end  # the level the seeds reached
    epoch0 = float(y[:, 0].mean())
    progress, at_floor = _floor_position(epoch0, seen_end, floor, settings.floor_tolerance)
    vs_baseline, beats, level = _baseline_position(seen_end, baseline, settings.min_change)
    return (
        fit,
        measured,
        dict(
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
            vs_baseline=vs_baseline,
            beats_baseline=beats,
            level=level,
            measured=None
            if measured is None
            else {
                "window": [first, max(len(c) for c in span.curves) - 1],
                "last_epochs": [len(c) - 1 for c in span.curves],
                "end": seen_end,
                "rel_change": measured.estimate,
                "ci": [measured.low, measured.high],
            },
        ),
    )


def _baseline_position(
    end: float, baseline: float | None, margin: float
) -> tuple[float | None, bool | None, str | None]:
    """Where the end level sits against the constant-prediction baseline: relative position, whether it is
    clearly below (by more than ``margin``), and the phrase the verdict uses."""
    if baseline is None or not baseline > 0:
        return None, None, None
    rel = end / baseline - 1.0
    levels = f"{end:.3g} vs {baseline:.3g}"
    if rel < -margin:
        below = f"{-rel:.0%} below the constant-prediction level ({levels})"
        return rel, True, f"{below}: learns beyond a fixed image"
    if rel <= margin:
        return rel, False, f"at the constant-prediction level ({levels}): no better than a fixed image"
    return rel, False, f"above the constant-prediction level ({levels}, {rel:+.0%}): worse than a fixed image"


def _as_measured(
    verdict: Verdict, reason: str, measured: Fit, settings: VerdictSettings
) -> tuple[Verdict, str]:
    """A cell whose seeds stopped early reads ``falls`` / ``rises`` only if what they measured shows it."""
    m = settings.min_change
    shown = measured.high < -m if verdict is Verdict.FALLS else measured.low > m
    if shown:
        return verdict, reason
    interval = f"{measured.estimate:+.1%} [{measured.low:+.1%}, {measured.high:+.1%}]"
    word = "fall" if verdict is Verdict.FALLS else "rise"
    return Verdict.INCONCLUSIVE, (
        f"stopped early: the {word} ({reason}) rests on the extension; the epochs measured show {interval}, "
        f"not beyond +/-{m:.0%}"
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


def _from_finals(value: float | None, finals: Mapping[str, np.ndarray], metric: str | None) -> float | None:
    """``value`` when given (and finite), else the mean of ``finals[metric]`` when logged, else None."""
    if value is not None:
        return float(value) if math.isfinite(value) else None
    if metric is not None and metric in finals:
        return finite_mean(finals[metric])
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


def _finish(
    base: dict[str, Any], stats_: dict[str, Any], verdict: Verdict, reason: str, settings: VerdictSettings
) -> CellVerdict:
    failed = [g for g in base["guards"] if g.holds is False]
    if failed:
        names = ", ".join(f"{g.metric}={g.value:.4g} (needs {guard_text(g)})" for g in failed)
        reason = f"{reason}; guard fails: {names}"
    if verdict in (Verdict.FLAT, Verdict.FALLS) and stats_.get("state") is not None:
        reason = f"{reason}; {stats_['state']} (progress {_pct(stats_.get('progress'))} toward floor)"
    elif verdict == Verdict.FLAT and base["floor"] is None:
        reason = f"{reason}; floor unknown: converged or stalled cannot be told"
    if stats_.get("level"):
        only = verdict is Verdict.FALLS and stats_.get("beats_baseline") is False
        reason = f"{reason}; {'but only ' if only else ''}ends {stats_['level']}"
    notes = base["notes"]
    for g in base["guards"]:
        if g.holds is None:
            why = " (the data has no clean images)" if g.metric in NEEDS_CLEAN_IMAGES else ""
            notes.append(f"guard {g.metric}: not judged, no run logged it{why}; a pass cannot be confirmed")
    measured = stats_.get("measured")
    if measured:
        lo, hi = measured["ci"]
        notes.append(
            f"measured before the early stops (from epoch {measured['window'][0]} to each seed's last, "
            f"{', '.join(map(str, measured['last_epochs']))}): {measured['rel_change']:+.1%} "
            f"[{lo:+.1%}, {hi:+.1%}], ending at {measured['end']:.3g}"
        )
    passes, partial, fails = outcomes(verdict, stats_, base["guards"], settings.partial_progress)
    observed = "partial" if partial else "pass" if passes else "fail" if fails else None
    expect = base["expected"]
    agrees = None if expect is None else {"pass": passes, "partial": partial, "fail": fails}[expect]
    return CellVerdict(**base, **stats_, verdict=verdict, reason=reason, observed=observed, agrees=agrees)


def _sd(v: np.ndarray) -> float | None:
    return float(np.std(v, ddof=1)) if v.size > 1 else None


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"
