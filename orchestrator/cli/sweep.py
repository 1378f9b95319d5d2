"""``orch sweep MATRIX`` and ``orch worker MATRIX``: run a matrix here, or join its sweep from elsewhere.

:func:`sweep_matrix` is the sweep command's path from a validated matrix to its verdicts; `orch ablate`
takes it too.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from orchestrator.cli.common import (
    TrackingUri,
    check_exists,
    console,
    err_console,
    fail,
    paths,
    tracking_uri,
)
from orchestrator.tracking.errors import GONE

#: ``--launcher``: worker processes here, or a Slurm job array.
Launcher = StrEnum("Launcher", {v: v for v in ("local", "slurm")})

if TYPE_CHECKING:
    from orchestrator.cli.progress import SweepDisplay
    from orchestrator.errors import Fault
    from orchestrator.execute.context import SweepOutcome, SweepRequest
    from orchestrator.execute.slurm import SlurmLauncher
    from orchestrator.matrix import Matrix, RunSpec

__all__ = ["sweep", "sweep_matrix", "worker"]


def sweep(
    matrix: Annotated[Path, typer.Argument(help="matrix YAML, e.g. matrices/test_matrix.yaml")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="changes to the matrix, key=value: budget.epochs=48 seeds=[0,1,2] base.trainer.lr=3e-4"
        ),
    ] = None,
    cells: Annotated[
        list[str] | None, typer.Option("--cells", help="run only these cells: a,b or repeated")
    ] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", help="run only cells with axis=value (a=1,b=2 or repeated)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="runs at once here (default: one per CPU core; 0 with --storage: coordinate only); "
            "with --launcher slurm: array tasks (default: one per run to do)",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan, run nothing")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="run everything again, even finished runs")] = False,
    budget_scale: Annotated[
        float | None,
        typer.Option(
            "--budget-scale", help="every run at K times its steps per epoch: the override budget.scale=K"
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="queue in this Optuna RDB (postgresql://...) so `orch worker` on other machines join"
        ),
    ] = None,
    heartbeat: Annotated[
        float, typer.Option(min=1, help="with --storage: seconds between worker heartbeats")
    ] = 10,
    yes: Annotated[
        bool, typer.Option("--yes", help="run a matrix of more than 10,000 runs (refused without it)")
    ] = False,
    workers_per_gpu: Annotated[
        int, typer.Option(min=1, help="on a machine with GPUs: workers sharing each GPU (small models)")
    ] = 1,
    retry_diverged: Annotated[
        bool,
        typer.Option("--retry-diverged", help="run again the runs that diverged (kept as results otherwise)"),
    ] = False,
    _uri: TrackingUri = None,
    launcher: Annotated[
        Launcher,
        typer.Option(help="local: worker processes here; slurm: a Slurm job array (needs --storage)"),
    ] = Launcher.local,
    partition: Annotated[str | None, typer.Option(help="slurm: the partition (default: Slurm's)")] = None,
    gpus_per_worker: Annotated[int, typer.Option(min=0, help="slurm: GPUs of each array task")] = 0,
    time_limit: Annotated[
        str | None, typer.Option("--time", help="slurm: each task's time limit, e.g. 04:00:00")
    ] = None,
    mem: Annotated[str | None, typer.Option(help="slurm: each task's memory, e.g. 16G")] = None,
    cpus_per_worker: Annotated[int | None, typer.Option(min=1, help="slurm: CPUs of each array task")] = None,
) -> None:
    """Run every (cell, seed) of a matrix not already finished, then print the verdict table.

    A run that diverged (NaN/Inf) is a result, not a failure: it is not run again unless asked
    (--retry-diverged). Overrides and selections are recorded on the sweep's parent run."""
    check_exists(matrix)
    from orchestrator.matrix import MAX_RUNS, load_matrix, parse_where, select_specs

    if budget_scale is not None:
        overrides = [*(overrides or []), f"budget.scale={budget_scale!r}"]
    if workers == 0 and storage is None:
        raise fail("--workers 0 only makes sense with --storage (other machines run the work)")
    # the matrix first: a refusal (a typo, too many runs) comes before torch is imported
    mx, specs = load_matrix(matrix, max_runs=None if yes else MAX_RUNS, overrides=overrides or ())
    conditions = parse_where(where or [])
    if cells or conditions:
        specs = select_specs(specs, cells=cells or (), where=conditions)
    edits = {"overrides": overrides or [], "cells": cells or [], "where": where or []}

    from orchestrator.execute.context import QueueSettings, SweepRequest

    slurm = {"partition": partition, "gpus": gpus_per_worker or None, "time": time_limit, "mem": mem}
    slurm["cpus"] = cpus_per_worker
    _check_launcher(launcher, storage, workers, slurm)
    submitter = None
    if launcher == "slurm" and not dry_run:
        submitter = _slurm_launcher(matrix, storage, workers, heartbeat, slurm, tuple(overrides or ()))
    sweep_matrix(
        mx,
        specs,
        matrix_path=matrix,
        dry_run=dry_run,
        request=SweepRequest(edits, fresh, retry_diverged),
        report=lambda outcome: _print_report(mx, specs, outcome),
        workers=workers,
        workers_per_gpu=workers_per_gpu,
        queue=QueueSettings(storage, heartbeat),
        launcher=submitter,
    )


