"""``orch status MATRIX``: where a matrix's runs stand in the store (done / running / left, an ETA); with
``--storage URL``, the newest sweep's queue and its Slurm tasks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import TrackingUri, check_exists, console, tracking_uri

__all__ = ["status"]


def status(
    matrix: Annotated[Path, typer.Argument(help="matrix YAML, e.g. matrices/test_matrix.yaml")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="the sweep's changes to the matrix, key=value")
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="the sweep's --storage (postgresql://...): its queue instead")
    ] = None,
    _uri: TrackingUri = None,
) -> None:
    """Where a matrix's runs stand in the store: done, running (each run's epoch) and left, with an ETA
    from the epochs measured so far.

    With --storage, the newest sweep's queue (waiting / running / done / failed) instead; a sweep
    submitted with --launcher slurm also lists its array job's tasks and their states."""
    check_exists(matrix)
    from orchestrator.matrix import load_matrix

    mx, specs = load_matrix(matrix, overrides=overrides or ())
    if storage is None:
        _local(mx.name, specs, mx.verdict.metric)
        return
    from orchestrator.execute.slurm import array_tasks
    from orchestrator.execute.workqueue import open_storage, sweep_status

    st = sweep_status(open_storage(storage), mx.name)
    if st is None:
        console.print(f"{mx.name}: no sweep in the queue storage", highlight=False)
        return
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(st.attrs.get("created", 0))))
    state = "active" if st.attrs.get("active") else "ended"
    console.print(
        f"[bold]{mx.name}[/]: sweep {st.sweep_id} started {created} ({state}): {st.waiting} waiting, "
        f"{st.running} running, {st.done} done, {st.failed} failed"
        + (f" ({st.retried} handed back by a dead worker and retried)" if st.retried else ""),
        highlight=False,
    )
    job = st.attrs.get("slurm_job")
    if job is None:
        return
    console.print(f"Slurm array job {job}, logs in {st.attrs.get('slurm_logs', '?')}", highlight=False)
    tasks = array_tasks(str(job))
    if tasks is None:
        console.print(
            "  squeue did not answer (or is not here): the tasks' states are unknown", highlight=False
        )
    elif not tasks:
        console.print("  squeue and sacct no longer know the job (it ended a while ago)", highlight=False)
    for t in tasks or []:
        console.print(f"  {t.task:<14} {t.state:<12} {t.elapsed:>10}  {t.where}", highlight=False)


def _local(experiment: str, specs: list, metric: str) -> None:
    """Done / running / left in the tracking store, each running run's epoch, and the ETA."""
    from orchestrator.cli.progress import clock
    from orchestrator.execute.standing import sweep_standing
    from orchestrator.tracking import Tracker
    from orchestrator.tracking.store import shared_searches

    with shared_searches():  # the plan and the runs' epochs read the runs once
        st = sweep_standing(specs, Tracker(tracking_uri()), experiment, metric)
    pace = "" if st.epoch_seconds is None else f", {st.epoch_seconds:.1f} s an epoch measured"
    eta = "" if st.eta_seconds is None or not (st.running or st.left) else f"; ETA {clock(st.eta_seconds)}"
    console.print(
        f"[bold]{experiment}[/]: {st.total} runs: {st.done} done, {len(st.running)} running, "
        f"{st.left} left{eta}{pace}",
        highlight=False,
    )
    for r in st.running:
        epoch = "starting" if r.epoch < 0 else f"epoch {r.epoch}/{r.epochs}"
        console.print(f"  {r.cell} seed {r.seed}: {epoch}, {clock(r.seconds)}", highlight=False)
