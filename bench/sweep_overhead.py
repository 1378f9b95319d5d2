"""Benchmarks 3 and 4: what `orch sweep` costs on top of the bare runs, and its speed-up with workers.

On a matrix (default: the test matrix, cut to ``--seeds`` seeds per cell so the timings fit in a few
minutes), in one invocation:

- **bare**: every run trained by ``model.trainer.fit`` one after the other in one fresh process, all
  cores to torch, data generated once and shared (no tracking, no images written, no report); the
  process's imports are not timed;
- **sweep, 1 worker**: the ``orch sweep`` command in a fresh process on a fresh store: process start,
  the queue, MLflow logging of every epoch and image, the verdict table and figures at the end. Its
  time is also split into what its runs took (MLflow start to end of each run, summed) and the rest;
- **sweep, N workers** (``--workers``, default 2): the same command with N worker processes, once.

Overhead is (sweep 1 worker - bare) / bare; speed-up is sweep 1 worker / sweep N workers.

The speed of a shared 2-core machine drifts by 10% or more over minutes, which is larger than the
overhead being measured. ``--repeats R`` times bare and sweep R times each, alternating which goes
first (bare-sweep, sweep-bare, ...), and prints every pair, so a drift shows instead of being read as
overhead; the overall figure is over the summed times. ``--paired N`` measures the two parts of the
overhead on a finer clock instead: one run (the first cell, seed 0) bare and as a one-run sweep, N
times alternating, each pair within a minute: the per-run part is the mean ratio of the run's time in
the sweep to the bare run's, with its standard error; the fixed part is the sweep's time outside its run.

    .venv/bin/python -m bench.sweep_overhead [--matrix matrices/test_matrix.yaml] [--seeds 1] [--workers 2]
                                             [--repeats 1]
    .venv/bin/python -m bench.sweep_overhead --paired 8
    .venv/bin/python -m bench.sweep_overhead --main-job

``--main-job`` times the README's main job exactly as a user runs it (``orch sweep
matrices/test_matrix.yaml``: every seed, the default workers, a fresh store, the verdict table at the end)
against the sum of its bare runs, timed in the same invocation, and prints the sweep's verdicts.
``--workers 1`` times the sweep with one worker only (no scaling run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from mlflow import MlflowClient
from rich.console import Console

from bench.common import ROOT, TEST_MATRIX, positive_int, wide_console
from model.data import open_source
from model.trainer import fit
from orchestrator.matrix import load_matrix
from orchestrator.tracking.vocabulary import TAG_KIND

__all__ = ["main"]


def _cut(matrix: Path, seeds: int, out: Path, cells: int | None = None) -> Path:
    data = yaml.safe_load(matrix.read_text())
    data["seeds"] = list(data.get("seeds", [0]))[:seeds]
    data["name"] = f"{data['name']}_bench"
    if cells is not None:
        data["cells"] = dict(list(data["cells"].items())[:cells])
    if isinstance(data.get("base"), str):
        data["base"] = str((matrix.parent / data["base"]).resolve())
    path = out / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _bare_in_process(path: Path) -> float:
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


def _bare(path: Path) -> float:
    """The bare runs in a fresh process (as the sweep's worker is), its imports not timed."""
    code = "import sys; from pathlib import Path; from bench.sweep_overhead import _bare_in_process as b; "
    code += "print(b(Path(sys.argv[1])))"
    res = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"bare runs failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return float(res.stdout.split()[-1])


def _sweep(path: Path, workers: int | None, store: Path, echo: Console | None = None) -> tuple[float, float]:
    """Wall seconds of ``orch sweep`` on a fresh store (``workers`` None: the default), and the seconds its
    runs took (summed); ``echo`` prints what the sweep printed (its verdicts) once it ended."""
    uri = f"sqlite:///{store}/mlflow.db"
    cmd = [sys.executable, "-m", "orchestrator.cli", "--tracking-uri", uri, "sweep", str(path)]
    cmd += [] if workers is None else ["--workers", str(workers)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=store, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    seconds = time.perf_counter() - t0
    if res.returncode not in (0, 1):  # 1: a verdict disagreed with an expectation, not a failure
        raise SystemExit(f"orch sweep failed ({res.returncode}):\n{res.stderr[-3000:]}")
    if echo is not None:
        echo.print(res.stdout.rstrip(), highlight=False, markup=False)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(load_matrix(path)[0].name)
    runs = client.search_runs([exp.experiment_id], f"tags.`{TAG_KIND}` = 'run'", max_results=10_000)
    return seconds, sum((r.info.end_time - r.info.start_time) / 1000 for r in runs)


def _paired(matrix: Path, pairs: int, tmp: Path, console: Console) -> None:
    """One run (first cell, first seed) bare and as a one-run sweep, ``pairs`` times, alternating.

    Each pair is taken within a minute, so the machine's drift cancels in the pair's ratio; the mean
    ratio and its standard error give the per-run part of the overhead, the sweep's time outside its
    run the fixed part.
    """
    path = _cut(matrix, 1, tmp, cells=1)
    ratios, fixed, bares = [], [], []
    for i in range(pairs):
        bare, sweep, run = _pair(path, tmp / f"pair{i}", sweep_first=i % 2 == 1)
        ratios.append(run / bare)
        fixed.append(sweep - run)
        bares.append(bare)
        console.print(
            f"pair {i + 1}: bare run {bare:.1f} s, the run in orch sweep {run:.1f} s ({_pct(run, bare)}), "
            f"orch sweep outside its run {sweep - run:.1f} s"
        )
    mean = statistics.fmean(ratios) - 1
    sem = statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else float("nan")
    console.print(
        f"per run: {100 * mean:+.1f}% +- {100 * sem:.1f}% (mean of {pairs} pairs +- standard error; "
        f"median {100 * (statistics.median(ratios) - 1):+.1f}%); "
        f"fixed per sweep: {statistics.median(fixed):.1f} s (median; {min(fixed):.1f}-{max(fixed):.1f} s), "
        f"{100 * statistics.median(fixed) / statistics.median(bares):.0f}% of one bare run"
    )


def _pair(path: Path, store: Path, sweep_first: bool) -> tuple[float, float, float]:
    """Bare seconds, ``orch sweep --workers 1`` seconds and its runs' seconds, in the order asked."""
    order = ("sweep", "bare") if sweep_first else ("bare", "sweep")
    for what in order:
        if what == "bare":
            bare = _bare(path)
        else:
            store.mkdir()
            sweep, runs = _sweep(path, 1, store)
    return bare, sweep, runs


def _main_job(matrix: Path, tmp: Path, console: Console) -> None:
    """The README's main job end to end (default workers, every seed) against the sum of its bare runs."""
    n = len(load_matrix(matrix)[1])
    console.print(f"{matrix.name}: {n} runs, {os.cpu_count()} cores ({_cpu_model()})")
    store = tmp / "main_job"
    store.mkdir()
    wall, runs = _sweep(matrix.resolve(), None, store, echo=console)
    console.print(f"orch sweep {matrix.name} (default workers, fresh store): {wall:.0f} s wall")
    bare = _bare(matrix.resolve())
    console.print(
        f"its {n} bare runs one after another (all cores to torch, no tracking): {bare:.0f} s; "
        f"the main job takes {wall / bare:.2f}x their sum ({runs:.0f} s of runs inside the sweep)"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU model unknown"


def _pct(a: float, b: float) -> str:
    return f"{100 * (a - b) / b:+.1f}%"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", default=str(TEST_MATRIX))
    ap.add_argument("--seeds", type=positive_int, help="seeds per cell (default 1)")
    ap.add_argument("--workers", type=int, help="workers of the scaling run (default 2; 1: none)")
    ap.add_argument(
        "--repeats", type=positive_int, help="bare and sweep timed this many times each (default 1)"
    )
    ap.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="N",
        help="instead: one run bare and as a one-run sweep, N times alternating (per-run and fixed parts)",
    )
    ap.add_argument(
        "--main-job",
        action="store_true",
        help="instead: the README's main job as a user runs it, against the sum of its bare runs",
    )
    args = ap.parse_args(argv)
    if args.main_job:
        with tempfile.TemporaryDirectory(dir=ROOT / "runs") as tmp:
            _main_job(Path(args.matrix), Path(tmp).resolve(), wide_console())
        return
    if args.paired and any(v is not None for v in (args.seeds, args.workers, args.repeats)):
        ap.error("--paired times one run of the first cell: it takes no --seeds, --workers or --repeats")
    args.seeds = 1 if args.seeds is None else args.seeds
    args.workers = 2 if args.workers is None else args.workers
    args.repeats = 1 if args.repeats is None else args.repeats
    if args.paired < 0:
        ap.error("--paired must be 0 or more")
    console = wide_console()
    if args.paired:
        with tempfile.TemporaryDirectory(dir=ROOT / "runs") as tmp:
            _paired(Path(args.matrix), args.paired, Path(tmp).resolve(), console)
        return
    bares: list[float] = []
    sweeps: list[float] = []
    with tempfile.TemporaryDirectory(dir=ROOT / "runs") as tmp:
        tmp_path = Path(tmp).resolve()
        path = _cut(Path(args.matrix), args.seeds, tmp_path)
        n = len(load_matrix(path)[1])
        console.print(
            f"{n} runs of {Path(args.matrix).name} ({args.seeds} seed(s) per cell), {os.cpu_count()} cores, "
            f"{args.repeats} repeat(s)"
        )
        for r in range(args.repeats):
            bare, sweep, runs = _pair(path, tmp_path / f"workers1_{r}", sweep_first=r % 2 == 1)
            bares.append(bare)
            sweeps.append(sweep)
            console.print(
                f"repeat {r + 1}: bare {bare:.1f} s, orch sweep --workers 1 {sweep:.1f} s "
                f"(its runs {runs:.1f} s, {_pct(runs, bare)} on the bare runs; "
                f"outside them {sweep - runs:.1f} s): overhead {_pct(sweep, bare)}"
            )
        many = None
        if args.workers > 1:
            store = tmp_path / f"workers{args.workers}"
            store.mkdir()
            many, _ = _sweep(path, args.workers, store)
            console.print(f"orch sweep --workers {args.workers}: {many:.1f} s")
    one, bare = sum(sweeps), sum(bares)
    spread = ""
    if len(bares) > 1:
        pcts = sorted(100 * (s - b) / b for s, b in zip(sweeps, bares, strict=True))
        spread = f" (per repeat {pcts[0]:+.1f}% to {pcts[-1]:+.1f}%)"
    scaling = f"; speed-up with {args.workers} workers: {sweeps[-1] / many:.2f}x" if many else ""
    console.print(
        f"overhead of orch sweep (1 worker) over the bare runs: {_pct(one, bare)}{spread} "
        f"({(one - bare) / len(bares):+.1f} s over {n} runs){scaling}"
    )


if __name__ == "__main__":
    main()
