"""A fast start: the command line checks its arguments and files before it imports MLflow, torch or scipy,
and `orch report` never imports torch (nor matplotlib when its figures are already drawn).

Each command runs in a fresh interpreter, as `orch` does, which says at exit which heavy packages it
imported. The times themselves are measured by ``bench/startup.py`` (docs/performance.md), never here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import TINY, run_python

HEAVY = ("mlflow", "torch", "scipy", "matplotlib", "optuna", "h5py")

#: Runs the command line with the arguments given in argv and prints, at exit (whatever the exit code),
#: the heavy packages this interpreter imported.
_CLI = """
import atexit, json, sys
atexit.register(lambda: print("IMPORTED " + json.dumps(sorted(m for m in {heavy} if m in sys.modules))))
from orchestrator.cli import app
app(args={args}, prog_name="orch")
"""


def _imported(args: list[str], cwd: Path) -> tuple[int, list[str], str]:
    """Run ``orch ARGS`` in ``cwd``: its exit code, the heavy packages it imported, and its output."""
    res = run_python(_CLI.format(heavy=HEAVY, args=args), cwd, timeout=300)
    line = [x for x in res.stdout.splitlines() if x.startswith("IMPORTED ")]
    assert line, res.stdout + res.stderr
    return res.returncode, json.loads(line[-1].removeprefix("IMPORTED ")), res.stdout + res.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["report", "--help"],
        ["sweep", "--help"],
        ["report", "nonexistent.yaml"],
        ["report", "m.yaml", "--format", "nope"],
        ["report", "m.yaml", "--tracking-uri", "sqlite:///nowhere/mlflow.db"],
        ["sweep", "nonexistent.yaml"],
        ["status", "nonexistent.yaml"],
        ["search", "nonexistent.yaml", "--trials", "2"],
        ["train", "nonexistent.json"],
        ["data", "inspect", "--help"],
    ],
)
def test_usage_errors_and_help_import_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"name": "m", "base": TINY, "seeds": [0]}))
    code, heavy, out = _imported(args, tmp_path)
    assert code == (0 if "--help" in args or "--version" in args else 2), out
    assert heavy == [], out
    if code == 2:  # orch's own errors end with the hint Click's usage errors give
        command = " ".join(a for a in args[:2] if not a.endswith(".yaml") and not a.endswith(".json"))
        assert f"Try 'orch {command} --help' for help." in out, out


def test_help_shows_the_choices_of_an_option_and_no_type_for_a_flag(tmp_path: Path) -> None:
    res = run_python(_CLI.format(heavy=HEAVY, args=["sweep", "--help"]), tmp_path, timeout=300)
    lines = {line.split()[1]: line for line in res.stdout.splitlines() if line.startswith("│ --")}
    assert "local|slurm" in lines["--launcher"], res.stdout
    for flag in ("--dry-run", "--fresh", "--yes", "--retry-diverged", "--help"):
        assert "<" not in lines[flag], lines[flag]
    assert "<int range>" in lines["--workers"]


def _store(folder: Path) -> None:
    """A real store holding one matrix's runs (logged through the tracker, as a sweep logs them)."""
    from model.trainer import EpochResult
    from orchestrator.matrix import load_matrix
    from orchestrator.tracking import RunKind, RunStatus, Tracker, prepare_store, run_tags

    matrix = {"name": "m", "base": TINY, "seeds": [0, 1, 2], "cells": {"a": {}, "b": {"lr": 0.01}}}
    (folder / "m.yaml").write_text(yaml.safe_dump(matrix))
    _, specs = load_matrix(folder / "m.yaml")
    tracker = Tracker(prepare_store(f"sqlite:///{folder}/runs/mlflow.db"))
    rng = np.random.default_rng(0)
    for spec in specs:
        tags = run_tags(RunKind.RUN, sweep="s", cell=spec.cell, seed=spec.seed, run_key=spec.run_key)
        run_id = tracker.start_run("m", spec.config, name=spec.cell, tags=tags)
        for epoch in range(8):
            tracker.log_epoch(run_id, EpochResult(epoch, {"cross": 1.0 / (epoch + 1) + rng.normal(0, 0.01)}))
        tracker.finish(run_id, RunStatus.FINISHED)


def test_report_of_a_real_store_imports_no_torch(tmp_path: Path) -> None:
    _store(tmp_path)
    code, heavy, out = _imported(["report", "m.yaml"], tmp_path)
    assert code == 0 and "does cross fall" in out, out
    assert "torch" not in heavy and "mlflow" in heavy, heavy
    code, heavy, out = _imported(["report", "m.yaml"], tmp_path)  # warm: the figures are drawn already
    assert code == 0, out
    assert "torch" not in heavy and "matplotlib" not in heavy, heavy
