"""A sweep's workers as a Slurm job array, submitted with submitit.

The coordinator (`orch sweep --launcher slurm`) creates the queue in an RDB every node reaches
(PostgreSQL), then submits one array of ``tasks`` tasks; each task runs the equivalent of
``orch worker MATRIX --storage URL --tracking-uri URI`` in-process (:class:`SlurmWorker`, a picklable
callable that calls :func:`~orchestrator.execute.join.join_sweep` on that sweep's queue). A task that
is cancelled, preempted or runs out of time stops sending heartbeats and its item is handed to another
task; when no task is left the coordinator stops waiting. submitit's files (the pickled call, each
task's stdout and stderr) are kept under ``logs`` (``runs/slurm/<sweep id>/``).

submitit is imported only here and only when a submission is made (the ``distributed`` extra).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import UserError

__all__ = [
    "SlurmError",
    "SlurmLauncher",
    "SlurmResources",
    "SlurmWorker",
    "TaskState",
    "TaskStopped",
    "array_tasks",
    "check_sbatch",
    "parse_time",
    "preflight",
]

#: Job states after which a task runs nothing more (squeue and sacct spell them alike).
ENDED = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)

_TIMEOUT = 60  # seconds any Slurm command may take before the controller counts as unreachable


class SlurmError(UserError, RuntimeError):
    """Slurm cannot run the sweep's workers: no sbatch, resources it rejects, a failed submission."""


# ------------------------------------------------------------------------------------------ resources


def parse_time(text: str) -> int:
    """Minutes of a Slurm time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
    ``D-HH:MM:SS``), seconds rounded up.

    Raises:
        SlurmError: not a Slurm time limit.
    """
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if m is None:
        raise SlurmError(f"--time {text!r}: not a Slurm time limit (MM, HH:MM:SS or D-HH:MM:SS)")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # MM
        seconds = a * 60
    if seconds <= 0:
        raise SlurmError(f"--time {text!r}: the time limit must be positive")
    return math.ceil(seconds / 60)


@dataclass(frozen=True)
class SlurmResources:
    """What each array task asks for; None: the partition's default."""

    partition: str | None = None
    gpus: int = 0
    time: str | None = None
    mem: str | None = None
    cpus: int | None = None

    def __post_init__(self) -> None:
        if self.time is not None:
            parse_time(self.time)  # a bad value is refused before anything is submitted

    def sbatch_flags(self) -> list[str]:
        """The same request as sbatch options (for ``sbatch --test-only``)."""
        flags = [f"--partition={self.partition}"] if self.partition else []
        flags += [f"--gpus-per-node={self.gpus}"] if self.gpus else []
        flags += [f"--time={self.time}"] if self.time else []
        flags += [f"--mem={self.mem}"] if self.mem else []
        flags += [f"--cpus-per-task={self.cpus}"] if self.cpus else []
        return flags

    def submitit_parameters(self) -> dict[str, Any]:
        """The same request as :meth:`submitit.SlurmExecutor.update_parameters` keywords (``time``
        None: no ``--time`` line, the partition's default limit applies)."""
        params: dict[str, Any] = {"time": parse_time(self.time) if self.time else None}
        if self.partition:
            params["partition"] = self.partition
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if self.mem:
            params["mem"] = self.mem
        if self.cpus:
            params["cpus_per_task"] = self.cpus
        return params


# -------------------------------------------------------------------------------------- Slurm commands


def check_sbatch() -> str:
    """The path of ``sbatch``.

    Raises:
        SlurmError: no ``sbatch`` (or ``srun``, which runs each task) on PATH.
    """
    for tool in ("sbatch", "srun"):
        if shutil.which(tool) is None:
            raise SlurmError(
                f"--launcher slurm: {tool} not found on PATH (run on a Slurm login node, or load its module)"
            )
    return str(shutil.which("sbatch"))


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command; raises SlurmError when it cannot be run or does not answer in time."""
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmError(f"{args[0]} did not answer: {exc}") from None


def _first_error(text: str) -> str:
    """The line of a Slurm tool's stderr that says what went wrong."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["no message"])[-1].removeprefix("sbatch: error: ")


def preflight(resources: SlurmResources, tasks: int) -> None:
    """Ask the controller whether it would accept the array (``sbatch --test-only``: nothing is submitted).

    Raises:
        SlurmError: the controller rejects it (unknown partition, more than a node has), naming why.
    """
    flags = [*resources.sbatch_flags(), f"--array=0-{max(1, tasks) - 1}"]
    out = _run(["sbatch", "--test-only", *flags, "--wrap", "true"])
    if out.returncode != 0:
        raise SlurmError(f"sbatch rejects the workers' job ({' '.join(flags)}): {_first_error(out.stderr)}")


