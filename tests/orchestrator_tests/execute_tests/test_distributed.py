"""Sweeps across processes coordinated through PostgreSQL: exactly once, and dead workers' items retried."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.tracking import prepare_store


def _pg_bindir() -> Path | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d, "initdb").exists():
            return Path(d)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on loopback (Debian's package; .ci/run installs it)."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql package")
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="orch-pg-", dir="/tmp"))
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        os.chown(base, pg.pw_uid, pg.pw_gid)
        base.chmod(0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "orch", "--auth=trust", "-E", "UTF8")
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "start")
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "orch", "orch")
        yield f"postgresql://orch@127.0.0.1:{port}/orch"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], timeout=60
        )
        shutil.rmtree(base, ignore_errors=True)


def _matrix(tmp_path: Path, tiny: dict, *, epochs: int, pairs: int = 32) -> Path:
    tiny["data"]["pairs"] = pairs
    m = {
        "name": "dist",
        "base": tiny,
        "seeds": [0, 1],
        "cells": {"a": {"lr": 0.001}, "b": {"lr": 0.003}},
        "budget": {"epochs": epochs},
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    return path


def _orch(*args: str, cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw,
    )  # fmt: skip


def _finished_by_key(uri: str) -> dict[str, list]:
    # through prepare_store: it waits its turn while the coordinator creates the store (a raw client
    # opened meanwhile would run MLflow's schema migration alongside it)
    client = MlflowClient(tracking_uri=prepare_store(uri))
    exp = client.get_experiment_by_name("dist")
    out: dict[str, list] = {}
    for r in client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'run'"):
        out.setdefault(r.data.tags["orch.run_key"], []).append(r)
    return out


def test_coordinator_and_two_workers_run_each_item_exactly_once(
    postgres_url: str, tmp_path: Path, tiny: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the local sweep below keeps its queue file and figures in tmp_path/runs
    path = _matrix(tmp_path, tiny, epochs=2)
    uri = f"sqlite:///{tmp_path}/shared/mlflow.db"
    common = ["--storage", postgres_url, "--heartbeat", "1"]
    coord = _orch("--tracking-uri", uri, "sweep", str(path), "--workers", "0", *common, cwd=tmp_path)
    workers = [
        _orch("--tracking-uri", uri, "worker", str(path), "--workers", "1", *common, cwd=tmp_path)
        for _ in range(2)
    ]
    out, _ = coord.communicate(timeout=300)
    assert coord.returncode == 0, out
    for w in workers:
        w_out, _ = w.communicate(timeout=120)
        assert w.returncode == 0, w_out
    runs = _finished_by_key(uri)
    assert len(runs) == 4
    for key, attempts in runs.items():
        assert [r.info.status for r in attempts] == ["FINISHED"], key  # exactly once
    assert "a" in out and "verdict" in out  # the coordinator reports over every machine's runs

    # identical to a local sweep of the same matrix
    local_uri = f"sqlite:///{tmp_path}/local/mlflow.db"
    res = CliRunner().invoke(app, ["--tracking-uri", local_uri, "sweep", str(path), "--workers", "2"])
    assert res.exit_code == 0, res.output
    local = _finished_by_key(local_uri)
    assert set(local) == set(runs)
    for key in runs:
        assert runs[key][0].data.metrics["cross"] == local[key][0].data.metrics["cross"]


def test_a_killed_worker_leaves_its_item_to_another(postgres_url: str, tmp_path: Path, tiny: dict) -> None:
    path = _matrix(tmp_path, tiny, epochs=12, pairs=96)
    uri = f"sqlite:///{tmp_path}/shared/mlflow.db"
    common = ["--storage", postgres_url, "--heartbeat", "1"]
    coord = _orch("--tracking-uri", uri, "sweep", str(path), "--workers", "0", *common, cwd=tmp_path)
    doomed = _orch("--tracking-uri", uri, "worker", str(path), "--workers", "1", *common, cwd=tmp_path,
                   start_new_session=True)  # fmt: skip
    deadline, last_error = time.monotonic() + 300, None
    while True:  # wait until the doomed worker is inside a run
        time.sleep(0.5)
        for proc, who in ((coord, "coordinator"), (doomed, "worker")):
            assert proc.poll() is None, f"the {who} exited early:\n{proc.communicate()[0]}"
        assert time.monotonic() < deadline, f"the worker never started a run (last error: {last_error!r})"
        if Path(tmp_path, "shared", "mlflow.db").exists():
            try:
                running = [
                    r for rs in _finished_by_key(uri).values() for r in rs if r.info.status == "RUNNING"
                ]
            except Exception as exc:  # noqa: BLE001 - store or experiment still being created
                last_error = exc
                continue
            if running:
                break
    time.sleep(1.0)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=30)
    rescuer = _orch("--tracking-uri", uri, "worker", str(path), "--workers", "1", *common, cwd=tmp_path)
    out, _ = coord.communicate(timeout=400)
    assert coord.returncode == 0, out
    r_out, _ = rescuer.communicate(timeout=60)
    assert rescuer.returncode == 0, r_out
    runs = _finished_by_key(uri)
    assert len(runs) == 4
    for key, attempts in runs.items():
        assert sum(r.info.status == "FINISHED" for r in attempts) == 1, key
        assert not [r for r in attempts if r.info.status == "RUNNING"]
    assert any(r.info.status == "KILLED" for rs in runs.values() for r in rs)  # the dead worker's attempt


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["sweep", "{m}", "--storage", "postgresql://orch@127.0.0.1:1/orch"],
            "cannot open the queue storage",
        ),
        (["sweep", "{m}", "--workers", "0"], "--workers 0 only makes sense with --storage"),
        (["worker", "{m}", "--storage", "postgresql://orch:secret@127.0.0.1:1/orch"], "orch:***@127.0.0.1"),
    ],
)
def test_bad_storage_exits_2_and_starts_nothing(
    tmp_path: Path, tiny: dict, monkeypatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _matrix(tmp_path, tiny, epochs=2)
    res = CliRunner().invoke(app, [a.format(m=path) for a in args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output and "secret" not in res.output
    assert not (tmp_path / "runs").exists()
