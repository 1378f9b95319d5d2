"""The `orch` command line: thin Typer wrappers over library functions.

Exit codes: 0 done; 1 some runs crashed or diverged (others still ran); 2 invalid input (nothing
was started).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from model.config import ConfigError, load_config
from model.data import DataError

__all__ = ["app"]

app = typer.Typer(
    name="orch",
    help="Experiment-matrix orchestrator for the cross-domain autoencoder ablations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# logs and CI are not terminals: give tables room instead of rich's 80-column default
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"


class _State:
    tracking_uri: str | None = None


def tracking_uri() -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the local store under ``runs/``."""
    return _State.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` on stderr and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.callback()
def main(
    tracking_uri_opt: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite:///runs/mlflow.db)"
        ),
    ] = None,
) -> None:
    _State.tracking_uri = tracking_uri_opt


@app.command()
def train(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="run config (JSON or YAML), e.g. the note's")
    ],
    epochs: Annotated[int | None, typer.Option(help="override trainer.epochs")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a field: key=value (repeatable)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="run directory (default: runs/train/<config>-<time>)")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda (overrides trainer.device)")] = None,
    track: Annotated[
        bool, typer.Option("--track/--no-track", help="also log the run to the MLflow store")
    ] = True,
) -> None:
    """Train one config and print one row per epoch (epoch 0 = before any update)."""
    from orchestrator.console import EpochPrinter
    from orchestrator.single import default_out_dir, train_single

    overrides = list(set_ or [])
    if epochs is not None:
        overrides.append(f"trainer.epochs={epochs}")
    if device is not None:
        overrides.append(f"trainer.device={device}")
    try:
        cfg = load_config(config, overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    out_dir = out or default_out_dir(config)
    if out_dir.exists():
        raise fail(f"{out_dir} already exists; choose another --out")
    from model.data import open_source
    from model.trainer import resolve_device

    try:  # device and data are checked before anything is written or tracked
        resolve_device(cfg.trainer.device)
        source = open_source(cfg.data)
    except (ConfigError, DataError) as exc:
        raise fail(str(exc)) from None
    tracker = None
    printer = EpochPrinter(console)
    if track:
        from orchestrator.tracking import TrackingError, open_single_run

        try:
            tracker = open_single_run(tracking_uri(), cfg, name=config.stem)
        except TrackingError as exc:
            raise fail(str(exc)) from None
    with printer.live():
        outcome = train_single(
            cfg, out_dir, on_epoch=printer.on_epoch, on_step=printer.on_step, tracker=tracker, source=source
        )
    console.print(f"outputs: {outcome.out_dir}  (config.json, metrics.csv, images/, checkpoint.pt)")
    if outcome.tracking_run_id:
        console.print(
            f"tracked: run {outcome.tracking_run_id} in {tracking_uri()}  (mlflow ui --backend-store-uri ...)"
        )
    if outcome.status != "finished":
        raise fail(f"run {outcome.status}: {outcome.reason}", code=1)


@app.command()
def sweep(
    matrix: Annotated[Path, typer.Argument(help="matrix YAML, e.g. matrices/test_matrix.yaml")],
    workers: Annotated[
        int | None,
        typer.Option(
            min=0, help="runs at once here (default: one per CPU core; 0 with --storage: coordinate only)"
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan, run nothing")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="run everything again, even finished runs")] = False,
    storage: Annotated[
        str | None,
        typer.Option(
            help="queue in this Optuna RDB (postgresql://...) so `orch worker` on other machines join"
        ),
    ] = None,
    heartbeat: Annotated[
        float, typer.Option(min=1, help="with --storage: seconds between worker heartbeats")
    ] = 10,
) -> None:
    """Run every (cell, seed) of a matrix not already finished, then print the verdict table."""
    from orchestrator.matrix import MatrixError, load_matrix
    from orchestrator.progress import SweepDisplay, plan_table
    from orchestrator.queue import QueueError
    from orchestrator.sweep import plan_sweep, preflight, run_sweep
    from orchestrator.tracking import Tracker, TrackingError, prepare_store

    if workers == 0 and storage is None:
        raise fail("--workers 0 only makes sense with --storage (other machines run the work)")
    try:
        mx, specs = load_matrix(matrix)
        preflight(specs)
    except (MatrixError, ConfigError, DataError) as exc:
        raise fail(str(exc)) from None
    uri = tracking_uri()
    if dry_run:
        try:
            tracker = Tracker(prepare_store(uri)) if _store_exists(uri) else None
        except TrackingError as exc:
            raise fail(str(exc)) from None
        plan = plan_sweep(specs, tracker, mx.name, fresh=fresh) if tracker else None
        if plan is None:
            from orchestrator.sweep import PlanItem

            plan = [PlanItem(s, "todo") for s in specs]
        console.print(
            plan_table(plan, f"{mx.name}: {len(specs)} runs ({len(set(s.cell for s in specs))} cells)")
        )
        todo = sum(p.state != "done" for p in plan)
        console.print(f"{todo} to run, {len(plan) - todo} done  (store: {uri})")
        return
    display = SweepDisplay(console, len(specs))

    def on_plan(plan: list) -> None:
        done = sum(p.state == "done" for p in plan)
        display.total = len(plan) - done
        console.print(
            f"[bold]{mx.name}[/]: {len(plan)} runs, {done} already finished, {len(plan) - done} to run "
            f"(store: {uri})",
            highlight=False,
        )

    try:
        with display.live():
            outcome = run_sweep(
                mx,
                specs,
                tracking_uri=uri,
                matrix_path=matrix,
                workers=workers,
                fresh=fresh,
                on_event=display,
                on_plan=on_plan,
                storage=storage,
                heartbeat=heartbeat,
            )
    except (TrackingError, QueueError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        err_console.print(
            "interrupted: runs in flight were marked KILLED; run the same command to finish the rest"
        )
        raise typer.Exit(130) from None
    console.print(
        f"ran {outcome.ran} (finished {outcome.finished + outcome.stopped}, diverged {outcome.diverged}, "
        f"crashed {outcome.crashed}), skipped {outcome.skipped} already finished"
    )
    _print_report(mx, specs, uri, outcome.parent_run_id)
    if outcome.crashed:
        for cell, seed, reason in outcome.failures:
            err_console.print(f"  {cell} seed {seed}: {reason}", highlight=False)
        raise typer.Exit(1)


@app.command()
def worker(
    matrix: Annotated[Path, typer.Argument(help="the same matrix YAML the coordinator runs")],
    storage: Annotated[str, typer.Option(help="the coordinator's --storage (postgresql://...)")],
    workers: Annotated[
        int | None, typer.Option(min=1, help="runs at once here (default: one per CPU core)")
    ] = None,
    heartbeat: Annotated[
        float, typer.Option(min=1, help="seconds between heartbeats (as the coordinator)")
    ] = 10,
    wait: Annotated[float, typer.Option(min=0, help="seconds to wait for a sweep to join")] = 60,
) -> None:
    """Join a sweep started with `orch sweep --storage` and run its items until none is left."""
    from orchestrator.matrix import MatrixError, load_matrix
    from orchestrator.progress import SweepDisplay
    from orchestrator.queue import QueueError
    from orchestrator.sweep import join_sweep
    from orchestrator.tracking import TrackingError

    try:
        mx, specs = load_matrix(matrix)
    except MatrixError as exc:
        raise fail(str(exc)) from None
    display = SweepDisplay(console, len(specs))
    try:
        with display.live():
            outcome = join_sweep(
                mx,
                specs,
                tracking_uri=tracking_uri(),
                storage=storage,
                workers=workers,
                heartbeat=heartbeat,
                wait=wait,
                on_event=display,
            )
    except (QueueError, TrackingError) as exc:
        raise fail(str(exc)) from None
    console.print(f"worker done: ran {outcome.ran} (crashed {outcome.crashed})")
    if outcome.crashed:
        raise typer.Exit(1)


@app.command()
def search(
    matrix: Annotated[
        Path, typer.Argument(help="matrix YAML whose axes are lists or {low, high[, log]} ranges")
    ],
    trials: Annotated[int, typer.Option(min=1, help="trials to run in this call")] = 20,
    resume: Annotated[bool, typer.Option("--resume", help="continue the study")] = False,
    study: Annotated[str | None, typer.Option(help="study name (default: <matrix name>-search)")] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage (default: runs/optuna.journal; postgresql://... to share)"),
    ] = None,
    objective: Annotated[
        str | None, typer.Option(help="final | drop (default: the matrix's search.objective)")
    ] = None,
) -> None:
    """Search the matrix's axes with Optuna: each trial trains every seed; bad trials are pruned early."""
    from orchestrator.matrix import MatrixError, read_matrix
    from orchestrator.queue import QueueError
    from orchestrator.search import SearchError, run_search
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


def _store_exists(uri: str) -> bool:
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).exists()
    return True


def _print_report(mx, specs, uri: str, parent_run_id: str | None) -> None:  # noqa: ANN001
    from orchestrator.reporting import ReportError, build_report

    try:
        report = build_report(uri, mx.name, mx.verdict, specs=specs, parent_run_id=parent_run_id)
    except ReportError as exc:
        err_console.print(f"no verdicts: {exc}")
        return
    console.print(report.table())
    console.print(f"figures: {', '.join(str(p) for p in report.figures.values())}")


@app.command()
def report(
    matrix: Annotated[Path | None, typer.Argument(help="matrix YAML (judges that matrix's runs)")] = None,
    experiment: Annotated[
        str | None, typer.Option(help="any MLflow experiment with orch.cell/orch.seed tags")
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="metric to judge (default: the matrix's, else cross)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | markdown | csv | json | html")] = "table",
    out: Annotated[
        Path | None, typer.Option(help="write the report here (default: print; html: runs/reports/)")
    ] = None,
) -> None:
    """The verdict table: per cell, does the metric really fall after the warm-up?"""
    from orchestrator.matrix import MatrixError, load_matrix
    from orchestrator.reporting import FORMATS, ReportError, build_report
    from orchestrator.verdict import VerdictSettings

    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if (matrix is None) == (experiment is None):
        raise fail("give a matrix YAML or --experiment NAME (one of them)")
    specs = None
    settings = VerdictSettings()
    name = experiment
    if matrix is not None:
        try:
            mx, specs = load_matrix(matrix)
        except MatrixError as exc:
            raise fail(str(exc)) from None
        settings, name = mx.verdict, mx.name
    if metric:
        settings = settings.model_copy(update={"metric": metric})
    uri = tracking_uri()
    if not _store_exists(uri):
        raise fail(f"no tracking store at {uri}: run `orch sweep` first or pass --tracking-uri")
    try:
        rep = build_report(uri, name, settings, specs=specs, out_dir=out.parent if out else None)
    except ReportError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - an unreachable or broken store, whatever MLflow raises
        raise fail(
            f"cannot read the tracking store {uri}: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from None
    if fmt == "table":
        console.print(rep.table())
        console.print(f"figures: {', '.join(str(p) for p in rep.figures.values())}")
        if out:
            out.write_text(rep.render("markdown"))
        return
    text = rep.render(fmt)
    if out is None and fmt == "html":
        out = rep.out_dir / "report.html"
    if out is None:
        sys.stdout.write(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    console.print(f"wrote {out}")


def _register_subcommands() -> None:
    from orchestrator.cli_data import data_app
    from orchestrator.cli_diagnose import diagnose

    app.add_typer(data_app, name="data", help="synthesise and inspect paired HDF5 data")
    app.command()(diagnose)


_register_subcommands()


def run() -> None:  # pragma: no cover - console entry for `python -m orchestrator.cli`
    app(prog_name="orch")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