def sweep_matrix(
    mx: Matrix,
    specs: list[RunSpec],
    *,
    matrix_path: Path,
    dry_run: bool,
    request: SweepRequest,
    report: Callable[[SweepOutcome], None],
    **where: Any,
) -> None:
    """The sweep command's path: check that the runs can start, then print the plan (``dry_run``) or run
    them with a live view (:func:`~orchestrator.execute.sweep.run_sweep`, ``where`` its workers, queue and
    launcher), say what ran, ``report`` the verdicts while the sweep's parent run is still open (a sweep
    killed while it reports is resumed and reports again, under the same parent), and exit 1 when runs
    crashed or were interrupted, 130 when the sweep itself is (Ctrl-C, SIGTERM, SIGHUP)."""
    from orchestrator.cli.progress import SweepDisplay
    from orchestrator.errors import Fault
    from orchestrator.execute.plan import preflight
    from orchestrator.execute.signals import STOP_SIGNALS, Preempted, handle_signals
    from orchestrator.execute.sweep import run_sweep

    preflight(specs)
    uri = tracking_uri()
    if dry_run:
        _dry_run(mx.name, specs, uri, request)
        return

    def done(outcome: SweepOutcome) -> None:  # the runs are done: say so, and record the verdicts
        stopped = f", interrupted {outcome.interrupted}" if outcome.interrupted else ""
        console.print(
            f"ran {outcome.ran} (finished {outcome.finished + outcome.stopped}, diverged "
            f"{outcome.diverged}, crashed {outcome.crashed}{stopped}), skipped {outcome.skipped} already "
            f"finished; sweep {outcome.sweep_id}"
        )
        report(outcome)

    display = SweepDisplay(console, len(specs), name=mx.name, store=uri, on_done=done)
    # SIGTERM (preemption, `timeout`) and SIGHUP (a closed terminal) take Ctrl-C's path: exit 130
    with handle_signals(STOP_SIGNALS, raise_as=Preempted.by):
        try:
            with display.live():
                outcome = run_sweep(
                    mx,
                    specs,
                    tracking_uri=uri,
                    matrix_path=matrix_path,
                    request=request,
                    display=display,
                    **where,
                )
        except KeyboardInterrupt:
            raise _stopped(display) from None
        except Fault as exc:  # a full disk, a read-only folder, a locked or vanished store
            raise _stopped(display, exc) from None
    if outcome.crashed:
        for cell, seed, reason in outcome.failures:
            err_console.print(f"  {cell} seed {seed}: {reason}", highlight=False)
    if outcome.interrupted:  # a worker got SIGTERM (preempted) while this coordinator went on
        err_console.print(
            f"{outcome.interrupted} run(s) interrupted before they finished (their worker got SIGTERM): "
            "run the same command to resume them from their last epoch"
        )
    if outcome.crashed or outcome.interrupted:
        raise typer.Exit(1)


def _stopped(display: SweepDisplay, fault: Fault | None = None) -> typer.Exit:
    """Ctrl-C, SIGTERM, SIGHUP (exit 130) or a fault (a full disk, a locked store: exit 1, or 2 when no run
    had started): what happened to the runs in flight, as the store recorded it, and what to do."""
    killed = len(display.killed)
    resumable = sum("resumable from epoch" in (e.reason or "") for e in display.killed)
    said = []
    if killed:
        said.append(f"{killed} run(s) in flight marked KILLED")
        said[0] += f" ({resumable} resumable from their last epoch)" if resumable else " (none resumable)"
    if display.running:  # started, and no end recorded: the store refused it
        said.append(
            f"{len(display.running)} run(s) left RUNNING (the store could not record their end): "
            "the next sweep ends them"
        )
    started = bool(said or display.done)
    if fault is None:
        said = said or ["no run was in flight"]
        err_console.print(
            f"interrupted: {'; '.join(said)}; run the same command to finish the rest", highlight=False
        )
        return typer.Exit(130)
    if getattr(fault, "kind", None) == GONE:  # their records went with the store
        said = [f"{killed + len(display.running)} run(s) in flight stopped"] if started else []
    if not said:
        said = ["no run was in flight" if started else "no run was started"]
        said += [] if started or fault.sweep_started else ["nothing was changed"]
    err_console.print(
        f"[bold red]error:[/] {escape(str(fault))}\n  the sweep stopped: {'; '.join(said)}", highlight=False
    )
    return typer.Exit(1 if started else 2)


