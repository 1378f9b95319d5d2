"""Benchmarks 3 and 4: what `orch sweep` costs on top of the bare runs, and its speed-up with workers.

On a matrix (default: the test matrix, cut to ``--seeds`` seeds per cell so the three timings fit in a few
minutes), in one invocation:

- **bare**: every run trained by ``model.trainer.fit`` one after the other in this process, all cores
  to torch, data generated once and shared (no tracking, no images written, no report);
- **sweep, 1 worker**: the ``orch sweep`` command in a fresh process on a fresh store: process start,
  the queue, MLflow logging of every epoch and image, the verdict table and figures at the end;
- **sweep, N workers** (``--workers``, default 2): the same command with N worker processes.

Overhead is (sweep 1 worker - bare) / bare; speed-up is sweep 1 worker / sweep N workers.

    .venv/bin/python -m bench.sweep_overhead [--matrix matrices/test_matrix.yaml] [--seeds 1] [--workers 2]

``--workers 1`` times the sweep with one worker only (no scaling run).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from bench.common import ROOT, TEST_MATRIX, wide_console
from model.data import open_source
from model.trainer import fit
from orchestrator.matrix import load_matrix

__all__ = ["main"]


def _cut(matrix: Path, seeds: int, out: Path) -> Path:
    data = yaml.safe_load(matrix.read_text())
    data["seeds"] = list(data.get("seeds", [0]))[:seeds]
    data["name"] = f"{data['name']}_bench"
    if isinstance(data.get("base"), str):
        data["base"] = str((matrix.parent / data["base"]).resolve())
    path = out / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _bare(path: Path) -> float:
    _, specs = load_matrix(path)
    torch.set_num_threads(os.cpu_count() or 1)
    sources: dict[str, object] = {}
    t0 = time.perf_counter()
    for spec in specs:
        key = spec.config.data.model_dump_json()
        if key not in sources:
            sources[key] = open_source(spec.config.data)
        result = fit(spec.config, source=sources[key])
        assert result.status == "finished", result.reason
    return time.perf_counter() - t0


def _sweep(path: Path, workers: int, store: Path) -> float:
    cmd = [sys.executable, "-m", "orchestrator.cli", "--tracking-uri", f"sqlite:///{store}/mlflow.db"]
    cmd += ["sweep", str(path), "--workers", str(workers)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=store, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    seconds = time.perf_counter() - t0
    if res.returncode not in (0, 1):  # 1: a verdict disagreed with an expectation, not a failure
        raise SystemExit(f"orch sweep failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", default=str(TEST_MATRIX))
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    console = wide_console()
    with tempfile.TemporaryDirectory(dir=ROOT / "runs") as tmp:
        tmp_path = Path(tmp)
        path = _cut(Path(args.matrix), args.seeds, tmp_path)
        n = len(load_matrix(path)[1])
        console.print(
            f"{n} runs of {Path(args.matrix).name} ({args.seeds} seed(s) per cell), {os.cpu_count()} cores"
        )
        bare = _bare(path)
        console.print(f"bare runs in one process: {bare:.1f} s")
        stores = {w: tmp_path / f"workers{w}" for w in {1, max(args.workers, 1)}}
        for store in stores.values():
            store.mkdir()
        one = _sweep(path, 1, stores[1])
        console.print(f"orch sweep --workers 1: {one:.1f} s")
        many = None
        if args.workers > 1:
            many = _sweep(path, args.workers, stores[args.workers])
            console.print(f"orch sweep --workers {args.workers}: {many:.1f} s")
    scaling = f"; speed-up with {args.workers} workers: {one / many:.2f}x" if many else ""
    console.print(
        f"overhead of orch sweep (1 worker) over the bare runs: {100 * (one - bare) / bare:+.1f}% "
        f"({one - bare:+.1f} s over {n} runs){scaling}"
    )


if __name__ == "__main__":
    main()
