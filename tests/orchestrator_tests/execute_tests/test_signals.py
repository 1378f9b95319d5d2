"""Signals as Slurm, `timeout` and terminals send them, to a real `orch sweep` and its workers.

A second SIGTERM or Ctrl-C during the shutdown the first one started changes nothing but its speed, and
SIGHUP (the terminal closed) is taken as SIGTERM: every run in flight ends KILLED with its checkpoint logged
("resumable from epoch N"), the parent run ends, exit 130, one message and no traceback.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import termios
import time
from pathlib import Path

import pytest

from tests.orchestrator_tests.execute_tests import faults


@pytest.mark.parametrize(
    ("first", "second", "gap"),
    [
        ("process", "group", 0.05),  # `timeout`, Slurm: SIGTERM to the process, then to its group
        ("group", "group", 0.3),  # Ctrl-C twice: the terminal signals the whole foreground group
    ],
    ids=["SIGTERM-twice", "SIGINT-twice"],
)
def test_a_second_signal_only_hurries_the_shutdown(
    tmp_path: Path, tiny: dict, first: str, second: str, gap: float
) -> None:
    sig = signal.SIGTERM if first == "process" else signal.SIGINT
    path = faults.write_matrix(tmp_path, tiny)
    proc = faults.orch(tmp_path, "sweep", str(path), "--workers", "2")
    faults.wait_epochs(tmp_path, proc, runs_=2, epoch=1)
    for whom in (first, second):
        (os.kill if whom == "process" else os.killpg)(proc.pid, sig)
        time.sleep(gap)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out
    faults.assert_interrupted_and_resumable(tmp_path, out, runs_=2)
    plan = faults.orch(tmp_path, "sweep", str(path), "--dry-run").communicate(timeout=120)[0]
    assert plan.count("interrupted: resume (from epoch") == 2, plan  # not from scratch


def test_a_closed_terminal_is_taken_as_sigterm(tmp_path: Path, tiny: dict) -> None:
    """The sweep runs in a terminal (its live view on) that closes: the kernel hangs it up (SIGHUP to the
    session's leader, every later write fails with EIO) and the shell sends SIGHUP to its jobs."""
    path = faults.write_matrix(tmp_path, tiny)
    master, slave = pty.openpty()

    def own_terminal() -> None:  # the sweep leads a session whose controlling terminal is the pty
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = faults.orch(
        tmp_path, "sweep", str(path), "--workers", "2", stdin=slave, stdout=slave, stderr=slave,
        env={"TERM": "xterm"}, preexec_fn=own_terminal, text=False,
    )  # fmt: skip
    os.close(slave)
    shown = bytearray()

    def read() -> None:
        while select.select([master], [], [], 0)[0]:
            try:
                shown.extend(os.read(master, 65536))
            except OSError:
                return

    try:
        faults.wait_epochs(tmp_path, proc, runs_=2, epoch=1, on_wait=read)
    finally:
        os.close(master)  # the terminal closes
    os.killpg(proc.pid, signal.SIGHUP)
    assert proc.wait(timeout=120) == 130
    assert b"running 2" in shown  # it was the live view on a terminal
    done = faults.runs(tmp_path)
    assert len(done) == 2 and all(r.info.status == "KILLED" for r in done)
    for r in done:
        assert r.data.tags["orch.failure"] == (
            f"interrupted (SIGHUP): resumable from epoch {r.data.tags['orch.checkpoint_epoch']}"
        )
    (parent,) = faults.runs(tmp_path, "sweep")
    assert parent.info.status == "KILLED" and parent.data.tags["orch.failure"] == "interrupted"
