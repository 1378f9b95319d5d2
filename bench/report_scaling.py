"""How `orch report` scales with the store: a report over 60, 240 and 960 runs, cold and warm.

Each store holds one matrix of 4 cells whose runs logged 25 epochs of the metrics a sweep logs (the
judged one among them) and one image grid, with the params and tags a sweep gives them
(:func:`build_store`); the report is ``build_report`` as ``orch report MATRIX`` calls it: collect,
judge, figures. *Cold* is the first report (every curve fetched from the store); *warm* is
the next one (ended runs' curves come from the local cache, ``orchestrator/tracking/curves.py``). With
``--server`` the same is timed through an ``mlflow server`` on loopback over the largest store, which gives
the cost per run against a tracking server. With ``--profile N`` the next warm report over the largest
store runs under cProfile and its top N entries (cumulative time) are printed: where a warm report's time
goes. Run from the repository root::

    .venv/bin/python -m bench.report_scaling [--runs 60 240 960] [--server] [--profile 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import yaml
from rich.table import Table

from bench.common import wide_console
from model.trainer import EpochResult
from orchestrator.matrix import axis_params, load_matrix, varying_axes
from orchestrator.report import build_report
from orchestrator.tracking import RunKind, RunStatus, Tracker, prepare_store, run_tags

__all__ = ["build_store", "main"]

METRICS = (
    "content",
    "recon",
    "cross",
    "total",
    "cross_floor",
    "cross_clean",
    "cross_psnr_clean",
    "noise_leak",
)


def build_store(folder: Path, runs: int) -> tuple[str, Path]:
    """A store of ``runs`` runs of a 4-cell matrix (runs / 4 seeds a cell); returns its URI and matrix."""
    seeds = max(1, runs // 4)
    matrix = {
        "name": "scaling",
        "seeds": list(range(seeds)),
        "base": {"data": {"pairs": 16, "size": 16}, "trainer": {"epochs": 24}},
        "cells": {f"cell{i}": {"recon_weight": 0.1 * (i + 1)} for i in range(4)},
        "verdict": {"min_seeds": 3},
    }
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump(matrix))
    mx, specs = load_matrix(path)
    uri = prepare_store(f"sqlite:///{folder}/mlflow.db")
    tracker = Tracker(uri)
    rng = np.random.default_rng(0)
    grid = rng.random((64, 48))
    axes = varying_axes(specs)
    for spec in specs:
        tags = run_tags(RunKind.RUN, sweep="s", cell=spec.cell, seed=spec.seed, run_key=spec.run_key,
                        axes=spec.axes, epochs=spec.config.trainer.epochs)  # fmt: skip
        # logged as a sweep logs its runs: the axes that differ between the cells as params
        run_id = tracker.start_run(
            mx.name, spec.config, name=spec.cell, tags=tags, params=axis_params(spec, axes)
        )
        for epoch in range(25):
            metrics = {m: float(1.0 / (epoch + 1) + rng.normal(0, 0.01)) for m in METRICS}
            tracker.log_epoch(
                run_id, EpochResult(epoch, metrics, {"x_a_from_b": grid} if epoch == 24 else {})
            )
        tracker.finish(run_id, RunStatus.FINISHED)
    return uri, path


def _report_seconds(uri: str, matrix: Path, out: Path) -> float:
    mx, specs = load_matrix(matrix)
    t0 = time.perf_counter()
    build_report(uri, mx.name, mx.verdict, specs=specs, out_dir=out)
    return time.perf_counter() - t0


def _profile(uri: str, matrix: Path, out: Path, top: int) -> None:
    """A warm report under cProfile: its ``top`` entries by cumulative time."""
    profile = cProfile.Profile()
    profile.runcall(_report_seconds, uri, matrix, out)
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(top)
    print(text.getvalue())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(store: str, artifacts: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--artifacts-destination", str(artifacts), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the mlflow server did not start within 60 s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, nargs="+", default=[60, 240, 960])
    ap.add_argument("--server", action="store_true", help="also time the largest store through mlflow server")
    ap.add_argument(
        "--profile", type=int, default=0, metavar="N", help="profile a warm report: top N entries"
    )
    args = ap.parse_args(argv)
    console = wide_console()
    table = Table(title="orch report over a store of N runs (25 epochs each): seconds")
    for col in ("runs", "store built", "cold", "warm", "cold per run", "warm per run"):
        table.add_column(col, justify="right")
    root = Path(tempfile.mkdtemp(prefix="orch-scaling-"))
    largest: tuple[str, Path] | None = None
    for n in args.runs:
        folder = root / f"n{n}"
        folder.mkdir()
        t0 = time.perf_counter()
        uri, matrix = build_store(folder, n)
        built = time.perf_counter() - t0
        cold = _report_seconds(uri, matrix, folder / "report")
        warm = _report_seconds(uri, matrix, folder / "report")
        table.add_row(str(n), f"{built:.0f}", f"{cold:.2f}", f"{warm:.2f}", f"{cold / n * 1000:.1f} ms",
                      f"{warm / n * 1000:.1f} ms")  # fmt: skip
        largest = (uri, matrix)
    console.print(table)
    if args.profile and largest is not None:
        _profile(*largest, root / f"n{args.runs[-1]}" / "report", args.profile)
    if args.server and largest is not None:
        uri, matrix = largest
        n = len(load_matrix(matrix)[1])
        proc, url = _server(uri, Path(uri.removeprefix("sqlite:///")).parent / "artifacts")
        try:
            cold = _report_seconds(url, matrix, root / "server-report")
            warm = _report_seconds(url, matrix, root / "server-report")
        finally:
            proc.terminate()
        console.print(
            f"through mlflow server ({n} runs): cold {cold:.1f} s ({cold / n * 1000:.0f} ms a run), "
            f"warm {warm:.1f} s ({warm / n * 1000:.0f} ms a run)"
        )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
