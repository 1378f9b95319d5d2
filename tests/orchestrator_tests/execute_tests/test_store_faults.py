"""The machine fails a running sweep: a full disk, a folder turned read-only, a store another program holds
locked, a store deleted. Each ends in one message naming the cause and what to do, with no traceback, and
the same command finishes the rest once the cause is gone (real `orch sweep` processes, a real tmpfs and
bind mounts, a real SQLite lock)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from mlflow import MlflowClient

from model.checkpoint import load_checkpoint
from orchestrator.tracking import prepare_store
from tests.conftest import Mounts
from tests.orchestrator_tests.execute_tests import faults


def _fill(folder: Path) -> None:
    """Write to ``folder/filler`` until its disk is full."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def _stopped(proc, code: int = 1) -> str:  # noqa: ANN001
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == code, out
    assert out.count("error:") == 1 and "Traceback" not in out, out
    return out


def _finishes_the_rest(folder: Path, path: Path, keys: int) -> None:
    """The same command, once the cause is gone, finishes every run once and leaves nothing RUNNING."""
    out = faults.orch(folder, "sweep", str(path), "--workers", "2").communicate(timeout=400)[0]
    runs = faults.runs(folder)
    finished = [r.data.tags["orch.run_key"] for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == len(set(finished)) == keys, out
    assert not [r for r in runs + faults.runs(folder, "sweep") if r.info.status == "RUNNING"], out


def test_a_full_disk_stops_the_sweep_as_sigterm_does(tmp_path: Path, tiny: dict, mounts: Mounts) -> None:
    runs = mounts.tmpfs(tmp_path / "runs", "16m")  # the store, its artifacts, the queue, the checkpoints
    path = faults.write_matrix(tmp_path, tiny, epochs=12)
    proc = faults.orch(tmp_path, "sweep", str(path), "--workers", "2")
    faults.wait_epochs(tmp_path, proc, runs_=2, epoch=1)
    _fill(runs)
    out = _stopped(proc)
    assert "error: the disk is full" in out and "free some space, then run the same command" in out, out
    (runs / "filler").unlink()
    client = MlflowClient(faults.uri(tmp_path))
    (parent,) = faults.runs(tmp_path, "sweep")
    assert parent.info.status == "KILLED" and "stopped (disk full)" in parent.data.tags["orch.failure"]
    for run in faults.runs(tmp_path):  # none RUNNING; a checkpoint is recorded only when it is whole
        tags = run.data.tags
        assert run.info.status in ("KILLED", "FINISHED"), (run.info.status, tags)
        if run.info.status == "KILLED":
            assert tags["orch.failure"].startswith("stopped (disk full): "), tags
        if "orch.checkpoint_epoch" in tags:
            local = client.download_artifacts(run.info.run_id, "checkpoint/last.pt", str(tmp_path))
            assert load_checkpoint(local).epoch == int(tags["orch.checkpoint_epoch"])
    _finishes_the_rest(tmp_path, path, keys=2)


def test_a_folder_turned_read_only_stops_the_sweep_with_one_message(
    tmp_path: Path, tiny: dict, mounts: Mounts
) -> None:
    path = faults.write_matrix(tmp_path, tiny, epochs=12)
    proc = faults.orch(tmp_path, "sweep", str(path), "--workers", "2")
    faults.wait_epochs(tmp_path, proc, runs_=2, epoch=1)
    mounts.read_only(tmp_path / "runs")
    out = _stopped(proc)
    assert "cannot be written (Read-only file system): make it writable" in out, out
    mounts.undo()
    killed = [r for r in faults.runs(tmp_path) if r.info.status == "KILLED"]
    assert f"{len(killed)} run(s) in flight marked KILLED" in out or not killed, out  # as the store says
    _finishes_the_rest(tmp_path, path, keys=2)


def test_a_store_locked_by_another_program_is_waited_for_then_named(tmp_path: Path, tiny: dict) -> None:
    path = faults.write_matrix(tmp_path, tiny, seeds=1, epochs=1)
    store = Path(prepare_store(faults.uri(tmp_path)).removeprefix("sqlite:///"))
    holder = sqlite3.connect(store, isolation_level=None)  # a backup or a shell holding a write transaction
    holder.execute("BEGIN IMMEDIATE")
    try:
        proc = faults.orch(tmp_path, "sweep", str(path), env={"ORCH_LOCK_WAIT": "2"})
        out = _stopped(proc, code=2)
        assert f"the tracking store {store} is locked by another program" in out, out
        assert "no run was started; nothing was changed" in out, out
        waited = faults.orch(tmp_path, "sweep", str(path), env={"ORCH_LOCK_WAIT": "120"})
        deadline = time.monotonic() + 120
        for line in waited.stdout:  # it reached the store: the lock goes a few seconds later
            if line.startswith("opening the tracking store") or time.monotonic() > deadline:
                break
        time.sleep(3)
    finally:
        holder.rollback()
        holder.close()
    out = waited.communicate(timeout=300)[0]
    assert waited.returncode == 0 and "Traceback" not in out, out
    assert [r.info.status for r in faults.runs(tmp_path)] == ["FINISHED"]


def test_a_store_deleted_under_a_running_sweep_is_said_with_what_was_lost(tmp_path: Path, tiny: dict) -> None:
    path = faults.write_matrix(tmp_path, tiny)
    proc = faults.orch(tmp_path, "sweep", str(path), "--workers", "2")
    faults.wait_epochs(tmp_path, proc, runs_=2, epoch=1)
    for f in (tmp_path / "runs").glob("mlflow.db*"):
        if f.is_file():
            f.unlink()
    out = _stopped(proc)
    assert "was deleted or replaced while orch used it" in out and "is lost unless you kept a copy" in out, (
        out
    )
    assert "2 run(s) in flight stopped" in out, out
