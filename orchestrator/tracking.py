"""Everything orch writes to or reads from MLflow (the only module that imports it).

Names (the DESIGN.md contract): experiment = matrix name; one parent run per sweep; one child run
per (cell, seed) tagged ``orch.sweep``, ``orch.cell``, ``orch.seed``, ``orch.run_key``, with the
resolved config as params and a ``config.json`` artifact; metrics per epoch with ``step`` = epoch;
image grids ``x_a_from_b`` / ``x_b_from_a`` per epoch; a failed run carries ``orch.failure``.

All writes go through :class:`MlflowClient` with explicit run ids (no fluent "active run"), so one
process can track many runs at once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
import re
import sqlite3
import subprocess
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from model.config import RunConfig
from model.trainer import EpochResult

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
warnings.filterwarnings("ignore", module="mlflow")
logging.getLogger("mlflow").setLevel(logging.ERROR)
logging.getLogger("alembic").setLevel(logging.WARNING)

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

for _name in ("mlflow", "alembic", "mlflow.store.db.utils"):  # mlflow resets its loggers on import
    logging.getLogger(_name).setLevel(logging.WARNING if _name == "alembic" else logging.ERROR)

__all__ = [
    "RunRecord",
    "TrackingError",
    "Tracker",
    "flatten",
    "normalize_uri",
    "open_single_run",
    "prepare_store",
]

TAG_SWEEP, TAG_CELL, TAG_SEED, TAG_KEY = "orch.sweep", "orch.cell", "orch.seed", "orch.run_key"
TAG_FAILURE, TAG_KIND, TAG_STOP = "orch.failure", "orch.kind", "orch.early_stop"


class TrackingError(RuntimeError):
    """The tracking store cannot be used (unreachable, unknown experiment...)."""


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, f"{name}.")
        else:
            out[name] = value
    return out


def normalize_uri(uri: str) -> str:
    """Make a relative SQLite store absolute (MLflow caches stores by URI, whatever the cwd)."""
    db = _sqlite_path(uri)
    return f"sqlite:///{db.resolve()}" if db is not None and not db.is_absolute() else uri


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


def _artifact_root(uri: str) -> str | None:
    """``sqlite:///runs/mlflow.db`` keeps its artifacts in ``runs/artifacts``."""
    db = _sqlite_path(uri)
    if db is None:
        return None
    return (db.resolve().parent / "artifacts").as_uri()


