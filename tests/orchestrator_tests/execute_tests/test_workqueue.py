"""The work queue on a journal file: every item handed out exactly once, even to processes racing for it."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from optuna.trial import TrialState

from orchestrator.execute.workqueue import WorkQueue, find_sweep_queue, open_storage


def _drain(path: str, name: str, out: mp.Queue) -> None:
    work = WorkQueue(open_storage(path), name)
    while (claimed := work.claim()) is not None:
        trial_id, item = claimed
        out.put(item["index"])
        work.done(trial_id, ok=True, value=0.0)
    out.put(None)


def test_items_are_claimed_once_by_racing_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "q.journal")
    items = [{"index": i, "run_key": f"k{i}"} for i in range(40)]
    WorkQueue.create(open_storage(path), "orch-sweep:m:s", items, {"matrix": "m", "active": True})
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_drain, args=(path, "orch-sweep:m:s", out)) for _ in range(3)]
    for p in procs:
        p.start()
    got, done = [], 0
    while done < len(procs):
        value = out.get(timeout=120)
        if value is None:
            done += 1
        else:
            got.append(value)
    for p in procs:
        p.join(timeout=30)
    assert sorted(got) == list(range(40))
    assert WorkQueue(open_storage(path), "orch-sweep:m:s").counts() == {"COMPLETE": 40}


def test_attrs_items_abandon_and_close(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "q.journal")
    items = [{"index": i, "run_key": f"k{i}"} for i in range(3)]
    work = WorkQueue.create(
        storage, "orch-sweep:m:s1", items, {"matrix": "m", "active": True, "created": 1.0}
    )
    assert work.attrs["matrix"] == "m" and work.items() == items
    assert find_sweep_queue(storage, "m") == "orch-sweep:m:s1"
    trial_id, first = work.claim()
    assert first == items[0] and work.pending() == 3
    assert work.abandon() == items[1:]  # waiting items only: the claimed one is its worker's
    work.done(trial_id, ok=False)
    assert work.pending() == 0 and work.counts() == {"FAIL": 3}
    assert work.abandon((TrialState.WAITING, TrialState.RUNNING)) == []
    work.close()
    assert find_sweep_queue(storage, "m") is None and not work.heartbeats
