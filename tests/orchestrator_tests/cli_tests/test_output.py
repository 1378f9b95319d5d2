"""What orch prints, whatever it prints to: a stream that cannot encode UTF-8, a reader that goes away
(real `orch` processes and pipes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import REPO, TINY


def _orch(folder: Path, *args: str, **env: str) -> subprocess.Popen:
    base = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    base.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "orchestrator.cli", *args]
    return subprocess.Popen(cmd, cwd=folder, env=base | env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def piped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """`orch sweep m.yaml | head -3`: the reader exits after three lines, long before the sweep ends."""
    folder = tmp_path_factory.mktemp("output")
    cells = {"a": {"lr": 0.002, "expect": "fail"}, "b": {"lr": 0.001}}
    matrix = {"name": "output", "base": TINY, "seeds": [0, 1], "cells": cells, "budget": {"epochs": 3}}
    (folder / "m.yaml").write_text(yaml.safe_dump(matrix))
    proc = _orch(folder, "sweep", "m.yaml", "--workers", "2")
    assert proc.stdout is not None and proc.stderr is not None
    for _ in range(3):
        proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return folder, proc.wait(timeout=300), err


def test_a_sweep_whose_reader_went_away_finishes_its_runs(piped: tuple[Path, int, str]) -> None:
    folder, code, err = piped
    assert code == 0 and "Traceback" not in err, err
    assert err.count("the output's reader went away") == 1, err
    client = MlflowClient(f"sqlite:///{folder}/runs/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("output").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 5  # four runs and their sweep


@pytest.mark.parametrize(
    ("encoding", "args"), [("ascii", []), ("ascii", ["--format", "markdown"]), ("latin-1", ["--wide"])]
)
def test_every_line_degrades_to_what_the_stream_can_encode(
    piped: tuple[Path, int, str], encoding: str, args: list[str]
) -> None:
    """Arrows, marks and box lines as ASCII look-alikes; no encoding error, and none blamed on the store."""
    folder = piped[0]
    proc = _orch(folder, "report", "m.yaml", *args, PYTHONIOENCODING=encoding)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert "codec" not in err.decode() and "tracking store" not in err.decode(), err.decode()
    text = out.decode(encoding)
    assert "fail" in text and "b" in text  # the cells' expectations, as look-alikes where needed
    if encoding == "ascii":
        assert out.isascii() and "expected>seen" in text.replace(" ", ""), text


def test_a_stream_wrapped_twice_under_a_live_view_writes_each_line_once(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sys.stdout`` itself a :class:`Stream` when a live view starts: rich's proxy then wraps the wrapper,
    and a write that went back through it looped (a live sweep grew to gigabytes)."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from orchestrator.cli.output import Stream

    out = Stream("stdout")
    console = Console(file=out, force_terminal=True, width=80)
    monkeypatch.setattr(sys, "stdout", out)
    with Live(Text("live"), console=console, refresh_per_second=20, transient=True):
        print("through the proxy \u2192")  # noqa: T201 - what a library under orch prints
        console.print("through the console")
    written = capfd.readouterr().out
    assert written.count("through the proxy \u2192") == 1 and written.count("through the console") == 1


_LAUNCH_WRAPPED = (  # orch started by a program that put orch's own stream wrapper under sys.stdout first
    "import sys; from orchestrator.cli.output import Stream; sys.stdout = Stream('stdout'); "
    "sys.stderr = Stream('stderr'); from orchestrator.cli import run; run()"
)


@pytest.mark.parametrize("launch", ["plain", "wrapped"])
def test_a_live_sweep_in_a_terminal_that_cannot_encode_utf8_stays_small(tmp_path: Path, launch: str) -> None:
    """`orch sweep` under a pseudo-terminal (the live view on, rich's proxy under ``sys.stdout``) in ASCII:
    it ends, its output is ASCII, and it never grows past a bound (killed past it, or past the time)."""
    import pty
    import select
    import time

    matrix = {
        "name": "live",
        "base": TINY,
        "seeds": [0],
        "cells": {"a": {"lr": 0.001}},
        "budget": {"epochs": 2},
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONIOENCODING": "ascii",
        "TERM": "xterm",
        "COLUMNS": "100",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    main = ["-m", "orchestrator.cli"] if launch == "plain" else ["-c", _LAUNCH_WRAPPED]
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, *main, "sweep", "m.yaml"],
        cwd=tmp_path, env=env, stdin=follower, stdout=follower, stderr=follower, start_new_session=True,
    )  # fmt: skip
    os.close(follower)
    out, peak, limit, deadline = b"", 0, 2 << 30, time.monotonic() + 300
    try:
        while proc.poll() is None or select.select([leader], [], [], 0)[0]:
            assert time.monotonic() < deadline, "the sweep did not end in time"
            status = Path(f"/proc/{proc.pid}/status")
            rss = [line for line in status.read_text().splitlines() if line.startswith("VmRSS")]
            peak = max(peak, int(rss[0].split()[1]) * 1024 if rss else 0) if proc.poll() is None else peak
            assert peak < limit, f"the sweep grew to {peak >> 20} MiB"
            if select.select([leader], [], [], 0.2)[0]:
                try:
                    out += os.read(leader, 65536)
                except OSError:  # EIO: the terminal's last writer closed it
                    break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        proc.wait(timeout=30)
        os.close(leader)
    assert proc.returncode == 0, out.decode("ascii", "replace")
    assert out.isascii() and b"Traceback" not in out, out.decode("ascii", "replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode("ascii"))  # the terminal's colours taken off
    assert "ran 1 (finished 1" in text, text
