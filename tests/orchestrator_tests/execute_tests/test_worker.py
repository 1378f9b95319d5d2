"""A worker process on its own: claims the queue's items, trains them, reports every epoch and the end."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

from model.config import load_config
from orchestrator.execute.worker import worker_main
from orchestrator.execute.workqueue import WorkQueue, open_storage
from orchestrator.identity import identify
from orchestrator.target.model import ModelTarget
from orchestrator.tracking import RunStatus


def test_worker_reports_start_epochs_and_end_then_exits(tmp_path: Path, tiny: dict) -> None:
    good = load_config(tiny)
    bad = load_config({**tiny, "data": {"source": "hdf5", "path": "/nonexistent.h5"}})
    payloads = [
        {"run_key": identify(c).run_key, "target": ModelTarget(c), "early_stop": None} for c in (good, bad)
    ]
    path = str(tmp_path / "q.journal")
    items = [{"index": i, "run_key": p["run_key"]} for i, p in enumerate(payloads)]
    WorkQueue.create(open_storage(path), "q", items)
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    proc = ctx.Process(target=worker_main, args=(path, "q", payloads, events, 1, os.getpid()))
    proc.start()
    messages = []
    while len([m for m in messages if m[0] == "end"]) < 2:
        messages.append(events.get(timeout=120))
    proc.join(timeout=30)
    assert proc.exitcode == 0
    by_item = {i: [m for m in messages if m[1] == i] for i in (0, 1)}
    assert [m[0] for m in by_item[0]][0] == "start" and by_item[0][-1][:4] == ("end", 0, "finished", None)
    assert [m[2].epoch for m in by_item[0] if m[0] == "epoch"] == [0, 1, 2]
    end = by_item[1][-1]
    assert end[2] == RunStatus.CRASHED and "nonexistent.h5" in end[3] and "Traceback" in end[4]
    assert WorkQueue(open_storage(path), "q").counts() == {"COMPLETE": 1, "FAIL": 1}
