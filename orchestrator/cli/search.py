"""``orch search MATRIX --trials N``: an Optuna search over a matrix's axes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import console, err_console, fail, tracking_uri

__all__ = ["search"]


def search(
    matrix: Annotated[
        Path, typer.Argument(help="matrix YAML whose axes are lists or {low, high[, log]} ranges")
    ],
    trials: Annotated[int, typer.Option(min=1, help="trials to run in this call")] = 20,
    resume: Annotated[bool, typer.Option("--resume", help="continue the study")] = False,
    study: Annotated[
        str | None, typer.Option(help="study name (default: the matrix name + '-search')")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage (default: runs/optuna.journal; postgresql://... to share)"),
    ] = None,
    objective: Annotated[
        str | None, typer.Option(help="final | drop (default: the matrix's search.objective)")
    ] = None,
) -> None:
    """Search the matrix's axes with Optuna: each trial trains every seed; bad trials are pruned early."""
    from orchestrator.execute.search import SearchError, run_search
    from orchestrator.execute.workqueue import QueueError
    from orchestrator.matrix import MatrixError, read_matrix
    from orchestrator.tracking import TrackingError

    if objective not in (None, "final", "drop"):
        raise fail(f"--objective must be final or drop, not {objective!r}")
    try:
        mx, root = read_matrix(matrix)
    except MatrixError as exc:
        raise fail(str(exc)) from None

    def on_trial(t) -> None:  # noqa: ANN001
        value = "" if t.value is None else f" {t.value:.4f}"
        params = ", ".join(f"{k}={v}" for k, v in t.params.items())
        console.print(f"trial {t.number}: {t.state.name.lower()}{value}  ({params})", highlight=False)

    try:
        outcome = run_search(
            mx,
            root=root,
            trials=trials,
            tracking_uri=tracking_uri(),
            storage=storage,
            study_name=study,
            resume=resume,
            objective=objective,
            matrix_path=matrix,
            on_trial=on_trial,
        )
    except (MatrixError, SearchError, QueueError, TrackingError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        err_console.print("interrupted: run the same command with --resume to continue the study")
        raise typer.Exit(130) from None
    console.print(
        f"study {outcome.study_name}: {outcome.trials} trials ({outcome.complete} complete, "
        f"{outcome.pruned} pruned, {outcome.failed} failed)"
    )
    if outcome.best_trial is not None:
        console.print(
            f"best: trial {outcome.best_trial}, value {outcome.best_value:.4f}, {outcome.best_params}"
        )
    if outcome.importances:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in outcome.importances.items())
        console.print(f"importances: {shown}")
    if outcome.figures:
        console.print(f"figures: {', '.join(str(p) for p in outcome.figures.values())}")
    if outcome.failed:
        raise fail(f"{outcome.failed} trial(s) failed: see their runs' orch.failure in the store", code=1)
