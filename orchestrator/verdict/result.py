"""The verdict on one cell: :class:`CellVerdict`, whose ``to_dict`` is the verdict JSON contract."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.verdict.settings import Expectation, Verdict


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
    """The verdict on one cell over its seeds; ``to_dict`` is the verdict JSON contract (docs/verdicts.md).

    Levels (``start``, ``end``) are the per-seed linear fits over the window evaluated at its first and last
    epoch, averaged over seeds; ``*_sd`` is their spread over seeds (sample standard deviation). When seeds
    stopped early, ``end`` is their lines extended to the budget's last epoch (bounded by what the metric
    can be) and ``measured`` is what the seeds measured before stopping.

    ``baseline`` is what a model gets for free (the constant-prediction level of the metric);
    ``vs_baseline`` the measured end level relative to it (-0.35: 35% below), ``beats_baseline`` whether
    that is below it by more than ``min_change``, and ``level`` says it in words.

    ``undecided``: the cell has too few seeds or window epochs to be judged (``inconclusive``), and its
    levels, their change over the window and ``vs_baseline`` are what its seeds measured, with no interval,
    trend test or reading of them (``ci``, ``p_value``, ``beats_baseline``, ``level`` stay None).
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
    baseline: float | None
    vs_baseline: float | None
    beats_baseline: bool | None
    level: str | None
    measured: dict[str, Any] | None
    state: str | None
    verdict: Verdict
    reason: str
    guards: list[GuardResult]
    finals: dict[str, float | None]
    expected: Expectation | None
    observed: Expectation | None
    agrees: bool | None
    notes: list[str] = field(default_factory=list)
    undecided: bool = False

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
            "baseline": _num(self.baseline),
            "vs_baseline": _num(self.vs_baseline),
            "beats_baseline": self.beats_baseline,
            "level": self.level,
            "measured": _jsonable(self.measured),
            "state": self.state,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "guards": [g.to_dict() for g in self.guards],
            "finals": {k: _num(v) for k, v in self.finals.items()},
            "expected": self.expected,
            "observed": self.observed,
            "agrees": self.agrees,
            "notes": list(self.notes),
            "undecided": self.undecided,
        }


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
