"""What a cell's verdict means for its expectation: its guards, and whether it passes, is partial or fails.

A verdict (:class:`~orchestrator.verdict.settings.Verdict`) says how the metric moved; the outcome says
what that is worth against the matrix's ``expect:`` (pass / partial / fail), with the guards on other
metrics and the constant-prediction baseline taken into account.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from orchestrator.verdict.result import GuardResult
from orchestrator.verdict.settings import Guard, Verdict


def evaluate_guards(guards: Sequence[Guard], finals: Mapping[str, np.ndarray]) -> list[GuardResult]:
    out = []
    for g in guards:
        value = finite_mean(finals[g.metric]) if g.metric in finals else None
        holds = None
        if value is not None:
            holds = (g.min is None or value >= g.min) and (g.max is None or value <= g.max)
        out.append(GuardResult(g.metric, g.min, g.max, value, holds))
    return out


def outcomes(
    verdict: Verdict,
    stats_: Mapping[str, Any],
    guards: Sequence[GuardResult],
    partial_progress: float,
) -> tuple[bool | None, bool | None, bool | None]:
    """Three-valued (True / False / None = cannot tell) pass, partial and fail predicates.

    A guard that could not be judged (its metric was never logged) leaves a pass unconfirmed (None). A
    trend passes only if it also ends below the constant-prediction baseline, where that is known:
    ``falls`` that ends at or above it is ``partial`` at best, ``flat`` at the floor that does not beat it
    is no pass.
    """
    holds = [g.holds for g in guards]
    guards_ok: bool | None = False if False in holds else (None if None in holds else True)
    if guards_ok is False or verdict in (Verdict.DIVERGED, Verdict.RISES):
        return False, False, True
    if verdict == Verdict.INCONCLUSIVE:
        return None, None, None
    beats = stats_.get("beats_baseline")
    progress = stats_.get("progress")
    if verdict == Verdict.FLAT:
        trend_pass: bool | None = _and(stats_.get("at_floor"), beats is not False)
        trend_partial: bool | None = False
    else:  # falls
        trend_pass = True if beats is None else beats
        short = None if progress is None else progress < partial_progress
        trend_partial = True if beats is False else short
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


def guard_text(g: GuardResult) -> str:
    if g.min is not None and g.max is not None:
        return f"{g.min:g}..{g.max:g}"
    return f">={g.min:g}" if g.min is not None else f"<={g.max:g}"


def finite_mean(v: np.ndarray) -> float | None:
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None
