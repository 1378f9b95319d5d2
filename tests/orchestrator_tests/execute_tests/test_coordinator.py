"""One coordinator per matrix, and the parent run's status whatever stops it (real `orch sweep` processes).

A second coordinator of a matrix is refused (exit 2, naming the holder) and never touches the first one's
runs; SIGTERM ends a sweep as Ctrl-C does (exit 130, parent KILLED "interrupted"); after a `kill -9` the
next sweep ends what was left RUNNING and finishes the rest under the same parent run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.execute.lease import SweepBusy, hold_lease
from orchestrator.tracking import prepare_store
from tests.orchestrator_tests.execute_tests import test_distributed as dist

REPO = Path(__file__).resolve().parents[3]
postgres_url = dist.postgres_url  # a throw-away PostgreSQL server on loopback (module scope)


def _matrix(tmp_path: Path, tiny: dict, *, epochs: int, pairs: int = 64, seeds: int = 2) -> Path:
    tiny["data"]["pairs"] = pairs
    m = {"name": "coord", "base": tiny, "seeds": list(range(seeds)), "cells": {"a": {"lr": 0.001}}}
    m["budget"] = {"epochs": epochs}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    return path


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/runs/mlflow.db"


def _orch(tmp_path: Path, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "orchestrator.cli", "--tracking-uri", _uri(tmp_path), *args]
    return subprocess.Popen(
        cmd, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw
    )


def _runs(tmp_path: Path, kind: str = "run") -> list:
    # through prepare_store: it waits its turn while a sweep creates the store
    client = MlflowClient(tracking_uri=prepare_store(_uri(tmp_path)))
    exp = client.get_experiment_by_name("coord")
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], f"tags.`orch.kind` = '{kind}'", max_results=1000)


def _wait_running(tmp_path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until a child run of the sweep ``proc`` is RUNNING in the store."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the sweep exited early:\n{proc.communicate()[0]}"
        assert time.monotonic() < deadline, "no run started in time"
        if (tmp_path / "runs" / "mlflow.db").exists():
            try:
                if any(r.info.status == "RUNNING" for r in _runs(tmp_path)):
                    return
            except Exception:  # noqa: BLE001, S110 - the store or the experiment is still being created
                pass
        time.sleep(0.3)


def _children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the sweep's workers)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@contextmanager
def _paused(pids: list[int]) -> Iterator[None]:
    """Stop ``pids`` for the block (a sweep that is certainly still running), then let them go on."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def _assert_each_key_finished_once(tmp_path: Path, keys: int) -> list:
    runs = _runs(tmp_path)
    finished = [r.data.tags["orch.run_key"] for r in runs if r.info.status == "FINISHED"]
    assert len(finished) == len(set(finished)) == keys, [(r.info.status, r.data.tags) for r in runs]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    return runs


