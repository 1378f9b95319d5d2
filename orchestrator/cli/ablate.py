"""``orch ablate MATRIX --from CELL --to CELL``: which single change between two cells turns the verdict?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.common import TrackingUri, check_exists, console, err_console, fail, tracking_uri

if TYPE_CHECKING:
    from rich.table import Table

    from orchestrator.execute.ablate import AblationStep
    from orchestrator.matrix import Matrix, RunSpec
    from orchestrator.verdict import CellVerdict

__all__ = ["ablate"]


def ablate(
    matrix: Annotated[Path, typer.Argument(help="matrix YAML whose two cells to walk between")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="changes to the matrix, key=value, as for `orch sweep` (budget.scale=2 ...)"),
    ] = None,
    start: Annotated[str, typer.Option("--from", help="the cell to start from, e.g. no_skip")] = "",
    end: Annotated[str, typer.Option("--to", help="the cell to arrive at, e.g. no_skip_everywhere")] = "",
    order: Annotated[
        str | None,
        typer.Option(
            help="axes in the order to change them, comma-separated (default: as the --to cell lists them)"
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="runs at once (default: one per CPU core)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the path and its plan, run nothing")
    ] = False,
    _uri: TrackingUri = None,
) -> None:
    """Walk from one cell of a matrix to another changing one axis a step, run each step's seeds (reusing
    finished runs, the two ends included), and name the step whose change flips the verdict.

    Every step is a cell of the matrix's experiment, run as `orch sweep` runs its cells."""
    check_exists(matrix)
    from orchestrator.execute.ablate import ablation_matrix
    from orchestrator.matrix import MatrixError, expand, read_matrix

    if not start or not end:
        raise fail("give both ends of the path: --from CELL --to CELL")
    axes = [a.strip() for a in (order or "").split(",") if a.strip()]
    mx, root = read_matrix(matrix, overrides or ())
    try:
        path, steps = ablation_matrix(mx, start=start, end=end, order=axes, root=root)
        specs = expand(path, root=root)
    except MatrixError as exc:  # said with the file it is about
        raise MatrixError(f"{matrix}: {exc}") from None

    from orchestrator.cli.sweep import sweep_matrix
    from orchestrator.execute.context import SweepRequest

    console.print(f"[bold]{path.name}[/]: {start} -> {end} in {len(steps) - 1} steps", highlight=False)
    for i, step in enumerate(steps):
        console.print(f"  {i}. {step.cell}: {step.describe()}", highlight=False, markup=False)
    edits = {"overrides": overrides or [], "ablate": {"from": start, "to": end, "order": axes}}
    sweep_matrix(
        path,
        specs,
        matrix_path=matrix,
        dry_run=dry_run,
        request=SweepRequest(edits),
        report=lambda outcome: _print_steps(path, specs, steps, outcome.parent_run_id),
        workers=workers,
    )


def _print_steps(path: Matrix, specs: list[RunSpec], steps: list[AblationStep], parent: str | None) -> None:
    """Each step's verdict, and the step(s) whose change flips it."""
    from orchestrator.execute.ablate import flips
    from orchestrator.report import ReportError, build_report

    uri = tracking_uri()
    try:
        rep = build_report(uri, path.name, path.verdict, specs=specs, parent_run_id=parent, record=True)
    except ReportError as exc:
        err_console.print(f"no verdicts: {exc}")
        return
    verdicts = {v.cell: v for v in rep.verdicts}
    console.print(steps_table(steps, verdicts, title=f"{path.name}: the verdict at each step"))
    flipped = flips(steps, verdicts)
    if not flipped:
        console.print("no single change flips the verdict along this path", highlight=False)
    for step in flipped:
        i = steps.index(step)
        before, after = verdicts[steps[i - 1].cell], verdicts[step.cell]
        console.print(
            f"step {i} flips the verdict: {step.describe()} ({_said(before)} -> {_said(after)})",
            highlight=False,
            markup=False,
        )


def _said(v: CellVerdict) -> str:
    return v.verdict.value + (f", {v.state}" if v.state else "") + (f", {v.observed}" if v.observed else "")


def steps_table(steps: list[AblationStep], verdicts: dict[str, CellVerdict], *, title: str) -> Table:
    """One row per step: the change it makes, its verdict, the change over the window, the end level."""
    from rich import box
    from rich.table import Table

    from orchestrator.report.render import verdict_text

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True)
    for name, justify in (("step", "right"), ("change", "left"), ("verdict", "left"), ("window", "right")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    table.add_column("end", justify="right")
    table.add_column("observed")
    for i, step in enumerate(steps):
        v = verdicts.get(step.cell)
        if v is None:
            table.add_row(str(i), step.describe(), "not judged", "–", "–", "")
            continue
        change = "–" if v.rel_change is None else f"{v.rel_change:+.1%}"
        end = "–" if v.end is None else f"{v.end:.3g}"
        table.add_row(str(i), step.describe(), verdict_text(v), change, end, v.observed or "")
    return table
