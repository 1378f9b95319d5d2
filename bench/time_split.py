"""Where the README's main job spends its time: one run of each test-matrix cell, split by phase.

For each cell (seed 0) the run is trained as a sweep's worker trains it (one torch thread, the default
sweep's share of a 2-core machine), with a timer around each phase of every epoch: the training steps,
the validation pass, the image grids and, once, the constant-prediction baselines; every epoch is also
logged to a throw-away MLflow store as the coordinator logs it. Beside the runs it times a process start
(importing what ``orch sweep`` imports, and what a worker imports) and ``orch report``'s work on the runs.

``--tree DIR`` (repeatable) times another checkout too, e.g. the commit ``docs/performance.md`` measured:
each cell is timed in every tree before the next cell, alternating which goes first, so that the
machine's drift hits the trees alike. Run from the repository root::

    git worktree add /tmp/orch-590535c 590535c
    .venv/bin/python -m bench.time_split --tree /tmp/orch-590535c [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.table import Table

from bench.common import ROOT, positive_int, wide_console

__all__ = ["PHASES", "main"]

PHASES = ("setup", "train", "validation", "images", "baselines", "logging")

# Runs inside the timed tree (its own model/ and orchestrator/ on PYTHONPATH): only APIs every version has.
_CHILD = r"""
import json, sys, tempfile, time
import torch
torch.set_num_threads(1)
from model.trainer import Trainer
from orchestrator.matrix import load_matrix
from orchestrator.tracking import Tracker

cell, matrix = sys.argv[1], sys.argv[2]
_, specs = load_matrix(matrix)
spec = next(s for s in specs if s.cell == cell and s.seed == 0)
t = dict.fromkeys(("setup", "train", "validation", "images", "baselines", "logging"), 0.0)
clock = time.perf_counter
t0 = clock(); trainer = Trainer(spec.config); t["setup"] = clock() - t0
tracker = Tracker("sqlite:///" + tempfile.mkdtemp() + "/mlflow.db")
run_id = tracker.start_run("split", spec.config, name=cell, tags={"orch.kind": "run"})
tc = spec.config.trainer
EpochResult = sys.modules["model.trainer"].EpochResult
for epoch in range(tc.epochs + 1):
    metrics = {}
    if epoch > 0:
        t0 = clock(); metrics |= trainer.train_epoch(epoch); t["train"] += clock() - t0
    t0 = clock(); metrics |= trainer.evaluate(epoch); t["validation"] += clock() - t0
    if epoch == 0 and hasattr(trainer, "baselines"):
        t0 = clock(); metrics |= trainer.baselines(); t["baselines"] += clock() - t0
    images = {}
    if epoch % tc.image_every == 0 or epoch == tc.epochs:
        t0 = clock(); images = trainer.sample_images(epoch); t["images"] += clock() - t0
    t0 = clock(); tracker.log_epoch(run_id, EpochResult(epoch, metrics, images)); t["logging"] += clock() - t0
print(json.dumps(t))
"""

# what each process imports, by its module names today and before the packages were laid out
_IMPORTS = {
    "start: orch sweep": (
        ("orchestrator.cli", "orchestrator.execute.sweep", "orchestrator.tracking.tracker"),
        ("orchestrator.cli", "orchestrator.sweep", "orchestrator.tracking"),
    ),
    "start: worker": (
        ("torch", "model.trainer", "orchestrator.execute.worker"),
        ("torch", "model.trainer", "orchestrator.worker"),
    ),
}


def _child(tree: Path, code: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree), "XDG_CACHE_HOME": tempfile.mkdtemp()}
    res = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=tree, env=env, capture_output=True, text=True
    )
    if res.returncode != 0:
        raise SystemExit(f"{tree}: failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res.stdout


def _exists(tree: Path, module: str) -> bool:
    path = tree / module.replace(".", "/")
    return module == "torch" or path.is_dir() or path.with_suffix(".py").exists()


def _start_seconds(tree: Path, layouts: tuple[tuple[str, ...], ...]) -> float:
    modules = next(m for m in layouts if all(_exists(tree, n) for n in m))
    code = "import time, importlib; t0 = time.perf_counter(); "
    code += "; ".join(f"importlib.import_module({n!r})" for n in modules)
    code += "; print(time.perf_counter() - t0)"
    return float(_child(tree, code).split()[-1])


def _report_seconds(tree: Path, matrix: Path) -> float:
    """``orch report``'s work (collect, judge, figures) on a store of the matrix's 20 runs, 4 epochs each."""
    code = r"""
