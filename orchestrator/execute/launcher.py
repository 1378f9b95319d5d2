"""Workers started by someone else: a batch scheduler's jobs that join a sweep's queue.

:func:`~orchestrator.execute.sweep.run_sweep` only coordinates when it is given a :class:`Launcher`
(:class:`~orchestrator.execute.slurm.SlurmLauncher` submits a Slurm job array): it creates the queue,
the launcher submits workers that join it, and the sweep waits until the queue is drained or no
submitted worker is left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.tracking import RunStatus

if TYPE_CHECKING:
    from orchestrator.execute.context import SweepContext

__all__ = ["Launcher", "submit_workers"]


class Launcher(Protocol):
    """Starts a sweep's workers elsewhere and says whether any of them is still there.

    :func:`~orchestrator.execute.sweep.run_sweep` calls :meth:`check` before it writes anything,
    :meth:`submit` once the queue holds its items, :meth:`alive` while it waits for the queue to
    drain, and :meth:`release` at the end.
    """

    def check(self) -> None:
        """Raise when a submission cannot work (missing tools, resources the scheduler rejects)."""

    def submit(self, queue_name: str, sweep_id: str, items: int) -> dict[str, Any]:
        """Submit workers for queue ``queue_name`` of ``items`` items; returns attributes to keep on the
        queue (the job id, where its logs are)."""

    def alive(self) -> bool:
        """Whether any submitted worker may still run an item (pending or running)."""

    def describe(self) -> str:
        """What was submitted, in words (after :meth:`submit`)."""

    def release(self) -> None:
        """The queue is drained or abandoned: withdraw the workers that never started."""


def submit_workers(ctx: SweepContext, launcher: Launcher) -> None:
    """Submit the workers of the sweep's queue (``ctx.work``, which holds its items). The launcher's
    attributes are kept on the queue and tagged on the sweep's parent run (``orch.<name>``).

    Raises:
        Exception: what ``launcher.submit`` raises; the queue is abandoned first (nobody may start its
            items) and the parent run ends KILLED.
    """
    work, parent = ctx.work, ctx.parent_run_id
    assert work is not None and parent is not None
    ctx.display.on_phase("submitting the workers")
    try:
        attrs = launcher.submit(work.name, ctx.sweep_id, len(work.items()))
    except BaseException as exc:
        work.abandon()
        work.close()
        ctx.tracker.finish(parent, RunStatus.KILLED, f"submission failed: {exc}")
        raise
    work.set_attrs(attrs)
    ctx.tracker.set_tags(parent, {f"orch.{key}": str(value) for key, value in attrs.items()})
    ctx.display.on_phase(f"waiting for {launcher.describe()}")