def _check_launcher(launcher: str, storage: str | None, workers: int | None, slurm: dict) -> None:
    """``--launcher`` and the options that go with it (exit 2 naming the first one that does not fit)."""
    if launcher == "local":
        given = [f"--{k}" for k, v in _SLURM_OPTIONS.items() if slurm[v] is not None]
        if given:
            raise fail(f"{', '.join(given)} only apply with --launcher slurm")
        return
    if storage is None or "://" not in storage or storage.startswith(("journal://", "sqlite://")):
        raise fail("--launcher slurm needs --storage postgresql://... (a queue every Slurm task reaches)")
    if workers == 0:
        raise fail("--launcher slurm: --workers is the number of array tasks, at least 1")


_SLURM_OPTIONS = {
    "partition": "partition",
    "gpus-per-worker": "gpus",
    "time": "time",
    "mem": "mem",
    "cpus-per-worker": "cpus",
}


def _slurm_launcher(
    matrix: Path,
    storage: str | None,
    workers: int | None,
    heartbeat: float,
    slurm: dict,
    overrides: tuple[str, ...],
) -> SlurmLauncher:
    """The launcher of ``--launcher slurm`` (a bad ``--time`` exits 2)."""
    from orchestrator.execute.slurm import SlurmLauncher, SlurmResources

    resources = SlurmResources(**{k: v for k, v in slurm.items() if v is not None})
    uri = tracking_uri()
    if uri.startswith("sqlite:"):
        console.print(
            f"note: the Slurm tasks log to {uri}: on a cluster it must be on a filesystem every node mounts "
            "(or use an MLflow server: --tracking-uri http://...)",
            highlight=False,
        )
    return SlurmLauncher(
        matrix, storage or "", uri, resources, tasks=workers, heartbeat=heartbeat, overrides=overrides
    )


def _dry_run(name: str, specs: list, uri: str, request: SweepRequest) -> None:
    """``--dry-run``: the plan table and its counts."""
    from orchestrator.cli.plan_view import plan_view
    from orchestrator.cli.progress import say_stale
    from orchestrator.execute.plan import dry_run_plan

    plan = dry_run_plan(specs, uri, name, fresh=request.fresh, retry_diverged=request.retry_diverged)
    title = f"{name}: {len(specs)} runs ({len({s.cell for s in specs})} cells)"
    console.print(plan_view(plan, title), soft_wrap=False)
    todo = sum(p.state.runs for p in plan)
    console.print(f"{todo} to run, {len(plan) - todo} done  (store: {uri})")
    say_stale(console, plan)


def _print_report(mx: Matrix, specs: list[RunSpec], outcome: SweepOutcome) -> None:
    """The sweep's verdicts (recorded on its parent run) and where its figures are."""
    from orchestrator.report import ReportError, build_report

    try:
        report = build_report(
            tracking_uri(), mx.name, mx.verdict, specs=specs, parent_run_id=outcome.parent_run_id, record=True
        )
    except ReportError as exc:
        err_console.print(f"no verdicts: {exc}")
        return
    console.print(report.table())
    console.print(f"figures: {paths(report.figures.values())}", highlight=False)


def worker(
    matrix: Annotated[Path, typer.Argument(help="the same matrix YAML the coordinator runs")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="the coordinator's matrix overrides, key=value (the same ones)")
    ] = None,
    storage: Annotated[str, typer.Option(help="the coordinator's --storage (postgresql://...)")] = "",
    workers: Annotated[
        int | None, typer.Option(min=1, help="runs at once here (default: one per CPU core)")
    ] = None,
    heartbeat: Annotated[
        float, typer.Option(min=1, help="seconds between heartbeats (as the coordinator)")
    ] = 10,
    wait: Annotated[float, typer.Option(min=0, help="seconds to wait for a sweep to join")] = 60,
    workers_per_gpu: Annotated[int, typer.Option(min=1, help="workers sharing each GPU")] = 1,
    _uri: TrackingUri = None,
) -> None:
    """Join a sweep started with `orch sweep --storage` and run its items until none is left."""
    check_exists(matrix)
    from orchestrator.cli.progress import SweepDisplay
    from orchestrator.execute.context import QueueSettings
    from orchestrator.execute.join import join_sweep
    from orchestrator.matrix import load_matrix

    if not storage:
        raise fail("--storage is required: the coordinator's queue (postgresql://...)")
    mx, specs = load_matrix(matrix, overrides=overrides or ())
    display = SweepDisplay(console, len(specs))
    with display.live():
        outcome = join_sweep(
            mx,
            specs,
            tracking_uri=tracking_uri(),
            queue=QueueSettings(storage, heartbeat),
            workers=workers,
            workers_per_gpu=workers_per_gpu,
            wait=wait,
            display=display,
        )
    console.print(f"worker done: ran {outcome.ran} (crashed {outcome.crashed})")
    if outcome.crashed:
        raise typer.Exit(1)
