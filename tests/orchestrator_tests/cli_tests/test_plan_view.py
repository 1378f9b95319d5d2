"""`orch sweep --dry-run`: the plan of the note's test matrix, read at 100 and 80 columns."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.cli.common import console

REPO = Path(__file__).resolve().parents[3]
runner = CliRunner()


@pytest.mark.parametrize("width", [100, 80])
def test_the_plan_shows_full_cell_names_and_only_the_axes_that_vary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    monkeypatch.setattr(console, "width", width)
    uri = f"sqlite:///{tmp_path}/runs/mlflow.db"
    res = runner.invoke(
        app, ["sweep", str(REPO / "matrices" / "test_matrix.yaml"), "--dry-run", "--tracking-uri", uri]
    )
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(len(line) for line in lines if "(store:" not in line) <= width
    assert not [line for line in lines if line.endswith(" ")]  # nothing padded
    assert "every cell: cross_weight=1" in res.output  # a constant axis said once, not a column
    names = ("original", "no_skip", "no_skip_everywhere", "pure_n2n")
    starts = [line.split()[0] for line in lines if line.strip()]
    for name in names:
        assert starts.count(name) == 1 + 5  # its row (or block) and its five runs, each named in full
    assert "no_skip…" not in res.output and "[128, 64, 32]" in res.output  # a value never wrapped
    if width == 100:  # one table of cells with every varying axis's full name as its header
        (header,) = [line for line in lines if line.split()[:1] == ["cell"] and "cross_skip" in line]
        assert header.split() == [
            "cell", "same_domain_skip", "cross_skip", "recon_weight", "latent_width", "decoder_features"
        ]  # fmt: skip
        assert "cross_weight" not in header
    assert res.output.count("to run") >= 20 and "20 to run, 0 done" in res.output
    assert not (tmp_path / "runs").exists()
