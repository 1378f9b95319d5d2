"""Live view of a sweep: its plan, then runs done / running / left, each running run's epoch, and an ETA."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from rich.console import Console, Group
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from orchestrator.cli.common import LiveDisplay
from orchestrator.execute.context import Display, SweepEvent, SweepOutcome
from orchestrator.execute.plan import PlanItem, PlanState
from orchestrator.tracking import RunStatus

__all__ = ["SweepDisplay", "clock", "say_stale"]


def say_stale(console: Console, plan: list[PlanItem]) -> None:
    """One line per reason why finished runs are run again (the code or the data changed)."""
    reasons = Counter(p.why for p in plan if p.state is PlanState.STALE)
    for why, n in reasons.items():
        console.print(f"  {n} stale: {why}", highlight=False, markup=False)


class SweepDisplay(LiveDisplay, Display):
    """Follows a sweep (a :class:`~orchestrator.execute.context.Display`): its plan's counts once the store
    has been read, then on a terminal a live view redrawn four times a second (the phase before the first
    run, then done / running / left, each running run's epoch with a bar and time, an ETA from the epoch
    times measured so far); one line per finished run in any case, so a log keeps them.

    Args:
        total: the runs to follow (until the plan says how many are left to run).
        name, store: the matrix's name and the tracking store, as the plan's line says them.
        on_done: called once the runs are done, before the parent run ends (:meth:`Display.on_done`).
    """

    def __init__(
        self,
        console: Console,
        total: int,
        *,
        name: str = "",
        store: str = "",
        on_done: Callable[[SweepOutcome], None] | None = None,
    ) -> None:
        self.console, self.total, self.name, self.store = console, total, name, store
        self._on_done = on_done
        self.done = 0
        self.phase = "starting"
        self.running: dict[int, SweepEvent] = {}
        self.epochs: dict[int, int] = {}
        self.started: dict[int, float] = {}
        self.epoch_seconds: dict[str, list[float]] = {}  # cell -> measured seconds per epoch
        self.killed: list[SweepEvent] = []  # the runs that ended KILLED (interrupted), as recorded
        self.t0 = time.monotonic()

    def on_plan(self, plan: list[PlanItem]) -> None:
        """The plan's counts (and why finished runs are run again), once the store has been read."""
        done = sum(not p.state.runs for p in plan)
        self.total = len(plan) - done
        self.console.print(
            f"[bold]{escape(self.name)}[/]: {len(plan)} runs, {done} already finished, {self.total} to run "
            f"(store: {self.store})",
            highlight=False,
        )
        say_stale(self.console, plan)

    def on_done(self, outcome: SweepOutcome) -> None:
        """The runs are done and the parent run is still open: the constructor's ``on_done``."""
        if self._on_done is not None:
            self._on_done(outcome)

    def on_phase(self, text: str) -> None:
        """What the sweep does before its runs start (preparing the store, planning, starting workers)."""
        self.phase = text
        if not self.console.is_terminal:
            self.console.print(f"{text}...", highlight=False)

    def _run_seconds(self, ev: SweepEvent) -> float | None:
        """A run's expected length: its cell's measured seconds per epoch, else any cell's."""
        per_epoch = self.epoch_seconds.get(ev.spec.cell) or [
            t for ts in self.epoch_seconds.values() for t in ts
        ]
        if not per_epoch:
            return None
        return (ev.spec.epochs + 1) * sum(per_epoch) / len(per_epoch)

    def _eta(self) -> str:
        """The work left (running runs' remaining epochs, queued runs' whole length) over the workers."""
        now = time.monotonic()
        left = 0.0
        for index, ev in self.running.items():
            length = self._run_seconds(ev)
            if length is None:
                return "-"
            left += max(0.0, length - (now - self.started[index]))
        queued = self.total - self.done - len(self.running)
        if queued:
            lengths = [x for ev in self.running.values() if (x := self._run_seconds(ev)) is not None]
            if not lengths:
                return "-"
            left += queued * sum(lengths) / len(lengths)
        seconds = left / max(1, len(self.running))
        return clock(seconds)

    def __rich__(self) -> Group:
        now = time.monotonic()
        head = Table.grid(padding=(0, 2))
        left = self.total - self.done - len(self.running)
        if not self.running and not self.done:
            head.add_row(f"[cyan]{self.phase}...[/]", f"elapsed {clock(now - self.t0)}")
            return Group(head)
        head.add_row(
            f"[green]done {self.done}[/]",
            f"[cyan]running {len(self.running)}[/]",
            f"left {left}",
            f"elapsed {clock(now - self.t0)}",
            f"ETA {self._eta()}",
        )
        runs = Table(show_header=True, box=None, padding=(0, 1))
        for col in ("cell", "seed", "epoch", "", "time"):
            runs.add_column(col)
        for index, ev in sorted(self.running.items()):
            epochs = ev.spec.epochs
            done = self.epochs.get(index, 0)
            steps = (ev.step or 0) / ev.steps if ev.steps else 0.0
            bar = ProgressBar(total=epochs, completed=min(epochs, done + steps), width=20)
            elapsed = clock(now - self.started[index])
            runs.add_row(ev.spec.cell, str(ev.spec.seed), f"{done}/{epochs}", bar, elapsed)
        return Group(head, runs)

    def on_event(self, event: SweepEvent) -> None:
        if event.kind == "start":
            self.running[event.item] = event
            self.started[event.item] = time.monotonic()
        elif event.kind == "step":
            self.running[event.item] = event
            self.epochs[event.item] = max(0, (event.epoch or 1) - 1)
        elif event.kind == "epoch":
            self.epochs[event.item] = event.epoch or 0
            if event.epoch:
                elapsed = time.monotonic() - self.started[event.item]
                self.epoch_seconds.setdefault(event.spec.cell, []).append(elapsed / (event.epoch + 1))
        elif event.kind == "end":
            if event.status is RunStatus.KILLED:
                self.killed.append(event)
            self.running.pop(event.item, None)
            self.done += 1
            self.started.pop(event.item, None)
            mark = {RunStatus.FINISHED: "[green]ok[/]", RunStatus.STOPPED: "[green]ok (early stop)[/]"}.get(
                event.status, f"[red]{event.status}[/]"
            )
            why = (
                f": {escape(event.reason)}" if event.reason and event.status is not RunStatus.FINISHED else ""
            )
            self.console.print(
                f"[{self.done}/{self.total}] {escape(event.spec.cell)} seed {event.spec.seed} {mark}{why}",
                highlight=False,
            )


def clock(seconds: float) -> str:
    """A duration as a user reads it: ``MM:SS``, or hours from one hour on."""
    return time.strftime("%M:%S", time.gmtime(seconds)) if seconds < 3600 else f"{seconds / 3600:.1f} h"
