"""Per-epoch curves read from the store: fetched concurrently, and kept on disk once a run has ended.

A report needs, for every run, the history of the judged metric: one MLflow call per run and metric,
which makes a report over many runs slow (and, against a tracking server, one network round trip each).
A run that has ended does not change, so its curves are cached by run id and end time, next to an SQLite
store (``<store folder>/cache/curves``; a moved store keeps its cache) or, for a server, under
``$XDG_CACHE_HOME/orch/curves/<store hash>``. A run that is still running is always fetched.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from orchestrator.tracking.store import retry, sqlite_path

__all__ = ["CurveCache", "fetch_curves"]

Curves = dict[str, list[tuple[int, float]]]


class CurveCache:
    """Ended runs' curves on disk, one JSON file a run, valid while the run's end time is the same."""

    def __init__(self, uri: str) -> None:
        db = sqlite_path(uri)
        if db is not None:
            self.root = db.resolve().parent / "cache" / "curves"
        else:
            base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
            self.root = Path(base) / "orch" / "curves" / hashlib.sha256(uri.encode()).hexdigest()[:16]

    def _path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    def get(self, run_id: str, end_time: int | None, metrics: Iterable[str]) -> Curves | None:
        """The cached curves of ``metrics`` of a run that ended at ``end_time``; None if any is missing."""
        if end_time is None:
            return None
        try:
            entry = json.loads(self._path(run_id).read_text())
        except (OSError, ValueError):
            return None
        if entry.get("end_time") != end_time:
            return None
        known = entry.get("metrics", {})
        if any(m not in known for m in metrics):
            return None
        return {m: [(int(s), float(v)) for s, v in known[m]] for m in metrics}

    def put(self, run_id: str, end_time: int, curves: Curves) -> None:
        """Keep a run's curves (merged with what is kept); a cache that cannot be written is skipped."""
        try:
            entry = json.loads(self._path(run_id).read_text())
            if entry.get("end_time") != end_time:
                entry = {}
        except (OSError, ValueError):
            entry = {}
        merged = {**entry.get("metrics", {}), **curves}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self._path(run_id).with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"end_time": end_time, "metrics": merged}))
            tmp.replace(self._path(run_id))
        except OSError:
            pass


def fetch_curves(
    client: Any, uri: str, runs: list[Any], metrics: list[str], *, threads: int = 8
) -> dict[str, Curves]:
    """run id -> metric -> sorted (step, value) points, for every run of ``runs`` (MLflow run objects)
    and every metric of ``metrics`` it logged; from the cache where the run has ended, else fetched with
    ``threads`` concurrent calls."""
    cache = CurveCache(uri)
    out: dict[str, Curves] = {}
    todo: list[tuple[Any, str]] = []
    for run in runs:
        logged = [m for m in metrics if m in run.data.metrics]
        ended = run.info.end_time if run.info.status != "RUNNING" else None
        cached = cache.get(run.info.run_id, ended, logged)
        if cached is not None:
            out[run.info.run_id] = cached
        else:
            out[run.info.run_id] = {}
            todo += [(run, m) for m in logged]

    def one(job: tuple[Any, str]) -> tuple[str, str, list[tuple[int, float]]]:
        run, metric = job
        history = retry(client.get_metric_history, run.info.run_id, metric)
        return run.info.run_id, metric, sorted((m.step, m.value) for m in history)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for run_id, metric, points in pool.map(one, todo):
            out[run_id][metric] = points
    for run in {id(r): r for r, _ in todo}.values():
        if run.info.status != "RUNNING" and run.info.end_time is not None:
            cache.put(run.info.run_id, run.info.end_time, out[run.info.run_id])
    return out
