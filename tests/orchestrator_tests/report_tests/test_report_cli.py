"""`orch report`'s views and options on real sweeps: selections, an axis's marginal effect, comparisons,
the 100-column table when piped, and formats that write nothing but their output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from tests.orchestrator_tests.report_tests.conftest import sweep_matrix

runner = CliRunner()


@pytest.fixture(scope="module")
def crossed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 2x2 matrix: lr (moves / frozen) crossed with the reconstruction weight, two seeds a cell."""
    from tests.conftest import TINY

    tmp = tmp_path_factory.mktemp("crossed")
    cwd = pytest.MonkeyPatch()
    cwd.chdir(tmp)
    base = json.loads(json.dumps(TINY))
    matrix = {
        "name": "crossed",
        "base": base,
        "seeds": [0, 1],
        "axes": {"lr": [0.003, 1.0e-12], "recon_weight": [0.05, 1.0]},
        "verdict": {"warmup": 3, "min_seeds": 2, "min_window": 3},
        "budget": {"epochs": 6, "steps_per_epoch": 4},
    }
    sweep_matrix(tmp, matrix)
    yield tmp
    cwd.undo()


def _report(tmp: Path, *args: str, env: dict[str, str] | None = None):  # noqa: ANN202
    uri = f"sqlite:///{tmp}/runs/mlflow.db"
    return runner.invoke(app, ["report", *args, "--tracking-uri", uri], env=env)


def _json(tmp: Path, *args: str) -> dict[str, dict]:
    res = _report(tmp, str(tmp / "m.yaml"), *args, "--format", "json")
    assert res.exit_code == 0, res.output
    return {v["cell"]: v for v in json.loads(res.output)}


def test_group_by_gives_each_values_marginal_mean_over_the_other_axis(crossed: Path) -> None:
    cells = _json(crossed)
    assert len(cells) == 4
    grouped = _json(crossed, "--group-by", "lr")
    assert set(grouped) == {"lr=0.003", "lr=1e-12"}
    for value in ("0.003", "1e-12"):
        members = [v for v in cells.values() if float(v["axes"]["lr"]) == float(value)]
        assert len(members) == 2
        pooled = grouped[f"lr={value}"]
        assert len(pooled["seeds"]) == 4  # both cells' two seeds
        # equal seeds per cell: the pooled end level is the mean of the cells' end levels
        ends = [m["end"]["mean"] for m in members]
        assert pooled["end"]["mean"] == pytest.approx(np.mean(ends), rel=1e-6)


