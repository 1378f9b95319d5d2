"""A real tiny sweep shared by the report tests (module scope: trained once per test module)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app

runner = CliRunner()

#: The swept matrix's description (the experiment's description in mlflow ui).
DESCRIPTION = "Three constructed cells: one learns, one cannot move (lr 0), one diverges."


def sweep_matrix(tmp: Path, matrix: dict) -> None:
    """Write ``matrix`` as ``tmp/m.yaml`` and sweep it into ``tmp/runs`` (figures under ``tmp/runs/``)."""
    (tmp / "m.yaml").write_text(yaml.safe_dump(matrix, sort_keys=False))
    uri = f"sqlite:///{tmp}/runs/mlflow.db"
    res = runner.invoke(app, ["--tracking-uri", uri, "sweep", str(tmp / "m.yaml"), "--workers", "2"])
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A sweep with a cell that learns, one that cannot move (lr 0) and one that diverges."""
    from tests.conftest import TINY

    tmp = tmp_path_factory.mktemp("report")
    cwd = pytest.MonkeyPatch()
    cwd.chdir(tmp)  # queue files and report figures go under the temp dir's runs/
    base = json.loads(json.dumps(TINY))
    base["data"]["pairs"] = 48
    base["trainer"]["lr"] = 0.003
    m = {
        "name": "constructed",
        "description": DESCRIPTION,
        "base": base,
        "seeds": [0, 1, 2],
        "cells": {
            # falls, but this tiny model ends far above what predicting the mean image scores: partial
            "learns": {"lr": 0.001, "expect": "partial"},
            # lr ~ 0: the weights do not move; BatchNorm's running statistics settle within the warm-up
            "frozen": {"lr": 1.0e-12, "expect": "fail"},
            "explodes": {"lr": 1.0e30, "trainer.optimizer": "sgd", "expect": "fail"},
        },
        "verdict": {"warmup": 5},
        "budget": {"epochs": 12, "steps_per_epoch": 12},
    }
    sweep_matrix(tmp, m)
    yield tmp
    cwd.undo()
