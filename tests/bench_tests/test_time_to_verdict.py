"""The what-if cell rule of ``bench/time_to_verdict.py``, on constructed curves."""

from __future__ import annotations

import numpy as np

from bench.time_to_verdict import cell_stops
from orchestrator.report.collect import CellData
from orchestrator.verdict import VerdictSettings

EPOCHS = 24
RULE = {"metric": "cross", "epochs": EPOCHS, "min_change": 0.1, "warmup": 4, "min_window": 4, "patience": 1}
FIRST = 4 + 4 - 1  # the first epoch with a 4-epoch window


def _cell(slopes: list[float], noise: float = 0.001) -> tuple[CellData, list[dict]]:
    cell = CellData("c", seeds=list(range(len(slopes))))
    histories = []
    for seed, slope in enumerate(slopes):
        rng = np.random.default_rng(seed)
        y = 1.0 + slope * np.arange(EPOCHS + 1) + noise * rng.standard_normal(EPOCHS + 1)
        y[0] = 2.0
        cell.curves.append(y)
        histories.append({"cross": list(enumerate(y.tolist()))})
    return cell, histories


def test_a_decided_cell_stops_the_runs_that_have_siblings() -> None:
    cell, histories = _cell([0.0, 0.0, 0.0, 0.0])
    own = [EPOCHS] * 4  # as if the run rule never stopped them
    settings = VerdictSettings(warmup=4, min_window=4, min_change=0.1, min_seeds=3)
    # one after another: the judge needs 3 seeds, so the third is the first that can stop on its cell
    assert cell_stops(cell, histories, own, RULE, settings, "sequential") == [EPOCHS, EPOCHS, FIRST, FIRST]
    # all at once: every run stops at the first epoch the cell is decided
    assert cell_stops(cell, histories, own, RULE, settings, "lockstep") == [FIRST] * 4
    # a run stops at the earlier of its own rule's stop and its cell's
    own = [FIRST + 2, EPOCHS, EPOCHS, FIRST]
    assert cell_stops(cell, histories, own, RULE, settings, "sequential") == [
        FIRST + 2,
        EPOCHS,
        FIRST,
        FIRST,
    ]


def test_an_undecided_cell_or_a_held_schedule_stops_nothing() -> None:
    settings = VerdictSettings(warmup=4, min_window=4, min_change=0.1, min_seeds=3)
    cell, histories = _cell([-0.02, 0.02, -0.02, 0.02])  # seeds disagree: inconclusive
    own = [EPOCHS] * 4
    for mode in ("sequential", "lockstep"):
        assert cell_stops(cell, histories, own, RULE, settings, mode) == own
    cell, histories = _cell([0.0, 0.0, 0.0, 0.0])
    held = {**RULE, "hold_until": EPOCHS}  # a skip-weight decay that ends at the last epoch
    for mode in ("sequential", "lockstep"):
        assert cell_stops(cell, histories, [EPOCHS] * 4, held, settings, mode) == [EPOCHS] * 4
