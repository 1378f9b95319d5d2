"""How fast `orch` starts: a usage error against `orch --version`, and warm reports of 20 and 1,000 runs.

Each command runs as a user runs it, `orch ...` in a fresh process (the console script beside this
interpreter), ``--repeat`` times; the median is printed with its ratio to `orch --version`. The stores are
built as :mod:`bench.report_scaling` builds them (4 cells, 25 epochs a run, logged as a sweep logs its runs):
20 runs is the main job's shape (4 cells x 5 seeds), 1,000 the scale target. A report is *warm* once one
report has run over the store (ended runs' curves cached, figures drawn); the first one is timed apart as
*cold*. Targets (issue 29, 2 cores): a usage error within 1.5x of `--version`, a warm report of the
main job's 20 runs under 2 s, a warm report of 1,000 runs under 5 s. Run from the repository root::

    .venv/bin/python -m bench.startup [--repeat 5] [--runs 20 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.table import Table

from bench.common import positive_int, wide_console
from bench.report_scaling import build_store

__all__ = ["main"]

#: The script `pip install -e .` puts beside the interpreter; ``python -m orchestrator.cli`` where absent.
_ORCH = Path(sys.executable).with_name("orch")


#: What any report pays before its own work: MLflow and the SQLite store it reads through.
_MLFLOW = ["-c", "import mlflow.tracking, mlflow.store.tracking.sqlalchemy_store"]


def _seconds(args: list[str], cwd: Path, expect: int) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one ``orch ARGS`` in ``cwd`` (``python ARGS`` when ARGS
    start with ``-c``); exits when its exit code is not ``expect``."""
    if args[0] == "-c":
        cmd = [sys.executable]
    else:
        cmd = [str(_ORCH)] if _ORCH.exists() else [sys.executable, "-m", "orchestrator.cli"]
    env = {**os.environ, "COLUMNS": "100"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != expect:
        raise SystemExit(f"{' '.join(args)} exited {res.returncode}, not {expect}:\n{res.stderr}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _median(args: list[str], cwd: Path, expect: int, repeat: int) -> tuple[float, float, float, float]:
    """Median, min and max wall seconds of ``repeat`` runs of ``orch ARGS``, and their median CPU seconds."""
    runs = [_seconds(args, cwd, expect) for _ in range(repeat)]
    wall = [w for w, _ in runs]
    return statistics.median(wall), min(wall), max(wall), statistics.median(c for _, c in runs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=positive_int, default=5, help="runs of each command (median)")
    ap.add_argument("--runs", type=positive_int, nargs="*", default=[20, 1000], help="store sizes to report")
    args = ap.parse_args(argv)
    console = wide_console()
    root = Path(tempfile.mkdtemp(prefix="orch-startup-"))
    try:
        rows: list[tuple[str, tuple[float, float, float, float], str]] = []
        version = _median(["--version"], root, 0, args.repeat)
        rows.append(("orch --version", version, ""))
        usage = _median(["report", "nonexistent.yaml"], root, 2, args.repeat)
        rows.append(("orch report nonexistent.yaml", usage, "<= 1.5x --version"))
        rows.append(
            ("python: import MLflow and its SQLite store", _median(_MLFLOW, root, 0, args.repeat), "")
        )
        for n in args.runs:
            folder = root / f"n{n}"
            folder.mkdir()
            t0 = time.perf_counter()
            uri, matrix = build_store(folder, n)
            console.print(f"store of {n} runs built in {time.perf_counter() - t0:.0f} s")
            report = ["report", str(matrix), "--tracking-uri", uri]
            cold, cpu = _seconds(report, folder, 0)
            rows.append((f"orch report ({n} runs), cold", (cold, cold, cold, cpu), ""))
            target = {20: "< 2 s", 1000: "< 5 s"}.get(n, "")
            rows.append((f"orch report ({n} runs), warm", _median(report, folder, 0, args.repeat), target))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table = Table(title=f"orch start-up: median of {args.repeat} fresh processes (seconds)")
    for col in ("command", "median", "min..max", "x --version", "CPU (user+sys)", "target"):
        table.add_column(col, justify="left" if col in ("command", "target") else "right")
    for name, (med, lo, hi, cpu), target in rows:
        table.add_row(
            name, f"{med:.2f}", f"{lo:.2f}..{hi:.2f}", f"{med / version[0]:.2f}", f"{cpu:.2f}", target
        )
    console.print(table)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    console.print(f"{os.cpu_count()} cores, load average {load:.1f} at the end")


if __name__ == "__main__":
    main()
