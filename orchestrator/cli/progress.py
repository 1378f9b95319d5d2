"""Live view of a sweep: runs done / running / left, each running run's epoch, and an ETA."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from orchestrator.execute.plan import PlanItem
from orchestrator.execute.sweep import SweepEvent
from orchestrator.tracking import RunStatus

__all__ = ["SweepDisplay", "plan_table"]


def plan_table(plan: list[PlanItem], title: str) -> Table:
    """Every run with its axis values and whether it is done, to run, or failed before."""
    axes = sorted({k for p in plan for k in p.spec.axes})
    table = Table(title=title, title_justify="left")
    for col in ("cell", "seed", *axes, "state", "run key"):
        table.add_column(col)
    for p in plan:
        cells = [p.spec.cell, str(p.spec.seed), *(str(p.spec.axes.get(a, "")) for a in axes)]
        state = p.state.label + (f" ({p.why})" if p.why else "")
        table.add_row(*cells, f"[{p.state.style}]{escape(state)}[/]", p.spec.run_key)
    return table


class SweepDisplay:
    """Follows :class:`SweepEvent` s; a live table on a terminal, one line per finished run otherwise."""

    def __init__(self, console: Console, total: int) -> None:
        self.console, self.total = console, total
        self.done = 0
        self.running: dict[int, SweepEvent] = {}
        self.epochs: dict[int, int] = {}
        self.started: dict[int, float] = {}
        self.durations: list[float] = []
        self.t0 = time.monotonic()
        self._live: Live | None = None

    @contextmanager
    def live(self) -> Iterator[SweepDisplay]:
        if self.console.is_terminal:
            with Live(self._render(), console=self.console, refresh_per_second=4, transient=True) as live:
                self._live = live
                yield self
            self._live = None
        else:
            yield self

    def _eta(self) -> str:
        left = self.total - self.done
        if not self.durations or left == 0:
            return "-"
        workers = max(1, len(self.running))
        seconds = sum(self.durations) / len(self.durations) * left / workers
        return time.strftime("%M:%S", time.gmtime(seconds)) if seconds < 3600 else f"{seconds / 3600:.1f} h"

    def _render(self) -> Group:
        head = Table.grid(padding=(0, 2))
        left = self.total - self.done - len(self.running)
        elapsed = time.strftime("%M:%S", time.gmtime(time.monotonic() - self.t0))
        head.add_row(
            f"[green]done {self.done}[/]",
            f"[cyan]running {len(self.running)}[/]",
            f"left {left}",
            f"elapsed {elapsed}",
            f"ETA {self._eta()}",
        )
        runs = Table(show_header=True, box=None)
        for col in ("cell", "seed", "epoch", "step"):
            runs.add_column(col)
        for index, ev in sorted(self.running.items()):
            epochs = ev.spec.config.trainer.epochs
            step = f"{ev.step}/{ev.steps}" if ev.step else ""
            runs.add_row(ev.spec.cell, str(ev.spec.seed), f"{self.epochs.get(index, 0)}/{epochs}", step)
        return Group(head, runs)

    def __call__(self, event: SweepEvent) -> None:
        if event.kind == "start":
            self.running[event.item] = event
            self.started[event.item] = time.monotonic()
        elif event.kind == "step":
            self.running[event.item] = event
            self.epochs[event.item] = event.epoch or 0
        elif event.kind == "epoch":
            self.epochs[event.item] = event.epoch or 0
        elif event.kind == "end":
            self.running.pop(event.item, None)
            self.done += 1
            self.durations.append(time.monotonic() - self.started.pop(event.item, time.monotonic()))
            mark = {RunStatus.FINISHED: "[green]ok[/]", RunStatus.STOPPED: "[green]ok (early stop)[/]"}.get(
                event.status, f"[red]{event.status}[/]"
            )
            why = f": {event.reason}" if event.reason and event.status is not RunStatus.FINISHED else ""
            self.console.print(
                f"[{self.done}/{self.total}] {event.spec.cell} seed {event.spec.seed} {mark}{why}",
                highlight=False,
            )
        if self._live is not None:
            self._live.update(self._render())
