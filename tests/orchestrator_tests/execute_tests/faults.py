"""What the fault tests share: a real `orch sweep` process on a tiny matrix, and its store read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient

from orchestrator.tracking import prepare_store

REPO = Path(__file__).resolve().parents[3]
NAME = "faults"


def write_matrix(folder: Path, tiny: dict, *, seeds: int = 2, epochs: int = 400) -> Path:
    """A matrix of one cell whose runs do not end by themselves within a test (``epochs`` of 4 steps)."""
    m = {"name": NAME, "base": tiny, "seeds": list(range(seeds)), "cells": {"a": {"lr": 0.001}}}
    m["budget"] = {"epochs": epochs}
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    return path


def uri(folder: Path) -> str:
    return f"sqlite:///{folder}/runs/mlflow.db"


def orch(folder: Path, *args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen:
    """`orch ARGS` in ``folder`` against its store, as a terminal runs it: its own process group (a signal
    to the group reaches its workers too) with Ctrl-C's default action, output merged."""
    base = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    base.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "orchestrator.cli", "--tracking-uri", uri(folder), *args]
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    options |= {"start_new_session": True, "preexec_fn": _default_sigint} | kw
    return subprocess.Popen(cmd, cwd=folder, env=base | (env or {}), **options)


def _default_sigint() -> None:
    """A test runner may start its children with SIGINT ignored; a terminal's foreground job has it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def runs(folder: Path, kind: str = "run") -> list[Any]:
    """The sweep's runs of ``kind`` (run, sweep); none while its store does not exist."""
    if not (folder / "runs" / "mlflow.db").exists():
        return []
    # through prepare_store: it waits its turn while a sweep creates the store
    client = MlflowClient(tracking_uri=prepare_store(uri(folder)))
    exp = client.get_experiment_by_name(NAME)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], f"tags.`orch.kind` = '{kind}'", max_results=1000)


def wait_epochs(
    folder: Path,
    proc: subprocess.Popen,
    *,
    runs_: int,
    epoch: int,
    timeout: float = 240,
    on_wait: Callable[[], None] | None = None,
) -> None:
    """Until ``runs_`` runs of the sweep ``proc`` are RUNNING and each has logged ``epoch`` (``on_wait``
    called meanwhile: reading what the sweep prints)."""
    deadline = time.monotonic() + timeout
    while True:
        if on_wait is not None:
            on_wait()
        assert proc.poll() is None, f"the sweep exited early:\n{proc.communicate()[0]}"
        assert time.monotonic() < deadline, "the runs did not reach their epoch in time"
        try:
            live = [r for r in runs(folder) if r.info.status == "RUNNING"]
            if len(live) >= runs_ and all(
                len(MlflowClient(uri(folder)).get_metric_history(r.info.run_id, "cross")) > epoch
                for r in live
            ):
                return
        except Exception:  # noqa: BLE001, S110 - the store or the experiment is still being created
            pass
        time.sleep(0.3)


def assert_interrupted_and_resumable(folder: Path, out: str, *, runs_: int) -> None:
    """Every run in flight ended KILLED with its checkpoint logged and "resumable from epoch N" true; the
    parent ended KILLED; the message says so, once, with no traceback."""
    assert "Traceback" not in out and "Error" not in out, out
    assert f"interrupted: {runs_} run(s) in flight marked KILLED ({runs_} resumable" in out, out
    done = runs(folder)
    assert len(done) == runs_ and not [r for r in done if r.info.status == "RUNNING"], out
    for r in done:
        tags = r.data.tags
        assert r.info.status == "KILLED", (r.info.status, tags)
        epoch = tags["orch.checkpoint_epoch"]
        assert tags["orch.failure"].endswith(f"resumable from epoch {epoch}"), tags
    (parent,) = runs(folder, "sweep")
    assert parent.info.status == "KILLED" and parent.data.tags["orch.failure"] == "interrupted"
