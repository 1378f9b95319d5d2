"""What a machine gives a sweep's workers: CPUs it may use, GPUs, and which worker gets which.

Inside a Slurm allocation or under ``taskset`` a process may use fewer CPUs than the machine has, so the
count is the process's CPU affinity, not ``os.cpu_count()``. On a machine with GPUs each worker is pinned
to one device, round-robin over the visible GPUs, several workers a GPU when asked (small models leave a
large GPU mostly idle with one run on it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["WorkerSlot", "gpu_count", "plan_workers", "usable_cpus"]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def gpu_count() -> int:
    """CUDA devices visible to this process (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass(frozen=True)
class WorkerSlot:
    """One worker process: the device it trains on (None: the run config's own) and its CPU threads."""

    device: str | None
    threads: int


def plan_workers(
    n_runs: int,
    device: str = "auto",
    *,
    workers: int | None = None,
    workers_per_gpu: int = 1,
    gpus: int | None = None,
    cpus: int | None = None,
) -> list[WorkerSlot]:
    """The worker processes of a sweep of ``n_runs`` runs whose configs ask for ``device``.

    On GPUs (``device`` ``auto`` or ``cuda`` and a GPU visible): ``workers`` (default: ``workers_per_gpu``
    a GPU) pinned round-robin to ``cuda:0``, ``cuda:1``, ...; an explicit ``cuda:N`` is left to the config.
    On the CPU: ``workers`` (default: one a usable CPU). Never more workers than runs; the usable CPUs are
    split between the workers as torch threads.

    Args:
        gpus, cpus: The machine's GPU and usable CPU counts (default: this process's); tests give them.
    """
    gpus = gpu_count() if gpus is None else gpus
    cpus = usable_cpus() if cpus is None else cpus
    on_gpu = device in ("auto", "cuda") and gpus > 0
    default = gpus * max(1, workers_per_gpu) if on_gpu else cpus
    n = max(1, min(n_runs, workers if workers is not None else default))
    threads = max(1, cpus // n)
    if not on_gpu:
        return [WorkerSlot(None, threads) for _ in range(n)]
    return [WorkerSlot(f"cuda:{i % gpus}", threads) for i in range(n)]
