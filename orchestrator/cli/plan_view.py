"""The plan of a sweep (``orch sweep --dry-run``, ``orch ablate --dry-run``) as a terminal reads it.

One row per cell with its full name and only the axes whose values differ between cells (those every cell
shares are said once, above), and what the sweep does with its runs; then one row per run with its state
and run key. Both fit the console's width (a terminal's, or ``COLUMNS`` piped): the cells' table becomes
one block a cell where its axes do not fit, and a long state folds rather than widen the runs' table.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orchestrator.report.layout import Blocks, Fitted
from orchestrator.report.render import axis_text

if TYPE_CHECKING:
    from orchestrator.execute.plan import PlanItem

__all__ = ["plan_view"]


def plan_view(plan: Sequence[PlanItem], title: str) -> Group:
    """The plan's cells (varying axes, what is done and to do) and its runs (state, run key).

    Args:
        plan: Every (cell, seed) with its state (:func:`orchestrator.execute.plan.dry_run_plan`).
        title: The first line (the matrix, its runs and cells).

    Returns:
        A renderable laid out to the console's width when printed.
    """
    by_cell: dict[str, list[PlanItem]] = {}
    for item in plan:
        by_cell.setdefault(item.spec.cell, []).append(item)
    differ, same = _split(by_cell)
    lines: list[Any] = [Text(title, style="bold")]
    if same:
        shared = ", ".join(f"{a}={axis_text(v)}" for a, v in same.items())
        lines.append(Text(f"every cell: {shared}", style="dim", overflow="fold"))
    lines.append(
        Fitted(
            lambda: _cells_table(by_cell, differ, runs=True),
            lambda: _cells_table(by_cell, differ, runs=False),  # the runs' table says it too
            lambda: _cells_blocks(by_cell, differ),
        )
    )
    lines.append(Fitted(lambda: _runs_table(plan, fold=False), lambda: _runs_table(plan, fold=True)))
    return Group(*lines)


def _split(by_cell: dict[str, list[PlanItem]]) -> tuple[list[str], dict[str, Any]]:
    """Axes whose values differ between cells (or that some cell lacks), and those every cell shares."""
    axes = list(dict.fromkeys(a for items in by_cell.values() for a in items[0].spec.axes))  # matrix's order
    differ, same = [], {}
    for a in axes:
        values = {json.dumps(items[0].spec.axes.get(a, _MISSING), default=str) for items in by_cell.values()}
        if len(values) > 1 or len(by_cell) == 1:
            differ.append(a)
        else:
            same[a] = next(iter(by_cell.values()))[0].spec.axes[a]
    return differ, same


_MISSING = "\0missing"


def _runs_text(items: Sequence[PlanItem]) -> Text:
    """What the sweep does with a cell's runs: ``5 to run``, ``3 done, 2 to run``."""
    counts = Counter(item.state for item in items)
    text = Text()
    for i, (state, n) in enumerate(counts.items()):
        text.append(", " if i else "")
        text.append(f"{n} {state.label}", style=state.style)
    return text


def _cells_table(by_cell: dict[str, list[PlanItem]], differ: list[str], *, runs: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("cell", no_wrap=True)
    for a in differ:
        table.add_column(a, no_wrap=True)
    if runs:
        table.add_column("runs", no_wrap=True)
    for name, items in by_cell.items():
        axes = items[0].spec.axes
        values = [axis_text(axes[a]) if a in axes else "–" for a in differ]
        table.add_row(name, *values, *([_runs_text(items)] if runs else []))
    return table


def _cells_blocks(by_cell: dict[str, list[PlanItem]], differ: list[str]) -> Blocks:
    items = []
    for name, runs in by_cell.items():
        axes = runs[0].spec.axes
        pairs = [(a, axis_text(axes[a])) for a in differ if a in axes]
        items.append((name, "bold", [*pairs, ("runs", _runs_text(runs).plain)]))
    return Blocks(items)


def _runs_table(plan: Sequence[PlanItem], *, fold: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("cell", no_wrap=True)
    table.add_column("seed", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=not fold, overflow="fold")
    table.add_column("run key", no_wrap=True)
    for p in plan:
        state = p.state.label + (f" ({p.why})" if p.why else "")
        table.add_row(p.spec.cell, str(p.spec.seed), f"[{p.state.style}]{escape(state)}[/]", p.spec.run_key)
    return table