def test_cells_and_where_keep_only_those_cells(crossed: Path) -> None:
    names = list(_json(crossed))
    assert set(_json(crossed, "--cells", names[0])) == {names[0]}
    kept = _json(crossed, "--where", "recon_weight=1.0")
    assert len(kept) == 2 and all(v["axes"]["recon_weight"] == 1.0 for v in kept.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cells", "nope"], "no cell named 'nope'"),
        (["--where", "colour=red"], "no cell has the axis 'colour'"),
        (["--where", "lr"], "expected axis=value"),
        (["--group-by", "colour"], "no cell has the axis 'colour'"),
        (["budget.epochz=3"], "epochz"),
        (["--against-code", "0000"], "code 0000"),
        (["--against-sweep", "x", "--format", "csv"], "a comparison prints as --format table or json"),
    ],
)
def test_bad_selections_exit_2_with_one_message(crossed: Path, args: list[str], message: str) -> None:
    res = _report(crossed, str(crossed / "m.yaml"), *args)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_a_piped_table_keeps_every_cells_verdict_and_reason_within_100_columns(crossed: Path) -> None:
    res = _report(crossed, str(crossed / "m.yaml"), env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    table = res.output.split("\nfigures: ")[0]  # the figures' paths are printed whole, whatever their length
    assert max(len(line) for line in table.splitlines()) <= 100
    flat = " ".join(table.split())
    for cell, v in _json(crossed).items():
        assert cell in flat
        assert " ".join(v["reason"].split()) in flat  # the whole reason, wrapped under the row, never cut
    wide = _report(crossed, str(crossed / "m.yaml"), "--wide")
    assert wide.exit_code == 0, wide.output
    assert "guards failed" in wide.output and "cross_psnr_clean" in wide.output  # headers whole


def test_csv_and_json_write_nothing_but_their_output(crossed: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{crossed}/runs/mlflow.db")
    exp = client.get_experiment_by_name("crossed")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'sweep'")

    def state() -> tuple:
        files = sorted(str(p) for p in (crossed / "runs").rglob("*") if "mlflow.db" not in p.name)
        logged = sorted(a.path for a in client.list_artifacts(parent.info.run_id, "reports"))
        return files, logged

    before = state()
    for fmt in ("csv", "json"):
        res = _report(crossed, str(crossed / "m.yaml"), "--format", fmt, "--where", "lr=0.003")
        assert res.exit_code == 0, res.output
    assert state() == before


def test_a_matrix_with_experiment_judges_with_the_matrixs_settings(
    crossed: Path,
) -> None:
    res = _report(crossed, str(crossed / "m.yaml"), "--experiment", "crossed", "--format", "json")
    assert res.exit_code == 0, res.output
    assert {v["warmup"] for v in json.loads(res.output)} == {3}  # the matrix's, not the default
    # by name alone: the settings of the matrix its sweep recorded on its parent run, not the defaults (2)
    bare = runner.invoke(
        app, ["report", "--experiment", "crossed", "--format", "json", "--tracking-uri", _uri(crossed)]
    )
    assert bare.exit_code == 0 and {v["warmup"] for v in json.loads(bare.output)} == {3}, bare.output
    args = ["report", "--experiment", "crossed", "--set", "verdict.warmup=2", "--format", "json"]
    told = runner.invoke(app, [*args, "--tracking-uri", _uri(crossed)])
    assert told.exit_code == 0 and {v["warmup"] for v in json.loads(told.output)} == {2}, told.output
    bad = runner.invoke(
        app,
        ["report", "--experiment", "crossed", "--set", "budget.epochs=3", "--tracking-uri", _uri(crossed)],
    )
    assert bad.exit_code == 2 and "only verdict settings can be set here" in bad.output, bad.output


def test_a_sweep_compared_with_itself_changes_nothing(crossed: Path) -> None:
    client = MlflowClient(tracking_uri=_uri(crossed))
    exp = client.get_experiment_by_name("crossed")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'sweep'")
    sweep = parent.data.tags["orch.sweep"]
    res = _report(crossed, str(crossed / "m.yaml"), "--against-sweep", sweep[:8], "--format", "json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert len(rows) == 4 and not any(r["changed"] for r in rows)
    table = _report(crossed, str(crossed / "m.yaml"), "--against-sweep", sweep[:8], env={"COLUMNS": "160"})
    assert table.exit_code == 0 and "0 of 4 cells changed verdict" in table.output


def _uri(tmp: Path) -> str:
    return f"sqlite:///{tmp}/runs/mlflow.db"


def test_cells_with_too_few_seeds_show_what_they_measured_marked_undecided(
    crossed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two seeds a cell, judged needing three (--set over the sweep's recorded settings): inconclusive, but
    every run measured its levels, and the report shows them, marked."""
    from orchestrator.cli.common import console

    bare = [
        "report",
        "--experiment",
        "crossed",
        "--tracking-uri",
        _uri(crossed),
        "--set",
        "verdict.min_seeds=3",
    ]
    res = runner.invoke(app, [*bare, "--format", "json"])
    assert res.exit_code == 0, res.output
    verdicts = json.loads(res.output)
    assert len(verdicts) == 4
    for v in verdicts:
        assert v["verdict"] == "inconclusive" and v["undecided"] is True and len(v["seeds"]) == 2
        assert v["reason"].startswith("too few seeds: 2 usable, need 3; measured, not enough to decide")
        assert v["rel_change"] is not None and v["end"]["mean"] is not None and v["vs_baseline"] is not None
        assert (
            v["ci"] is None and v["p_value"] is None and v["beats_baseline"] is None and v["agrees"] is None
        )
    monkeypatch.setattr(console, "width", 100)
    table = runner.invoke(app, bare)
    assert table.exit_code == 0, table.output
    for v in verdicts:
        row = next(line for line in table.output.splitlines() if line.split()[:1] == [v["cell"]])
        assert (
            "? inconclusive" in row
            and f"{v['rel_change']:+.1%}*" in row
            and f"{v['end']['mean']:.3g}*" in row
        )
    assert "* measured, but too few seeds or epochs to decide" in table.output
