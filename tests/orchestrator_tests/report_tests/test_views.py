"""Selections, an axis's marginal effect and comparisons, on constructed cells of a 2x2 matrix."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.matrix import MatrixError, parse_where
from orchestrator.report.collect import CellData, ReportError, judge_cells
from orchestrator.report.views import compare, group_cells, select_cells
from orchestrator.verdict import Verdict, VerdictSettings

SETTINGS = VerdictSettings(warmup=2)


def _cell(recon: float, up: str, level: float, slope: float, seeds: int = 3) -> CellData:
    rng = np.random.default_rng(int(recon * 100) + len(up))
    t = np.arange(12)
    curves = [level + slope * t + rng.normal(0, 0.002, 12) for _ in range(seeds)]
    name = f"recon_weight={recon},up_mode={up}"
    return CellData(name, {"recon_weight": recon, "up_mode": up}, seeds=list(range(seeds)), curves=curves)


@pytest.fixture
def cells() -> list[CellData]:
    return [_cell(0.05, "add", 1.0, -0.03), _cell(0.05, "concat", 1.2, -0.03), _cell(0.5, "add", 1.0, 0.0),
            _cell(0.5, "concat", 1.4, 0.0)]  # fmt: skip


def test_group_by_gives_each_values_marginal_over_the_other_axis(cells: list[CellData]) -> None:
    grouped = judge_cells(group_cells(cells, "recon_weight"), SETTINGS)
    assert [v.cell for v in grouped] == ["recon_weight=0.05", "recon_weight=0.5"]
    by_cell = {v.cell: v for v in judge_cells(cells, SETTINGS)}
    for value, pooled in zip(("0.05", "0.5"), grouped, strict=True):
        members = [v for v in by_cell.values() if v.axes["recon_weight"] == float(value)]
        assert len(pooled.seeds) == 6 and pooled.axes == {"recon_weight": float(value)}
        assert pooled.end == pytest.approx(np.mean([v.end for v in members]), rel=1e-9)
        assert pooled.start == pytest.approx(np.mean([v.start for v in members]), rel=1e-9)
    assert grouped[0].verdict is Verdict.FALLS and grouped[1].verdict is Verdict.FLAT
    with pytest.raises(ReportError, match="no cell has the axis 'lr'"):
        group_cells(cells, "lr")


def test_select_by_name_and_by_axis_values(cells: list[CellData]) -> None:
    assert [c.name for c in select_cells(cells, where=parse_where(["up_mode=add", "recon_weight=5e-2"]))] == [
        "recon_weight=0.05,up_mode=add"
    ]
    assert len(select_cells(cells, names=[cells[3].name])) == 1
    with pytest.raises(ReportError, match="no cell named 'nope'"):
        select_cells(cells, names=["nope"])
    with pytest.raises(ReportError, match="no cell has the axis 'lr'"):
        select_cells(cells, where={"lr": "1"})
    with pytest.raises(ReportError, match="no cell matches"):
        select_cells(cells, where={"up_mode": "none"})
    with pytest.raises(MatrixError, match="expected axis=value"):
        parse_where(["up_mode"])
    # a comma list, as Hydra users type them (a name that holds commas itself is kept whole, above)
    picked = select_cells(cells, where=parse_where(["up_mode=add,recon_weight=5e-2"]))
    assert [c.name for c in picked] == ["recon_weight=0.05,up_mode=add"]


def test_compare_marks_the_cells_whose_verdict_changed(cells: list[CellData]) -> None:
    before = judge_cells(cells, SETTINGS)
    after = judge_cells([cells[0], cells[1], _cell(0.5, "add", 1.0, -0.03), cells[3]], SETTINGS)
    rows = compare(before, after[:3])
    assert [r.changed for r in rows] == [False, False, True, True]  # the third flipped, the fourth is gone
    assert rows[3].after is None and rows[3].before is not None