@dataclass(frozen=True)
class TaskState:
    """One array task as Slurm reports it."""

    task: str  # <array job id>_<task id>
    state: str  # RUNNING, PENDING, CANCELLED, ...
    elapsed: str = ""
    where: str = ""  # node, or why it is pending

    @property
    def ended(self) -> bool:
        return self.state in ENDED


def _parse_tasks(text: str, job_id: str) -> list[TaskState]:
    """``squeue``/``sacct`` lines ``id|state|elapsed|where`` of the array's tasks (not their steps)."""
    tasks = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0].startswith(f"{job_id}_") or "." in parts[0]:
            continue
        state = parts[1].split()[0] if parts[1].strip() else "UNKNOWN"  # sacct: "CANCELLED by 0"
        tasks.append(TaskState(parts[0], state, *(p.strip() for p in parts[2:4])))
    return sorted(tasks, key=lambda t: (len(t.task), t.task))


def array_tasks(job_id: str) -> list[TaskState] | None:
    """The tasks of array job ``job_id``: ``squeue`` while the controller remembers the job, else
    ``sacct`` (when accounting is enabled); ``[]`` when neither knows it, None when Slurm cannot be asked
    (no answer: the tasks may well still run)."""
    try:
        out = _run(["squeue", "-h", "-r", "--states=all", "-j", job_id, "-o", "%i|%T|%M|%R"])
        if out.returncode == 0 and out.stdout.strip():
            return _parse_tasks(out.stdout, job_id)
        if out.returncode != 0 and "invalid job id" not in out.stderr.lower():
            return None
        if shutil.which("sacct") is None:
            return []
        acct = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,Elapsed,NodeList"])
    except SlurmError:  # no squeue here, or the controller does not answer
        return None
    return _parse_tasks(acct.stdout, job_id) if acct.returncode == 0 else []


# ----------------------------------------------------------------------------------------- the task


@dataclass(frozen=True)
class SlurmWorker:
    """One array task: ``orch worker MATRIX --storage URL --tracking-uri URI`` on one sweep's queue.

    Picklable (submitit stores it in the logs folder). It runs in the coordinator's working directory,
    so relative paths (the matrix's base config, ``sqlite:///runs/mlflow.db``) mean what they meant
    there; the matrix file is read again, and a worker whose matrix or code differs from the
    coordinator's is refused (its run keys differ).
    """

    matrix: str
    storage: str
    tracking_uri: str
    queue_name: str
    cwd: str
    heartbeat: float = 10.0
    workers: int | None = 1
    wait: float = 60.0
    overrides: tuple[str, ...] = ()

    def __call__(self) -> dict[str, Any]:
        """Run the queue's items until none is left; returns what this task ran.

        SIGUSR2 (what submitit asks Slurm to send 90 s before the time limit, and what some sites send
        before a preemption) stops it: the runs in flight end KILLED and their items go back to the
        queue once their heartbeats are stale, for another task or the next sweep.
        """
        from orchestrator.execute.context import QueueSettings
        from orchestrator.execute.join import join_sweep
        from orchestrator.execute.signals import handle_signals
        from orchestrator.matrix import load_matrix

        os.chdir(self.cwd)
        try:  # it replaces submitit's handler, which would requeue or fail the task by its own bookkeeping
            with handle_signals([signal.SIGUSR2], raise_as=TaskStopped.by):
                matrix, specs = load_matrix(Path(self.matrix), overrides=self.overrides)
                outcome = join_sweep(
                    matrix,
                    specs,
                    tracking_uri=self.tracking_uri,
                    queue=QueueSettings(self.storage, self.heartbeat),
                    workers=self.workers,
                    wait=self.wait,
                    display=_TaskLog(),
                    queue_name=self.queue_name,
                )
        except TaskStopped as exc:
            print(f"task stopped: {exc}; its items go back to the queue", flush=True)
            return {"stopped": str(exc), "task": _task_id()}
        print(f"task done: ran {outcome.ran} (crashed {outcome.crashed})", flush=True)
        return {"ran": outcome.ran, "crashed": outcome.crashed, "task": _task_id()}


class TaskStopped(BaseException):
    """Slurm signalled a task to stop (a BaseException: it unwinds through the sweep's own handlers,
    which stop the worker processes and mark their runs KILLED)."""

    @classmethod
    def by(cls, signal_name: str) -> TaskStopped:
        return cls(f"{signal_name} (time limit near, or preempted)")


def _task_id() -> str:
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task else os.environ.get("SLURM_JOB_ID", "")


