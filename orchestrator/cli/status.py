"""``orch status MATRIX --storage URL``: where the newest sweep of a matrix stands, and its Slurm tasks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import console

__all__ = ["status"]


def status(
    matrix: Annotated[Path, typer.Argument(help="matrix YAML, e.g. matrices/test_matrix.yaml")],
    storage: Annotated[str, typer.Option(help="the sweep's --storage (postgresql://...)")],
) -> None:
    """The newest sweep of a matrix: its queue (waiting / running / done / failed) and its Slurm tasks.

    A sweep submitted with --launcher slurm also lists its array job's tasks and their states."""
    from orchestrator.execute.slurm import array_tasks
    from orchestrator.execute.workqueue import open_storage, sweep_status
    from orchestrator.matrix import load_matrix

    mx, _ = load_matrix(matrix)
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