import sys, tempfile, time
from orchestrator.matrix import load_matrix
from orchestrator.tracking import Tracker
try:
    from orchestrator.report.build import build_report
except ImportError:  # before the report package
    from orchestrator.reporting import build_report
EpochResult = __import__("model.trainer", fromlist=["EpochResult"]).EpochResult
import numpy as np
mx, specs = load_matrix(sys.argv[1])
uri = "sqlite:///" + tempfile.mkdtemp() + "/mlflow.db"
tracker = Tracker(uri)
grid = np.random.default_rng(0).random((128, 128))
for s in specs:
    tags = {"orch.kind": "run", "orch.sweep": "s", "orch.cell": s.cell, "orch.seed": str(s.seed),
            "orch.run_key": s.run_key}
    rid = tracker.start_run(mx.name, s.config, name=s.cell, tags=tags)
    for e in range(25):
        images = {"x_a_from_b": grid} if e == 24 else {}
        tracker.log_epoch(rid, EpochResult(e, {"cross": 1.0 / (e + 1), "cross_floor": 0.04}, images))
    tracker.finish(rid, "finished")
t0 = time.perf_counter()
build_report(uri, mx.name, mx.verdict, specs=specs, out_dir=__import__("pathlib").Path(tempfile.mkdtemp()))
print(time.perf_counter() - t0)
"""
    return float(_child(tree, code, str(matrix)).split()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", default=[], help="another checkout to time beside this one")
    ap.add_argument("--repeats", type=positive_int, default=1)
    args = ap.parse_args(argv)
    trees = [ROOT, *(Path(t).resolve() for t in args.tree)]
    names = {tree: "HEAD" if tree == ROOT else tree.name for tree in trees}
    console = wide_console()
    cells = ("original", "no_skip", "no_skip_everywhere", "pure_n2n")
    rows: dict[tuple[Path, str], dict[str, float]] = {}
    for r in range(args.repeats):
        for i, cell in enumerate(cells):
            order = trees if (i + r) % 2 == 0 else trees[::-1]
            for tree in order:
                split = json.loads(_child(tree, _CHILD, cell, str(tree / "matrices" / "test_matrix.yaml")))
                acc = rows.setdefault((tree, cell), dict.fromkeys(PHASES, 0.0))
                for k in PHASES:
                    acc[k] += split[k] / args.repeats
    table = Table(title="one run of each test-matrix cell (seed 0, 1 torch thread): seconds per phase")
    for col in ("tree", "cell", *PHASES, "total", "train share"):
        table.add_column(col, justify="left" if col in ("tree", "cell") else "right")
    for (tree, cell), t in rows.items():
        total = sum(t.values())
        table.add_row(
            names[tree], cell, *(f"{t[k]:.1f}" for k in PHASES), f"{total:.1f}", f"{t['train'] / total:.0%}"
        )
    console.print(table)
    for tree in trees:
        parts = {label: _start_seconds(tree, imports) for label, imports in _IMPORTS.items()}
        parts["report (20 runs)"] = _report_seconds(tree, tree / "matrices" / "test_matrix.yaml")
        runs = {c: sum(rows[(tree, c)].values()) for c in cells}
        console.print(
            f"{names[tree]}: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())
            + f"; the four runs {sum(runs.values()):.1f} s, so the 20 runs ~{5 * sum(runs.values()):.0f} s "
            "of single-thread work"
        )
    if len(trees) > 1:
        base = sum(sum(rows[(ROOT, c)].values()) for c in cells)
        for tree in trees[1:]:
            other = sum(sum(rows[(tree, c)].values()) for c in cells)
            console.print(f"HEAD / {names[tree]}: {base / other:.2f}x the time of the four runs")


if __name__ == "__main__":
    main()