def test_two_sweeps_started_together_one_runs_the_other_exits_2(tmp_path: Path, tiny: dict) -> None:
    path = _matrix(tmp_path, tiny, epochs=8)
    procs = [_orch(tmp_path, "sweep", str(path), "--workers", "1") for _ in range(2)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    refused = outs[[p.returncode for p in procs].index(2)]
    winner = procs[[p.returncode for p in procs].index(0)]
    assert refused.count("error:") == 1 and "Traceback" not in refused, refused
    assert f"matrix 'coord' is being swept by pid {winner.pid} on host {socket.gethostname()}" in refused
    runs = _assert_each_key_finished_once(tmp_path, keys=2)
    assert not [r for r in runs if r.info.status != "FINISHED" or "orch.failure" in r.data.tags]
    assert len(_runs(tmp_path, "sweep")) == 1  # the refused one wrote no parent run


def test_a_second_sweep_while_the_first_runs_exits_2_and_leaves_its_runs_alone(
    tmp_path: Path, tiny: dict
) -> None:
    path = _matrix(tmp_path, tiny, epochs=4)
    first = _orch(tmp_path, "sweep", str(path), "--workers", "1")
    _wait_running(tmp_path, first)
    with _paused(_children_of(first.pid)):  # its worker waits: the first sweep is certainly running
        (running,) = [r.info.run_id for r in _runs(tmp_path) if r.info.status == "RUNNING"]
        second = _orch(tmp_path, "sweep", str(path), "--workers", "1")
        out = second.communicate(timeout=120)[0]
        assert second.returncode == 2, out
        assert f"being swept by pid {first.pid}" in out and "(sweep " in out and "Traceback" not in out
        plan = _orch(tmp_path, "sweep", str(path), "--dry-run")  # reading the plan is never blocked
        plan_out = plan.communicate(timeout=120)[0]
        assert plan.returncode == 0 and "to run" in plan_out, plan_out
        client = MlflowClient(tracking_uri=_uri(tmp_path))
        assert client.get_run(running).info.status == "RUNNING"  # untouched
    out = first.communicate(timeout=300)[0]
    assert first.returncode == 0, out
    runs = _assert_each_key_finished_once(tmp_path, keys=2)
    assert all(r.info.status == "FINISHED" and "orch.failure" not in r.data.tags for r in runs)


def test_sigterm_to_the_coordinator_exits_130_and_the_next_sweep_resumes_its_parent(
    tmp_path: Path, tiny: dict
) -> None:
    path = _matrix(tmp_path, tiny, epochs=4)
    proc = _orch(tmp_path, "sweep", str(path), "--workers", "1")
    _wait_running(tmp_path, proc)
    with _paused(_children_of(proc.pid)):  # still mid-run when the signal comes
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, out
    assert "interrupted" in out and "Traceback" not in out
    (parent,) = _runs(tmp_path, "sweep")
    assert parent.info.status == "KILLED" and parent.data.tags["orch.failure"] == "interrupted"
    runs = _runs(tmp_path)
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]

    again = _orch(tmp_path, "sweep", str(path), "--workers", "1")
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    (resumed,) = _runs(tmp_path, "sweep")  # the same parent run, reopened
    assert resumed.info.run_id == parent.info.run_id and resumed.info.status == "FINISHED"
    assert resumed.data.tags["orch.resumed"] == "1" and "orch.failure" not in resumed.data.tags
    runs = _assert_each_key_finished_once(tmp_path, keys=2)
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}


