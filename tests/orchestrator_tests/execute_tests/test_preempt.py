"""Preemption: a sweep worker SIGTERMed mid-run, and the next sweep continuing the same MLflow run."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from mlflow import MlflowClient

from model.checkpoint import load_checkpoint
from model.trainer import fit
from orchestrator.matrix import load_matrix

EPOCHS = 10


def _matrix(folder: Path, tiny: dict, epochs: int = EPOCHS, steps: int = 40) -> Path:
    tiny["trainer"]["steps_per_epoch"] = steps  # epochs long enough to be interrupted in the middle of one
    path = folder / "m.yaml"
    cells = {"a": {"lr": 0.002}}
    m = {"name": "preempt", "base": tiny, "seeds": [3], "cells": cells, "budget": {"epochs": epochs}}
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    return path


def _sweep(cwd: Path, path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", "sweep", str(path), "--workers", "1", *extra]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return env | {"PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def _worker_pids(parent: int) -> list[int]:
    """The sweep's spawned worker processes (not multiprocessing's resource tracker)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def _the_run(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name("preempt")
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'run'")


def _curve(client: MlflowClient, run_id: str, metric: str) -> dict[int, float]:
    history = client.get_metric_history(run_id, metric)
    steps = [m.step for m in history]
    assert len(steps) == len(set(steps)), f"{metric}: an epoch logged twice: {sorted(steps)}"
    return {m.step: m.value for m in history}


def test_sigterm_of_a_worker_then_the_next_sweep_resumes_the_same_run(tmp_path: Path, tiny: dict) -> None:
    path = _matrix(tmp_path, tiny)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    proc = subprocess.Popen(
        _sweep(tmp_path, path), cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 180
    while True:  # wait until the run has logged epoch 2, then preempt its worker
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before it was preempted"
        runs = _the_run(client) if (tmp_path / "runs" / "mlflow.db").exists() else []
        if runs and len(client.get_metric_history(runs[0].info.run_id, "cross")) >= 3:
            break
        time.sleep(0.1)
    run_id = runs[0].info.run_id
    pids = _worker_pids(proc.pid)
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGTERM)
    assert proc.wait(timeout=120) == 1  # the sweep went on, but a run did not finish
    assert "1 run(s) interrupted before they finished" in proc.stderr.read().decode()

    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED"
    k = int(killed.data.tags["orch.checkpoint_epoch"])
    assert 2 <= k < EPOCHS
    assert killed.data.tags["orch.failure"] == f"interrupted (SIGTERM): resumable from epoch {k}"
    assert max(_curve(client, run_id, "cross")) == k  # the abandoned epoch k+1 was not logged
    plan = subprocess.run(
        _sweep(tmp_path, path, "--dry-run"), cwd=tmp_path, env=_env(), capture_output=True, text=True
    )
    assert f"interrupted: resume (from epoch {k})" in plan.stdout, plan.stdout + plan.stderr

    again = subprocess.run(
        _sweep(tmp_path, path), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr
    (run,) = _the_run(client)  # the same run, continued: no second one
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.data.tags["orch.resumed_from_epoch"] == str(k)
    for metric in ("cross", "recon", "total", "train_total"):
        steps = sorted(_curve(client, run_id, metric))
        assert steps == list(range(0 if not metric.startswith("train") else 1, EPOCHS + 1)), metric
    local = Path(client.download_artifacts(run_id, "checkpoint", str(tmp_path)))
    assert load_checkpoint(local / "last.pt").epoch == EPOCHS and (local / "config.json").exists()

    # the same run, never interrupted: the same curve
    (spec,) = load_matrix(path)[1]
    whole = fit(spec.config)
    mine = _curve(client, run_id, "cross")
    assert sorted(mine) == [e.epoch for e in whole.epochs]
    for e in whole.epochs:
        assert math.isclose(mine[e.epoch], e.metrics["cross"], rel_tol=1e-5, abs_tol=1e-7), e.epoch


def test_an_interrupted_run_with_a_checkpoint_is_planned_resumed_unless_fresh(
    tmp_path: Path, tiny: dict
) -> None:
    """``--fresh`` runs everything from scratch: an interrupted run's checkpoint is not resumed."""
    from orchestrator.execute.plan import PlanState, plan_sweep, resume_points
    from orchestrator.tracking import RunKind, RunStatus, Tracker, prepare_store, run_tags

    path = _matrix(tmp_path, tiny, epochs=1, steps=2)
    _, specs = load_matrix(path)
    (spec,) = specs
    tracker = Tracker(prepare_store(f"sqlite:///{tmp_path}/runs/mlflow.db"))
    run_id = tracker.start_run(
        "preempt",
        spec.config,
        name="a/seed3",
        tags=run_tags(RunKind.RUN, cell="a", seed=3, run_key=spec.run_key),
    )
    ckpt = tmp_path / "last.pt"
    fit(spec.config, checkpoint=ckpt)
    tracker.log_checkpoint(run_id, ckpt, 1, spec.config.to_dict())
    tracker.finish(run_id, RunStatus.KILLED, "interrupted (SIGTERM): resumable from epoch 1")
    assert resume_points(tracker, "preempt", specs)[spec.run_key].run_id == run_id
    (item,) = plan_sweep(specs, tracker, "preempt")
    assert item.state is PlanState.RESUME and item.why == "from epoch 1"
    (item,) = plan_sweep(specs, tracker, "preempt", fresh=True)
    assert item.state is PlanState.TODO


def test_an_unreadable_checkpoint_restarts_its_run_from_epoch_0_with_one_warning(
    tmp_path: Path, tiny: dict
) -> None:
    """A truncated ``last.pt`` (a disk that filled, a copy cut short): the run's key and config are known, so
    the sweep runs it again from epoch 0, says so once, and keeps the unreadable file aside."""
    from orchestrator.tracking import RunKind, RunStatus, Tracker, prepare_store, run_tags

    path = _matrix(tmp_path, tiny, epochs=2, steps=2)
    (spec,) = load_matrix(path)[1]
    tracker = Tracker(prepare_store(f"sqlite:///{tmp_path}/runs/mlflow.db"))
    tags = run_tags(RunKind.RUN, cell="a", seed=3, run_key=spec.run_key)
    run_id = tracker.start_run("preempt", spec.config, name="a/seed3", tags=tags)
    ckpt = tmp_path / "last.pt"
    fit(
        spec.config.model_copy(update={"trainer": spec.config.trainer.model_copy(update={"epochs": 1})}),
        checkpoint=ckpt,
    )
    tracker.log_checkpoint(run_id, ckpt, 1, spec.config.to_dict())
    tracker.finish(run_id, RunStatus.KILLED, "interrupted (SIGTERM): resumable from epoch 1")
    logged = (
        Path(tracker.client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
        / "checkpoint"
        / "last.pt"
    )
    logged.write_bytes(logged.read_bytes()[: logged.stat().st_size // 2])

    res = subprocess.run(_sweep(tmp_path, path), cwd=tmp_path, env=_env(), capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Traceback" not in out, out
    assert out.count("cannot be read") == 1 and "the run starts again from epoch 0" in out, out
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    runs = {r.info.run_id: r for r in _the_run(client)}
    assert runs.pop(run_id).info.status == "KILLED"  # the interrupted attempt, as it was
    (again,) = runs.values()
    assert again.info.status == "FINISHED" and "orch.resumed_from_epoch" not in again.data.tags
    assert sorted(_curve(client, again.info.run_id, "cross")) == [0, 1, 2]
    assert (tmp_path / "runs" / "checkpoints" / spec.run_key / f"unreadable-{run_id}.pt").exists()
