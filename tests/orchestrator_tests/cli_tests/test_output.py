"""What orch prints, whatever it prints to: a stream that cannot encode UTF-8, a reader that goes away
(real `orch` processes and pipes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import REPO, TINY


def _orch(folder: Path, *args: str, **env: str) -> subprocess.Popen:
    base = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    base.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "orchestrator.cli", *args]
    return subprocess.Popen(cmd, cwd=folder, env=base | env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def piped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """`orch sweep m.yaml | head -3`: the reader exits after three lines, long before the sweep ends."""
    folder = tmp_path_factory.mktemp("output")
    cells = {"a": {"lr": 0.002, "expect": "fail"}, "b": {"lr": 0.001}}
    matrix = {"name": "output", "base": TINY, "seeds": [0, 1], "cells": cells, "budget": {"epochs": 3}}
    (folder / "m.yaml").write_text(yaml.safe_dump(matrix))
    proc = _orch(folder, "sweep", "m.yaml", "--workers", "2")
    assert proc.stdout is not None and proc.stderr is not None
    for _ in range(3):
        proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return folder, proc.wait(timeout=300), err


def test_a_sweep_whose_reader_went_away_finishes_its_runs(piped: tuple[Path, int, str]) -> None:
    folder, code, err = piped
    assert code == 0 and "Traceback" not in err, err
    assert err.count("the output's reader went away") == 1, err
    client = MlflowClient(f"sqlite:///{folder}/runs/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("output").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 5  # four runs and their sweep


@pytest.mark.parametrize(
    ("encoding", "args"), [("ascii", []), ("ascii", ["--format", "markdown"]), ("latin-1", ["--wide"])]
)
def test_every_line_degrades_to_what_the_stream_can_encode(
    piped: tuple[Path, int, str], encoding: str, args: list[str]
) -> None:
    """Arrows, marks and box lines as ASCII look-alikes; no encoding error, and none blamed on the store."""
    folder = piped[0]
    proc = _orch(folder, "report", "m.yaml", *args, PYTHONIOENCODING=encoding)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert "codec" not in err.decode() and "tracking store" not in err.decode(), err.decode()
    text = out.decode(encoding)
    assert "fail" in text and "b" in text  # the cells' expectations, as look-alikes where needed
    if encoding == "ascii":
        assert out.isascii() and "expected>seen" in text.replace(" ", ""), text