def test_kill_9_of_the_coordinator_and_its_workers_then_one_parent_finishes_the_rest(
    tmp_path: Path, tiny: dict
) -> None:
    path = _matrix(tmp_path, tiny, epochs=6, seeds=3)
    proc = _orch(tmp_path, "sweep", str(path), "--workers", "1", start_new_session=True)
    deadline = time.monotonic() + 240
    for line in proc.stdout:  # the first run finished: kill the sweep inside the second
        if line.startswith("[1/"):
            break
        assert time.monotonic() < deadline, "the sweep did not finish a run in time"
    _wait_running(tmp_path, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    (parent,) = _runs(tmp_path, "sweep")
    assert parent.info.status == "RUNNING"  # nobody was left to end it

    again = _orch(tmp_path, "sweep", str(path), "--workers", "1")
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    parents = _runs(tmp_path, "sweep")
    assert [p.info.run_id for p in parents] == [parent.info.run_id]
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["orch.last_interruption"] == "coordinator died"
    runs = _assert_each_key_finished_once(tmp_path, keys=3)
    killed = [r for r in runs if r.info.status == "KILLED"]
    assert killed and all("coordinator died" in r.data.tags["orch.failure"] for r in killed)
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    args = ["--tracking-uri", _uri(tmp_path), "report", str(path), "--format", "json"]
    report = CliRunner().invoke(app, args)  # one parent, one cell judged over every seed
    assert report.exit_code == 0, report.output
    assert [v["seeds"] for v in json.loads(report.output)] == [[0, 1, 2]]


def test_kill_9_during_the_final_report_then_the_next_sweep_reports_under_the_same_parent(
    tmp_path: Path, tiny: dict
) -> None:
    """The parent run ends FINISHED only once its verdicts are recorded: killed while it reports, it is
    resumed by the next sweep (nothing left to run), which records them, rather than left FINISHED without
    verdicts beside a second parent."""
    path = _matrix(tmp_path, tiny, epochs=2, seeds=2)
    proc = _orch(tmp_path, "sweep", str(path), "--workers", "2", start_new_session=True)
    for line in proc.stdout:  # the runs are done; the report starts
        if line.startswith("ran 2 "):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    (parent,) = _runs(tmp_path, "sweep")
    assert parent.info.status == "RUNNING"
    again = _orch(tmp_path, "sweep", str(path), "--workers", "2")
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0 and "ran 0 " in out, out
    (resumed,) = _runs(tmp_path, "sweep")
    assert resumed.info.run_id == parent.info.run_id and resumed.info.status == "FINISHED"
    client = MlflowClient(tracking_uri=_uri(tmp_path))
    assert "report/verdicts.json" in [f.path for f in client.list_artifacts(parent.info.run_id, "report")]


def test_the_file_lease_names_its_holder_and_is_free_once_released(tmp_path: Path) -> None:
    where = {"tracking_uri": _uri(tmp_path), "storage": None, "queue_dir": tmp_path / "runs" / "queue"}
    with hold_lease("coord", **where) as lease:
        lease.announce("abc123")
        with pytest.raises(SweepBusy) as busy, hold_lease("coord", **where):
            pass
        assert f"pid {os.getpid()} on host {socket.gethostname()} since " in str(busy.value)
        assert "(sweep abc123): wait for it, or stop it" in str(busy.value)
        with hold_lease("another matrix", **where):  # a lease per matrix
            pass
    with hold_lease("coord", **where):
        pass


def test_the_postgresql_lease_is_one_per_matrix_across_stores_and_freed_when_its_holder_dies(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two machines (two stores, two folders) and one queue database: the database's lock decides."""
    here = {"storage": postgres_url, "matrix_path": Path("m.yaml")}
    a = {"tracking_uri": f"sqlite:///{tmp_path}/a/mlflow.db", "queue_dir": tmp_path / "a" / "queue"}
    b = {"tracking_uri": f"sqlite:///{tmp_path}/b/mlflow.db", "queue_dir": tmp_path / "b" / "queue"}
    with hold_lease("pgcoord", **here, **a) as lease:
        lease.announce("def456")
        with pytest.raises(SweepBusy) as busy, hold_lease("pgcoord", **here, **b):
            pass
        message = str(busy.value)
        assert f"pid {os.getpid()} on host {socket.gethostname()}"[:40] in message, message
        assert "(sweep def456)" in message and "orch worker m.yaml --storage postgresql://" in message
    with hold_lease("pgcoord", **here, **b):
        pass
    code = (
        "import sys, time; from pathlib import Path; from orchestrator.execute.lease import hold_lease\n"
        f"with hold_lease('pgcoord', storage={postgres_url!r}, tracking_uri='sqlite:///{tmp_path}/c/m.db',"
        f" queue_dir=Path('{tmp_path}/c')):\n    print('held', flush=True); time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(SweepBusy), hold_lease("pgcoord", **here, **a):
        pass
    holder.kill()
    holder.wait(timeout=30)
    deadline = time.monotonic() + 30
    while True:  # the server frees the lock once it sees the connection gone
        try:
            with hold_lease("pgcoord", **here, **a):
                break
        except SweepBusy:
            assert time.monotonic() < deadline, "the dead holder's lease was never freed"
            time.sleep(0.5)


def test_a_new_coordinator_leaves_a_live_remote_workers_run_alone(
    postgres_url: str, tmp_path: Path, tiny: dict
) -> None:
    """The coordinator dies, a worker on another machine still trains (its heartbeat is fresh): the next
    coordinator neither marks that run KILLED nor runs its key again."""
    path = _matrix(tmp_path, tiny, epochs=6, seeds=2)
    common = ["--storage", postgres_url, "--heartbeat", "20"]
    coord = _orch(tmp_path, "sweep", str(path), "--workers", "0", *common, start_new_session=True)
    remote = _orch(tmp_path, "worker", str(path), "--workers", "1", *common)
    _wait_running(tmp_path, coord)
    (live,) = [r.info.run_id for r in _runs(tmp_path) if r.info.status == "RUNNING"]
    # its trainer is held mid-run (well within three heartbeats) while the coordinator is replaced
    with _paused(_children_of(remote.pid)):
        os.killpg(coord.pid, signal.SIGKILL)
        coord.wait(timeout=30)
        again = _orch(tmp_path, "sweep", str(path), "--workers", "1", *common)
        deadline = time.monotonic() + 50
        while "orch.resumed" not in _runs(tmp_path, "sweep")[0].data.tags:  # the dead sweep settled
            assert again.poll() is None, again.communicate()[0]
            assert time.monotonic() < deadline, "the new coordinator did not resume the sweep in time"
            time.sleep(0.3)
        assert MlflowClient(tracking_uri=_uri(tmp_path)).get_run(live).info.status == "RUNNING"
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    r_out = remote.communicate(timeout=120)[0]
    assert remote.returncode == 0, r_out
    runs = _assert_each_key_finished_once(tmp_path, keys=2)
    assert not [r for r in runs if r.info.status != "FINISHED"]  # nothing killed, nothing run twice
    assert MlflowClient(tracking_uri=_uri(tmp_path)).get_run(live).info.status == "FINISHED"
