"""Workers and devices: CPUs the process may use, GPUs pinned round-robin (GPU counts given at the
boundary, as this machine has none)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from orchestrator.execute.resources import WorkerSlot, plan_workers, usable_cpus


def test_cpu_workers_follow_the_affinity_mask() -> None:
    if not hasattr(os, "sched_setaffinity") or not shutil_which("taskset"):
        pytest.skip("taskset is not available")
    code = "from orchestrator.execute.resources import usable_cpus; print(usable_cpus())"
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "1"
    assert usable_cpus() <= (os.cpu_count() or 1)


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"cpus": 2, "gpus": 0}, [WorkerSlot(None, 1)] * 2),
        ({"cpus": 1, "gpus": 0}, [WorkerSlot(None, 1)]),  # `taskset -c 0`: one worker, not one a core
        ({"cpus": 16, "gpus": 0, "workers": 4}, [WorkerSlot(None, 4)] * 4),
        ({"cpus": 16, "gpus": 2}, [WorkerSlot("cuda:0", 8), WorkerSlot("cuda:1", 8)]),
        (
            {"cpus": 16, "gpus": 2, "workers_per_gpu": 2},
            [
                WorkerSlot("cuda:0", 4),
                WorkerSlot("cuda:1", 4),
                WorkerSlot("cuda:0", 4),
                WorkerSlot("cuda:1", 4),
            ],
        ),
        ({"cpus": 16, "gpus": 1, "workers": 8}, [WorkerSlot("cuda:0", 2)] * 8),
    ],
)
def test_plan_workers(kwargs: dict, expected: list[WorkerSlot]) -> None:
    assert plan_workers(20, "auto", **kwargs) == expected


def test_never_more_workers_than_runs_and_cpu_configs_stay_on_the_cpu() -> None:
    assert len(plan_workers(1, "auto", cpus=8, gpus=4)) == 1
    assert plan_workers(5, "cpu", cpus=4, gpus=2) == [WorkerSlot(None, 1)] * 4
    assert plan_workers(5, "cuda:1", cpus=4, gpus=2) == [WorkerSlot(None, 1)] * 4  # explicit: the config's
