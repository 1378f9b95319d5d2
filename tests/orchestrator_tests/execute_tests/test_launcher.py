"""run_sweep with a launcher (workers a scheduler starts): a failed submission leaves nothing to run, and a
sweep whose submitted workers are all gone ends instead of waiting for ever."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from orchestrator.execute.context import QueueSettings
from orchestrator.execute.sweep import run_sweep
from orchestrator.execute.workqueue import open_storage, sweep_status
from orchestrator.matrix import load_matrix
from orchestrator.tracking import prepare_store
from tests.orchestrator_tests.execute_tests import test_distributed as dist


class SubmitError(RuntimeError):
    pass


class FakeLauncher:
    """Submits nothing; ``fail`` makes the submission raise, ``alive`` says whether its workers are there."""

    def __init__(self, *, fail: bool = False, alive: bool = True) -> None:
        self.fail, self._alive = fail, alive
        self.calls: list[str] = []

    def check(self) -> None:
        self.calls.append("check")

    def submit(self, queue_name: str, sweep_id: str, items: int) -> dict[str, Any]:
        self.calls.append(f"submit {items}")
        if self.fail:
            raise SubmitError("sbatch: error: Batch job submission failed: Invalid account")
        return {"launcher": "fake", "fake_job": "42"}

    def alive(self) -> bool:
        return self._alive

    def describe(self) -> str:
        return "fake job 42"

    def release(self) -> None:
        self.calls.append("release")


def _sweep(tmp_path: Path, tiny: dict, launcher: FakeLauncher):
    mx, specs = load_matrix(dist._matrix(tmp_path, tiny, epochs=2))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    storage = f"sqlite:///{tmp_path}/queue.db"  # an RDB with heartbeats, as PostgreSQL
    run = functools.partial(
        run_sweep, mx, specs, tracking_uri=uri, queue=QueueSettings(storage, 1), launcher=launcher
    )
    return run, uri, storage


def _parent(uri: str):
    client = MlflowClient(tracking_uri=prepare_store(uri))
    exp = client.get_experiment_by_name("dist")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'sweep'")
    return parent


def test_a_failed_submission_abandons_the_queue_and_kills_the_parent_run(tmp_path: Path, tiny: dict) -> None:
    launcher = FakeLauncher(fail=True)
    run, uri, storage = _sweep(tmp_path, tiny, launcher)
    with pytest.raises(SubmitError, match="Invalid account"):
        run()
    assert launcher.calls == ["check", "submit 4"]
    st = sweep_status(open_storage(storage), "dist")
    assert (st.waiting, st.running, st.failed) == (0, 0, 4) and not st.attrs["active"]  # nothing to take
    parent = _parent(uri)
    assert parent.info.status == "KILLED" and "submission failed" in parent.data.tags["orch.failure"]


def test_a_sweep_ends_when_no_submitted_worker_is_left(tmp_path: Path, tiny: dict) -> None:
    launcher = FakeLauncher(alive=False)
    run, uri, storage = _sweep(tmp_path, tiny, launcher)
    outcome = run()
    assert launcher.calls == ["check", "submit 4", "release"]
    assert outcome.crashed == 4 and outcome.finished == 0
    assert {why for _, _, why in outcome.failures} == {
        "not run: every submitted worker ended before the queue was drained"
    }
    st = sweep_status(open_storage(storage), "dist")
    assert st.attrs["fake_job"] == "42" and st.failed == 4 and not st.attrs["active"]
    parent = _parent(uri)
    assert parent.info.status == "FINISHED" and parent.data.tags["orch.fake_job"] == "42"
