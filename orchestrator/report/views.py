"""Views of a matrix's cells: a few of them, one axis's effect over the others, and two runs compared.

Pure functions over :class:`~orchestrator.report.collect.CellData` and verdicts:

- :func:`select_cells`: the cells named, or those whose axis values match ``axis=value`` conditions;
- :func:`group_cells`: one pseudo-cell per value of an axis, pooling every seed of every cell with that
  value, so that judging it gives the axis's marginal effect over the other axes, with an interval that
  counts the variation between those cells as well as between seeds;
- :func:`compare`: the verdicts of the same cells from two selections of runs (two code versions, two
  sweeps, two budgets), side by side, with the cells whose verdict changed marked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from orchestrator.matrix import matches, split_names
from orchestrator.report.collect import CellData, ReportError
from orchestrator.report.render import verdict_text
from orchestrator.verdict import CellVerdict

__all__ = [
    "Comparison",
    "compare",
    "comparison_json",
    "comparison_table",
    "group_cells",
    "select_cells",
]


def _value_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else str(value)


def select_cells(
    cells: Sequence[CellData], *, names: Sequence[str] = (), where: dict[str, str] | None = None
) -> list[CellData]:
    """The cells named in ``names`` (all when empty) whose axes match every ``where`` condition.

    Raises:
        ReportError: a name that is no cell, an axis no cell has, or no cell left.
    """
    known = [c.name for c in cells]
    names = split_names(names, known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ReportError(
            f"--cells: no cell named {', '.join(map(repr, unknown))} (cells: {', '.join(known)})"
        )
    axes = {a for c in cells for a in c.axes}
    missing = [a for a in (where or {}) if a not in axes]
    if missing:
        raise ReportError(
            f"--where: no cell has the axis {missing[0]!r} (axes: {', '.join(sorted(axes)) or 'none'})"
        )
    out = [c for c in cells if (not names or c.name in names) and matches(c.axes, where or {})]
    if not out:
        raise ReportError("no cell matches the selection")
    return out


def group_cells(cells: Sequence[CellData], axis: str) -> list[CellData]:
    """One pseudo-cell per value of ``axis``, named ``axis=value``, pooling the seeds of its cells.

    Raises:
        ReportError: no cell has ``axis``.
    """
    groups: dict[str, CellData] = {}
    for cell in cells:
        if axis not in cell.axes:
            continue
        value = cell.axes[axis]
        name = f"{axis}={_value_text(value)}"
        group = groups.setdefault(name, CellData(name, {axis: value}, config=cell.config))
        n = len(group.curves)
        group.seeds += list(range(n, n + len(cell.curves)))  # (cell, seed) pairs renumbered
        group.curves += cell.curves
        group.run_ids += cell.run_ids
        group.diverged += cell.diverged
        group.crashed += cell.crashed
        group.missing += cell.missing
        if cell.planned_epochs:
            group.planned_epochs = max(group.planned_epochs or 0, cell.planned_epochs)
        for metric, values in cell.finals.items():
            group.finals.setdefault(metric, []).extend(values)
    if not groups:
        axes = sorted({a for c in cells for a in c.axes})
        raise ReportError(f"--group-by: no cell has the axis {axis!r} (axes: {', '.join(axes) or 'none'})")
    return list(groups.values())


@dataclass(frozen=True)
class Comparison:
    """One cell judged on two selections of its runs."""

    cell: str
    before: CellVerdict | None
    after: CellVerdict | None

    @property
    def changed(self) -> bool:
        """The verdict (or its state) is not the same, or the cell is judged on one side only."""
        if self.before is None or self.after is None:
            return True
        return (self.before.verdict, self.before.state) != (self.after.verdict, self.after.state)


def compare(before: Sequence[CellVerdict], after: Sequence[CellVerdict]) -> list[Comparison]:
    """The cells of ``before`` and ``after`` paired by name, in ``after``'s order then ``before``'s."""
    first = {v.cell: v for v in before}
    second = {v.cell: v for v in after}
    names = list(second) + [n for n in first if n not in second]
    return [Comparison(n, first.get(n), second.get(n)) for n in names]


def comparison_table(rows: Sequence[Comparison], *, title: str, labels: tuple[str, str]) -> Table:
    """The comparison as a table: each side's verdict, change and end level; changed cells marked ``≠``."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True)
    table.add_column("cell", overflow="fold")
    for label in labels:
        table.add_column(f"{label}: verdict", overflow="fold")
        table.add_column("change", justify="right", overflow="fold")
        table.add_column("end", justify="right", overflow="fold")
    table.add_column("", no_wrap=True)
    for row in rows:
        cells: list[str | Text] = [row.cell]
        for v in (row.before, row.after):
            if v is None:
                cells += ["not judged", "–", "–"]
            else:
                change = "–" if v.rel_change is None else f"{v.rel_change:+.1%}"
                cells += [verdict_text(v), change, "–" if v.end is None else f"{v.end:.3g}"]
        cells.append(Text("≠", style="bold red") if row.changed else "")
        table.add_row(*cells)
    return table


def comparison_json(rows: Sequence[Comparison], labels: tuple[str, str]) -> list[dict[str, Any]]:
    """The comparison as JSON-ready data: per cell, each side's verdict JSON (or null) and ``changed``."""
    return [
        {
            "cell": r.cell,
            labels[0]: r.before.to_dict() if r.before else None,
            labels[1]: r.after.to_dict() if r.after else None,
            "changed": r.changed,
        }
        for r in rows
    ]
