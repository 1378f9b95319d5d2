"""One search trial while it runs: its runs, what they reported, and the result it is told.

:class:`TrialProgress` is what a display shows of a trial; :class:`TrialRun` is the search's record of
it (which queue items are its seeds, which started, ended or were dropped once it was pruned, its curves),
and :meth:`TrialRun.result` turns that into the state and value Optuna is told.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from orchestrator.execute.search.trend import objective_value
from orchestrator.matrix import RunSpec
from orchestrator.tracking import RunStatus
from orchestrator.verdict.objective import Objective
from orchestrator.verdict.settings import VerdictSettings


@dataclass(frozen=True)
class TrialSpec(RunSpec):
    """A (trial, seed) run: a :class:`RunSpec` whose worker stops it once ``stop_file`` exists (its trial
    was pruned; the file says why)."""

    stop_file: str = ""

    def to_payload(self) -> dict[str, Any]:
        return super().to_payload() | {"stop_file": self.stop_file}


@dataclass
class TrialProgress:
    """What a display shows of a trial.

    Attributes:
        params: the sampled values of the searched axes.
        done: seeds whose run ended.
        epoch: the newest epoch any of its seeds reported.
        estimate: the objective its window epochs so far point to (None before three of them).
        state: waiting, running, or as it was told: complete, pruned or failed (``FAIL``).
        value: the objective it was told (complete trials).
        reason: why it was pruned or failed.
    """

    number: int
    params: dict[str, Any]
    seeds: int
    done: int = 0
    epoch: int = 0
    estimate: float | None = None
    state: TrialState = TrialState.WAITING
    value: float | None = None
    reason: str | None = None

    @property
    def said(self) -> str:
        """Its state in words: waiting, running, complete, pruned or failed."""
        return "failed" if self.state is TrialState.FAIL else self.state.name.lower()


class TrialDisplay(Protocol):
    """Whoever follows a search's trials (the command line's live view)."""

    def on_progress(self, progress: TrialProgress) -> None:
        """A trial's progress, after each of its runs' starts, epochs and ends."""

    def on_trial(self, progress: TrialProgress) -> None:
        """A trial told (complete, pruned or failed), once."""


@dataclass
class TrialRun:
    """A trial asked of Optuna and its runs (queue items, by index, each with its seed's position)."""

    trial: optuna.Trial
    progress: TrialProgress
    specs: list[Any]  # TrialSpec per seed
    items: dict[int, int] = field(default_factory=dict)  # queue item index -> seed position
    started: set[int] = field(default_factory=set)
    ended: dict[int, tuple[RunStatus, str | None]] = field(default_factory=dict)
    dropped: set[int] = field(default_factory=set)  # waiting items taken off the queue when pruned
    curves: dict[int, dict[int, float]] = field(default_factory=dict)  # seed position -> epoch -> value
    baseline: float | None = None
    pruned: str | None = None
    told: bool = False
    twin_of: TrialRun | None = None  # a trial whose point has the same runs (its result is this one's)
    twins: list[TrialRun] = field(default_factory=list)

    def outstanding(self) -> list[int]:
        """Items whose end is still to come: not ended, and started or still in the queue."""
        return [i for i in self.items if i not in self.ended and (i in self.started or i not in self.dropped)]

    def result(self, objective: Objective, settings: VerdictSettings) -> tuple[TrialState, float | None, str]:
        """The state, value and reason to tell: pruned; failed when a seed crashed or no objective can be
        computed; pruned when at least ``settings.diverged_fraction`` of the seeds diverged (the others
        are left out, as the verdict leaves them out); else complete with the objective."""
        if self.pruned is not None:
            return TrialState.PRUNED, None, self.pruned
        by_position = {self.items[i]: status for i, status in self.ended.items()}
        seed = {p: s.seed for p, s in enumerate(self.specs)}
        crashed = [
            (p, why)
            for p, (st, why) in by_position.items()
            if not st.has_curve and st is not RunStatus.DIVERGED
        ]
        if crashed:
            p, why = crashed[0]
            return TrialState.FAIL, None, f"seed {seed[p]} crashed: {why}"
        diverged = [p for p, (st, _) in by_position.items() if st is RunStatus.DIVERGED]
        n = len(self.specs)
        if settings.too_many_diverged(len(diverged), n):
            return TrialState.PRUNED, None, f"{len(diverged)} of {n} seeds diverged (NaN/Inf)"
        curves = []
        for p in sorted(p for p, (st, _) in by_position.items() if st.has_curve):
            points = self.curves.get(p, {})
            curves.append([points[e] for e in sorted(points)])
        note = f"; {len(diverged)} of {n} seeds diverged, left out" if diverged else ""
        epochs = self.specs[0].epochs
        try:
            value = objective_value(objective, curves, epochs, settings, self.baseline)
        except ValueError as exc:
            return TrialState.FAIL, None, f"no objective: {exc}{note}"
        if not math.isfinite(value):
            return TrialState.FAIL, None, f"no objective: relative change undefined (start level 0){note}"
        return TrialState.COMPLETE, value, note.removeprefix("; ")