def prepare_store(uri: str) -> str:
    """Create the store once, before any worker starts, and put SQLite in WAL mode.

    Several processes creating an SQLite store at once race MLflow's schema migration, so the
    coordinator calls this first.

    Raises:
        TrackingError: the store cannot be opened.
    """
    uri = normalize_uri(uri)
    db = _sqlite_path(uri)
    if db is None:
        _open_store(uri)
        return uri
    db.parent.mkdir(parents=True, exist_ok=True)
    # processes on this machine (a coordinator and `orch worker`s started at once) take turns: the
    # first creates the schema, the others find it
    with open(db.parent / f"{db.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        _open_store(uri)
    return uri


def _open_store(uri: str, attempts: int = 5) -> None:
    for i in range(attempts):
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
            return
        except Exception as exc:  # noqa: BLE001 - any failure here means the store is unusable
            # another process is creating or migrating the same store (one that did not take the lock,
            # e.g. an older orch): wait for it, then find the schema in place
            if "OperationalError" in f"{type(exc).__name__}: {exc}" and i < attempts - 1:
                time.sleep(0.5 * (i + 1))
                continue
            raise TrackingError(f"cannot open the tracking store {uri}: {exc}") from None


def _retry(fn, *args, attempts: int = 8, **kwargs):  # noqa: ANN001, ANN202
    """Call ``fn`` and retry on a locked SQLite database with back-off."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            if "locked" not in str(exc).lower() or i == attempts - 1:
                raise
            time.sleep(0.05 * 2**i)
    return None


def _versions() -> dict[str, str]:
    tags = {"orch.python": platform.python_version()}
    for pkg in ("orch", "torch", "mlflow", "optuna", "numpy"):
        try:
            tags[f"orch.version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
        if commit:
            tags["mlflow.source.git.commit"] = commit
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


@dataclass
class RunRecord:
    """A child run as read back from the store."""

    run_id: str
    cell: str
    seed: int
    run_key: str
    status: str
    sweep: str
    tags: dict[str, str]
    params: dict[str, str]
    start_time: int = 0
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def curve(self, metric: str) -> np.ndarray:
        """Values of ``metric`` by step (epoch), NaN where an epoch is missing."""
        points = self.history.get(metric, [])
        if not points:
            return np.array([], dtype=float)
        last = max(s for s, _ in points)
        out = np.full(last + 1, np.nan)
        for step, value in points:
            out[step] = value
        return out


class Tracker:
    """Writes sweeps and runs to one MLflow store."""

    def __init__(self, uri: str) -> None:
        self.uri = uri = normalize_uri(uri)
        self.client = MlflowClient(tracking_uri=uri)

    # ------------------------------------------------------------------------------- experiments

    def experiment_id(self, name: str, *, create: bool = True) -> str | None:
        exp = _retry(self.client.get_experiment_by_name, name)
        if exp is not None:
            return exp.experiment_id
        if not create:
            return None
        try:
            return _retry(self.client.create_experiment, name, artifact_location=_artifact_root(self.uri))
        except MlflowException:
            exp = self.client.get_experiment_by_name(name)  # created concurrently
            if exp is None:
                raise
            return exp.experiment_id

    # ------------------------------------------------------------------------------------- writes

    def start_sweep(
        self, experiment: str, *, name: str, tags: dict[str, str], artifacts: Iterable[Path] = ()
    ) -> str:
        """Create the parent run of a sweep; returns its run id."""
        exp_id = self.experiment_id(experiment)
        run = _retry(
            self.client.create_run, exp_id, run_name=name, tags={TAG_KIND: "sweep", **_versions(), **tags}
        )
        for path in artifacts:
            _retry(self.client.log_artifact, run.info.run_id, str(path))
        return run.info.run_id

    def start_run(
        self,
        experiment: str,
        config: RunConfig,
        *,
        name: str,
        tags: dict[str, str],
        parent_id: str | None = None,
    ) -> str:
        """Create a run with the resolved config as params and ``config.json``; returns its id."""
        exp_id = self.experiment_id(experiment)
        all_tags = {TAG_KIND: "run", **tags}
        if parent_id:
            all_tags["mlflow.parentRunId"] = parent_id
        run = _retry(self.client.create_run, exp_id, run_name=name, tags=all_tags)
        run_id = run.info.run_id
        params = [
            Param(k, json.dumps(v) if isinstance(v, list) else str(v))
            for k, v in flatten(config.to_dict()).items()
        ]
        for i in range(0, len(params), 100):
            _retry(self.client.log_batch, run_id, params=params[i : i + 100])
        _retry(self.client.log_dict, run_id, config.to_dict(), "config.json")
        return run_id

    def log_epoch(self, run_id: str, result: EpochResult) -> None:
        """One batched call for the epoch's metrics (step = epoch), then its image grids."""
        ts = int(time.time() * 1000)
        metrics = [Metric(k, float(v), ts, result.epoch) for k, v in result.metrics.items()]
        _retry(self.client.log_batch, run_id, metrics=metrics)
        for name, grid in result.images.items():
            img = (np.clip(grid, 0, 1) * 255).astype(np.uint8)
            _retry(self.client.log_image, run_id, img, key=name, step=result.epoch)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        _retry(self.client.log_text, run_id, text, artifact_file)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        _retry(self.client.log_artifact, run_id, str(path), artifact_path)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        _retry(self.client.log_batch, run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def finish(
        self, run_id: str, status: str, reason: str | None = None, traceback: str | None = None
    ) -> None:
        """End a run: ``finished`` / ``stopped`` -> FINISHED, ``diverged`` / ``crashed`` -> FAILED,
        ``killed`` -> KILLED; the reason goes into ``orch.failure`` (or ``orch.early_stop``)."""
        tags: dict[str, str] = {"orch.status": status}
        if status == "diverged":
            tags[TAG_FAILURE] = f"nan: {reason}"
        elif status == "crashed":
            tags[TAG_FAILURE] = reason or "exception"
        elif status == "killed":
            tags[TAG_FAILURE] = reason or "killed"
        elif status == "stopped" and reason:
            tags[TAG_STOP] = reason
        self.set_tags(run_id, tags)
        if traceback:
            self.log_text(run_id, traceback, "traceback.txt")
        mlflow_status = {"finished": "FINISHED", "stopped": "FINISHED", "killed": "KILLED"}.get(
            status, "FAILED"
        )
        _retry(self.client.set_terminated, run_id, status=mlflow_status)

    # -------------------------------------------------------------------------------------- reads

    def _search(self, experiment: str, filter_string: str = "", *, children: bool = True) -> list[Any]:
        exp_id = self.experiment_id(experiment, create=False)
        if exp_id is None:
            return []
        kind = "run" if children else "sweep"
        flt = f"tags.`{TAG_KIND}` = '{kind}'" + (f" and {filter_string}" if filter_string else "")
        runs, token = [], None
        while True:
            page = _retry(self.client.search_runs, [exp_id], flt, max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def run_states(self, experiment: str) -> dict[str, list[tuple[str, str]]]:
        """run key -> [(run id, MLflow status)] of every orch child run in ``experiment``; a FINISHED run that
        stopped early (tag ``orch.early_stop``) reads ``FINISHED_EARLY``."""
        out: dict[str, list[tuple[str, str]]] = {}
        for run in self._search(experiment):
            key = run.data.tags.get(TAG_KEY)
            if key:
                status = run.info.status
                if status == "FINISHED" and run.data.tags.get(TAG_STOP):
                    status = "FINISHED_EARLY"
                out.setdefault(key, []).append((run.info.run_id, status))
        return out

    def mark_killed(self, run_ids: Iterable[str], reason: str) -> int:
        """Mark runs left RUNNING by a killed sweep as KILLED."""
        n = 0
        for run_id in run_ids:
            self.finish(run_id, "killed", reason)
            n += 1
        return n

    def sweep_runs(self, experiment: str, sweep_id: str) -> list[Any]:
        """The child runs one sweep logged (from any machine)."""
        return self._search(experiment, f"tags.`{TAG_SWEEP}` = '{sweep_id}'")

    def latest_sweep(self, experiment: str) -> str | None:
        """Run id of the most recent sweep parent run in ``experiment``."""
        runs = self._search(experiment, children=False)
        if not runs:
            return None
        return max(runs, key=lambda r: r.info.start_time).info.run_id

    def experiment_names(self) -> list[str]:
        return [e.name for e in _retry(self.client.search_experiments)]

    def records(
        self, experiment: str, metrics: Iterable[str], *, keys: set[str] | None = None
    ) -> list[RunRecord]:
        """Child runs of ``experiment`` (all of them, or those whose run key is in ``keys``) with the
        per-step history of ``metrics`` and the final value of every other metric."""
        exp_id = self.experiment_id(experiment, create=False)
        if exp_id is None:
            raise TrackingError(f"no experiment named {experiment!r} in {self.uri}")
        wanted = list(dict.fromkeys(metrics))
        out = []
        for run in _retry(self.client.search_runs, [exp_id], "", max_results=50000):
            tags = run.data.tags
            if TAG_CELL not in tags or TAG_SEED not in tags:
                continue
            key = tags.get(TAG_KEY, run.info.run_id)
            if keys is not None and (key not in keys or tags.get(TAG_KIND) == "trial"):
                continue  # a matrix's runs are its sweeps' (search trials are judged by --experiment)
            rec = RunRecord(
                run_id=run.info.run_id,
                cell=tags[TAG_CELL],
                seed=int(tags[TAG_SEED]),
                run_key=key,
                status=run.info.status,
                sweep=tags.get(TAG_SWEEP, ""),
                tags=dict(tags),
                params=dict(run.data.params),
                start_time=run.info.start_time or 0,
            )
            for name in wanted:
                if name in run.data.metrics:
                    hist = _retry(self.client.get_metric_history, run.info.run_id, name)
                    rec.history[name] = sorted((m.step, m.value) for m in hist)
            for name, value in run.data.metrics.items():
                rec.history.setdefault(name, [(-1, value)])
            out.append(rec)
        return out

    def images(self, run_id: str, key: str) -> np.ndarray | None:
        """The last logged image grid ``key`` of a run, as uint8 (H, W[, C]), or None."""
        try:
            files = _retry(self.client.list_artifacts, run_id, "images")
        except MlflowException:
            return None
        # log_image(key=, step=) names files "<key>+step+<n>+timestamp+...png" ('%' in older MLflow)
        pattern = re.compile(rf"^{re.escape(key)}[+%]step[+%](\d+)[+%].*(?<!compressed)\.png$")
        steps = {}
        for f in files:
            match = pattern.match(f.path.rsplit("/", 1)[-1])
            if match:
                steps[int(match.group(1))] = f.path
        if not steps:
            return None
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=steps[max(steps)], tracking_uri=self.uri
        )
        from PIL import Image

        return np.asarray(Image.open(local))

    def sweep_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.log_artifact(run_id, path, artifact_path)


class _SingleRun:
    """`orch train`'s tracked run: ``log_epoch`` and ``finish`` bound to one run id."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.run_id = tracker, run_id

    def log_epoch(self, result: EpochResult) -> None:
        self.tracker.log_epoch(self.run_id, result)

    def finish(self, status: str, reason: str | None = None) -> None:
        self.tracker.finish(self.run_id, status, reason)


def open_single_run(uri: str, config: RunConfig, *, name: str, experiment: str = "orch-train") -> _SingleRun:
    """A standalone tracked run for ``orch train`` (experiment ``orch-train``)."""
    tracker = Tracker(prepare_store(uri))
    run_id = tracker.start_run(experiment, config, name=name, tags={TAG_KIND: "train", **_versions()})
    return _SingleRun(tracker, run_id)