class _TaskLog:
    """The display of a task: one line per run started or ended, in the task's log."""

    def on_phase(self, text: str) -> None:
        pass

    def on_plan(self, plan: Any) -> None:
        pass

    def on_event(self, event: Any) -> None:
        if event.kind in ("start", "end"):
            what = "started" if event.kind == "start" else f"ended {event.status}"
            why = f": {event.reason}" if event.kind == "end" and event.reason else ""
            when = time.strftime("%Y-%m-%d %H:%M:%S")
            print(f"{when} [{_task_id()}] {event.spec.cell} seed {event.spec.seed} {what}{why}", flush=True)


# ------------------------------------------------------------------------------------- the launcher


@dataclass
class SlurmLauncher:
    """Submits a sweep's workers as one Slurm job array (a :class:`~orchestrator.execute.launcher.Launcher`).

    Args:
        matrix: the matrix file the tasks read (made absolute).
        storage: the queue's RDB URL; every compute node must reach it.
        tracking_uri: the MLflow store every task logs to (a server, or SQLite on a shared filesystem).
        tasks: array tasks (default: one per item to run); never more than items.
        logs: folder of submitit's files, one subfolder per sweep (must be on a filesystem the nodes share).
        poll: seconds between two ``squeue`` calls of :meth:`alive`.
    """

    matrix: Path
    storage: str
    tracking_uri: str
    resources: SlurmResources = field(default_factory=SlurmResources)
    tasks: int | None = None
    heartbeat: float = 10.0
    logs: Path = Path("runs/slurm")
    poll: float = 10.0
    overrides: tuple[str, ...] = ()  # the coordinator's matrix overrides: the tasks must expand the same runs
    job_id: str | None = field(default=None, init=False)
    folder: Path | None = field(default=None, init=False)
    n_tasks: int = field(default=0, init=False)
    _last: tuple[float, bool] = field(default=(0.0, True), init=False, repr=False)

    def check(self) -> None:
        """sbatch and submitit are there and the controller accepts the request (nothing is submitted).

        Raises:
            SlurmError: naming what is missing or what the controller rejects.
        """
        check_sbatch()
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise SlurmError("--launcher slurm needs submitit: pip install -e '.[distributed]'") from None
        preflight(self.resources, self.tasks or 1)

    def submit(self, queue_name: str, sweep_id: str, items: int) -> dict[str, Any]:
        """Submit the array; returns the queue attributes ``launcher``, ``slurm_job`` and ``slurm_logs``.

        Raises:
            SlurmError: sbatch refused the array (its message).
        """
        import submitit

        n = max(1, min(items, self.tasks or items))
        self.folder = (self.logs / sweep_id).resolve()
        worker = SlurmWorker(
            matrix=str(self.matrix.resolve()),
            storage=self.storage,
            tracking_uri=self.tracking_uri,
            queue_name=queue_name,
            cwd=str(Path.cwd()),
            heartbeat=self.heartbeat,
            workers=None if self.resources.gpus else 1,  # one process a GPU, else one using every CPU
            overrides=self.overrides,
        )
        try:
            executor = submitit.SlurmExecutor(folder=self.folder)
            executor.update_parameters(
                job_name=f"orch-{sweep_id}", array_parallelism=n, **self.resources.submitit_parameters()
            )
            jobs = executor.map_array(_call, [worker] * n)
        except Exception as exc:  # noqa: BLE001 - submitit wraps sbatch's failures in several types
            raise SlurmError(f"sbatch refused the workers' array job: {_first_error(str(exc))}") from None
        self.job_id, self.n_tasks = str(jobs[0].job_id).split("_")[0], n
        return {
            "launcher": "slurm",
            "slurm_job": self.job_id,
            "slurm_tasks": n,
            "slurm_logs": str(self.folder),
        }

    def alive(self) -> bool:
        """Whether a task of the array is pending or running (asked at most every ``poll`` seconds;
        True while Slurm does not answer)."""
        now = time.monotonic()
        if self.job_id is None or now - self._last[0] < self.poll:
            return self._last[1]
        tasks = array_tasks(self.job_id)
        alive = tasks is None or any(not t.ended for t in tasks)
        self._last = (now, alive)
        return alive

    def describe(self) -> str:
        """The array job, its tasks and where their logs are."""
        return f"Slurm array job {self.job_id} ({self.n_tasks} tasks; logs in {self.folder})"

    def release(self) -> None:
        """Cancel the tasks that have not started (the queue needs them no more); running ones finish
        their item and exit."""
        if self.job_id is not None:
            try:
                _run(["scancel", "--state=PENDING", self.job_id])
            except SlurmError:
                pass  # they find the queue closed and exit when they start


def _call(worker: SlurmWorker) -> dict[str, Any]:
    """What submitit runs in each task (a module-level function: pickled by reference)."""
    return worker()
