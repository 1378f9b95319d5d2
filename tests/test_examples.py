"""The examples a researcher copies work as their READMEs say: examples/own_model, a PyTorch model of its
own in a matrix, swept on two workers and judged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orchestrator_tests.execute_tests.test_preempt import _env

REPO = Path(__file__).resolve().parents[1]


def _orch(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    uri = f"--tracking-uri=sqlite:///{cwd}/runs/mlflow.db"
    cmd = [sys.executable, "-m", "orchestrator.cli", uri, *args]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


def test_the_own_model_example_sweeps_and_reads_falls_and_flat(tmp_path: Path) -> None:
    matrix = REPO / "examples" / "own_model" / "matrix.yaml"
    res = _orch(tmp_path, "sweep", str(matrix), "--workers", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ran 6 (finished 6" in res.stdout and "2 of 2 cells agree with their expectation" in res.stdout
    res = _orch(tmp_path, "report", str(matrix), "--format", "json")
    assert res.returncode == 0, res.stderr
    verdicts = {v["cell"]: v for v in json.loads(res.stdout)}
    assert {c: v["verdict"] for c, v in verdicts.items()} == {"learns": "falls", "frozen": "flat"}
    assert verdicts["learns"]["floor"] == pytest.approx(0.01) and verdicts["learns"]["baseline"] is not None
