"""A search's rounds: enough trials at once to keep the workers busy."""

from __future__ import annotations

from orchestrator.execute.search import round_size


def test_rounds_keep_the_workers_busy() -> None:
    assert round_size(2, 2) == 1  # one trial's two seeds at once
    assert round_size(1, 5) == 1
    assert round_size(4, 1) == 4
    assert round_size(8, 5) == 3  # 15 runs fill 15 of 16 slots; 2 trials would leave 6 idle
