"""A matrix's verdicts at every budget it was swept at, side by side: does a verdict hold with more training?

``orch sweep MATRIX budget.scale=K`` runs each cell at K times its steps per epoch under its own run keys,
in the matrix's experiment. The scales a matrix was swept at are read back from its runs' steps per
epoch (``trainer.steps_per_epoch`` against the cell's at scale 1); at each scale the matrix is expanded
again, so that exactly that scale's runs (by run key) are judged, with the matrix's verdict settings. A
cell whose verdict (or its state) is not the same at every budget it was judged at is marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.table import Table
from rich.text import Text

from orchestrator.matrix import Matrix, MatrixError, expand
from orchestrator.report.collect import ReportError, Selection, collect_cells, judge_cells
from orchestrator.report.render import verdict_text
from orchestrator.report.views import select_cells
from orchestrator.tracking import Tracker, TrackingError
from orchestrator.verdict import CellVerdict, VerdictSettings

__all__ = ["BudgetRow", "budget_scales", "budgets_table", "build_budgets", "scale_label"]


@dataclass(frozen=True)
class BudgetRow:
    """One cell's verdict at each budget scale (None: no run of the cell at that scale)."""

    cell: str
    verdicts: dict[float, CellVerdict | None]

    @property
    def changed(self) -> bool:
        """The verdict or its state differs between two of the budgets the cell was judged at."""
        seen = {(v.verdict, v.state) for v in self.verdicts.values() if v is not None}
        return len(seen) > 1


def scale_label(scale: float) -> str:
    return f"{scale:g}x"


def budget_scales(tracker: Tracker, matrix: Matrix, root: Path | None = None) -> list[float]:
    """The budget scales ``matrix``'s cells have runs at in its experiment, ascending.

    A run of a cell counts at scale ``steps / steps_1``: its ``trainer.steps_per_epoch`` (tag
    ``orch.steps_per_epoch``) against the cell's at scale 1. Runs of other cells (other matrices, ablation
    steps) are not counted.

    Raises:
        MatrixError: the matrix cannot be expanded at scale 1.
    """
    if matrix.trainer is not None:  # budget.scale multiplies the built-in model's steps; a function has one
        return []
    base = {s.cell: s.config.trainer.steps_per_epoch for s in expand(matrix.at_scale(1), root=root)}
    try:
        records = tracker.records(matrix.name, [])
    except TrackingError:
        return []
    scales = set()
    for rec in records:
        steps_1 = base.get(rec.cell)
        try:
            steps = int(rec.budget("trainer.steps_per_epoch") or "")
        except ValueError:
            continue
        if steps_1:
            scales.add(round(steps / steps_1, 9))
    return sorted(scales)


def build_budgets(
    tracking_uri: str,
    matrix: Matrix,
    settings: VerdictSettings,
    *,
    root: Path | None = None,
    select: Selection = Selection(),  # noqa: B008 - frozen
    cells: Sequence[str] = (),
    where: dict[str, str] | None = None,
) -> tuple[list[float], list[BudgetRow]]:
    """Every cell of ``matrix`` judged at each budget scale it was swept at (:func:`budget_scales`).

    Nothing is written. Returns the scales with runs (ascending) and one row per cell, in the matrix's
    order; with fewer than two scales there is nothing to put side by side (the rows are still returned).

    Raises:
        MatrixError: the matrix cannot be expanded at scale 1.
        ReportError: a selection (``cells``, ``where``) that names no cell or axis.
    """
    tracker = Tracker(tracking_uri)
    judged: dict[float, dict[str, CellVerdict | None]] = {}
    for scale in budget_scales(tracker, matrix, root):
        try:
            specs = expand(matrix.at_scale(scale), root=root)
            data = collect_cells(tracker, matrix.name, settings.metric, specs=specs, select=select)
        except (MatrixError, ReportError):  # a scale that some cell cannot take, or none of its runs judged
            continue
        if cells or where:
            data = select_cells(data, names=cells, where=where)
        verdicts = judge_cells(data, settings)
        judged[scale] = {
            c.name: (v if c.curves or c.diverged or c.crashed else None)
            for c, v in zip(data, verdicts, strict=True)
        }
    names = list(dict.fromkeys(n for by_cell in judged.values() for n in by_cell))
    rows = [BudgetRow(n, {k: judged[k].get(n) for k in judged}) for n in names]
    return list(judged), rows


def budgets_table(rows: Sequence[BudgetRow], scales: Sequence[float], *, title: str) -> Table:
    """One column per budget scale (verdict and change over the window); a cell whose verdict changes with
    the budget is marked ``≠``."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True)
    table.add_column("cell", overflow="fold")
    for scale in scales:
        table.add_column(f"{scale_label(scale)}: verdict", overflow="fold")
        table.add_column("change", justify="right", overflow="fold")
    table.add_column("", no_wrap=True)
    for row in rows:
        out: list[str | Text] = [row.cell]
        for scale in scales:
            v = row.verdicts.get(scale)
            if v is None:
                out += ["not run", "–"]
            else:
                out += [verdict_text(v), "–" if v.rel_change is None else f"{v.rel_change:+.1%}"]
        out.append(Text("≠", style="bold red") if row.changed else "")
        table.add_row(*out)
    return table
