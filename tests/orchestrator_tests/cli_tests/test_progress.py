"""The live view of a sweep: it says what it does before the first run, redraws with the clock, and
estimates the time left from measured epochs."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from rich.console import Console

from orchestrator.cli.progress import SweepDisplay
from orchestrator.execute.context import SweepEvent
from orchestrator.matrix import load_matrix
from orchestrator.tracking import RunStatus


def _text(console: Console, display: SweepDisplay) -> str:
    with console.capture() as cap:
        console.print(display)
    return cap.get()


def test_the_view_lives_between_events(tmp_path: Path, tiny: dict) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "base": tiny, "seeds": [0, 1, 2], "axes": {"lr": [0.001]}}))
    _, specs = load_matrix(path)
    console = Console(width=100, force_terminal=True, color_system=None)
    display = SweepDisplay(console, len(specs))
    display.on_phase("opening the tracking store")
    assert "opening the tracking store..." in _text(console, display)
    display.on_event(SweepEvent("start", 0, specs[0]))
    display.on_event(SweepEvent("start", 1, specs[1]))
    first = _text(console, display)
    assert "running 2" in first and "ETA -" in first  # no epoch measured yet
    display.started[0] -= 4.0  # four seconds into the run: one epoch of tiny's two took 2 s
    display.on_event(SweepEvent("epoch", 0, specs[0], epoch=1))
    later = _text(console, display)
    assert "1/2" in later and "00:04" in later and "ETA -" not in later
    display.on_event(SweepEvent("end", 0, specs[0], status=RunStatus.FINISHED))
    assert "done 1" in _text(console, display)


def test_a_log_gets_the_phases_and_one_line_per_run(tmp_path: Path, tiny: dict) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "base": tiny, "seeds": [0], "axes": {"lr": [0.001]}}))
    _, specs = load_matrix(path)
    console = Console(width=100, file=open(tmp_path / "log.txt", "w"))  # noqa: SIM115 - closed below
    display = SweepDisplay(console, 1)
    with display.live():
        display.on_phase("planning 1 runs")
        display.on_event(SweepEvent("start", 0, specs[0]))
        time.sleep(0.01)
        display.on_event(SweepEvent("end", 0, specs[0], status=RunStatus.CRASHED, reason="boom [x]"))
    console.file.close()
    log = (tmp_path / "log.txt").read_text()
    assert "planning 1 runs..." in log and "[1/1] lr=0.001 seed 0 crashed: boom [x]" in log
