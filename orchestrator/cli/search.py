"""``orch search MATRIX [KEY=VALUE ...] --trials N``: an Optuna search over a matrix's axes, on local workers,
with a live view of its trials."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import (
    LiveDisplay,
    TrackingUri,
    check_exists,
    console,
    err_console,
    fail,
    paths,
    tracking_uri,
)
from orchestrator.verdict.objective import Objective

if TYPE_CHECKING:
    from orchestrator.execute.search import SearchOutcome, TrialProgress

__all__ = ["SearchDisplay", "search"]


def _value(value: float | None, objective: Objective) -> str:
    if value is None:
        return "-"
    return f"{value:+.1%}" if objective is Objective.DROP else f"{value:.4g}"


class SearchDisplay(LiveDisplay):
    """Follows a search's trials: on a terminal a live table of the running ones (params, seeds done,
    epoch, the objective their epochs so far point to); one line per trial told, in any case, so that a
    log keeps them."""

    def __init__(self, console: Console, trials: int, objective: Objective) -> None:
        self.console, self.total, self.objective = console, trials, objective
        self.running: dict[int, TrialProgress] = {}
        self.told = 0
        self.best: float | None = None
        self.t0 = time.monotonic()

    def on_progress(self, p: TrialProgress) -> None:
        if not p.state.is_finished():
            self.running[p.number] = p

    def on_trial(self, p: TrialProgress) -> None:
        from optuna.trial import TrialState

        from orchestrator.execute.search import format_params

        self.running.pop(p.number, None)
        self.told += 1
        complete = p.state is TrialState.COMPLETE
        if complete and p.value is not None:
            self.best = p.value if self.best is None else min(self.best, p.value)
        style = {TrialState.COMPLETE: "green", TrialState.PRUNED: "yellow"}.get(p.state, "red")
        value = f" {_value(p.value, self.objective)}" if complete else ""
        why = f": {escape(p.reason)}" if p.reason else ""
        self.console.print(
            f"[{self.told}/{self.total}] trial {p.number} [{style}]{p.said}[/]{value} "
            f"({escape(format_params(p.params))}){why}",
            highlight=False,
        )

    def __rich__(self) -> Group:
        from optuna.trial import TrialState

        from orchestrator.execute.search import format_params

        elapsed = time.monotonic() - self.t0
        head = Table.grid(padding=(0, 2))
        head.add_row(
            f"[green]trials done {self.told}/{self.total}[/]",
            f"[cyan]running {sum(p.state is TrialState.RUNNING for p in self.running.values())}[/]",
            f"best {_value(self.best, self.objective)}",
            f"elapsed {time.strftime('%M:%S', time.gmtime(elapsed))}",
        )
        table = Table(show_header=True, box=None, padding=(0, 1))
        for col in ("trial", "params", "seeds done", "epoch", "estimate"):
            table.add_column(col)
        for n, p in sorted(self.running.items()):
            table.add_row(
                str(n),
                escape(format_params(p.params)),
                f"{p.done}/{p.seeds}",
                str(p.epoch) if p.state is TrialState.RUNNING else "-",
                _value(p.estimate, self.objective),
            )
        return Group(head, table)


def search(
    matrix: Annotated[
        Path, typer.Argument(help="matrix YAML whose axes are lists or {low, high[, log]} ranges")
    ],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="changes to the matrix, key=value: budget.epochs=24 seeds=[0,1,2]"),
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="trials to run in this call")] = 20,
    workers: Annotated[
        int | None, typer.Option(min=1, help="runs at once here (default: one per CPU core, or per GPU)")
    ] = None,
    cells: Annotated[
        list[str] | None,
        typer.Option("--cells", help="search the axes around this named cell of the matrix (one)"),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", help="pin an axis to one value, axis=value (a=1,b=2 or repeated)"),
    ] = None,
    objective: Annotated[
        Objective | None,
        typer.Option(
            help="final: where the window's line ends (vs the constant baseline where logged); drop: the "
            "verdict's relative change over the window (default: the matrix's search.objective)"
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the study")] = False,
    study: Annotated[
        str | None, typer.Option(help="study name (default: the matrix name + '-search')")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage (default: runs/optuna.journal; postgresql://... to share)"),
    ] = None,
    _uri: TrackingUri = None,
) -> None:
    """Search the matrix's axes with Optuna: each trial trains every seed, on local workers; a trial whose
    trend cannot beat the best one is pruned. Scored as the verdict judges a cell."""
    check_exists(matrix)
    from orchestrator.matrix import parse_where, read_matrix

    if cells and len(cells) > 1:
        got = ", ".join(cells)
        raise fail(f"--cells: a search explores the axes around one cell, got {len(cells)}: {got}")
    mx, root = read_matrix(matrix, overrides or ())  # the matrix first: a refusal comes before Optuna
    conditions = parse_where(where or [])

    from orchestrator.execute.search import StudySettings, run_search, search_space

    chosen = Objective(objective or mx.search.objective)
    space = search_space(mx, cell=cells[0] if cells else None, where=conditions)
    display = SearchDisplay(console, trials, chosen)
    try:
        with display.live():
            outcome = run_search(
                mx,
                space,
                root=root,
                trials=trials,
                tracking_uri=tracking_uri(),
                workers=workers,
                study=StudySettings(study, storage, resume, chosen),
                edits={"overrides": overrides or [], "cells": cells or [], "where": where or []},
                matrix_path=matrix,
                display=display,
            )
    except KeyboardInterrupt:
        err_console.print("interrupted: run the same command with --resume to continue the study")
        raise typer.Exit(130) from None
    _print_outcome(outcome, chosen, storage)


def _print_outcome(outcome: SearchOutcome, objective: Objective, storage: str | None) -> None:
    from orchestrator.execute.search import format_params

    console.print(
        f"study {outcome.study_name}: {outcome.trials} trials ({outcome.complete} complete, "
        f"{outcome.pruned} pruned, {outcome.failed} failed)",
        highlight=False,
    )
    if outcome.best_trial is not None:
        console.print(
            f"best: trial {outcome.best_trial}, {objective} {_value(outcome.best_value, objective)} "
            f"({format_params(outcome.best_params)})",
            highlight=False,
        )
    if outcome.importances:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in outcome.importances.items())
        console.print(f"{outcome.importances_note}: {shown}", highlight=False)
    elif outcome.importances_note:
        console.print(outcome.importances_note, highlight=False)
    if outcome.figures:
        console.print(f"figures: {paths(outcome.figures.values())}", highlight=False)
    console.print(f"browse the study: optuna-dashboard {storage or 'runs/optuna.journal'}", highlight=False)
    if outcome.failed:
        raise fail(f"{outcome.failed} trial(s) failed: see their runs' orch.failure in the store", code=1)
