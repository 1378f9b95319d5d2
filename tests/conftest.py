"""Shared fixtures: tiny configs so the real training path runs in a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY: dict[str, Any] = {
    "model": {
        "encoder": {"features": [4, 8], "latent_channels": 16},
        "decoder_a": {"features": [8, 4], "latent_channels": 16},
        "decoder_b": {"features": [8, 4], "latent_channels": 16},
    },
    "trainer": {"epochs": 2, "batch_size": 8, "device": "cpu", "threads": 1, "image_samples": 2},
    "data": {"source": "synthetic", "pairs": 32, "size": 16},
}


@pytest.fixture
def tiny() -> dict[str, Any]:
    """A deep copy of the tiny run config mapping."""
    import copy

    return copy.deepcopy(TINY)


def write_config(folder: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as ``folder/tiny.json`` (what a user passes to `orch train` / `orch diagnose`)."""
    path = folder / "tiny.json"
    path.write_text(json.dumps(config))
    return path


def alias_bomb(levels: int = 9) -> str:
    """A YAML flow sequence whose last item stands for 9**levels strings through nested aliases (a
    "billion laughs"): a few hundred bytes that PyYAML loads as shared references, and that a ``repr``
    or ``json.dumps`` of it expands until memory runs out."""
    items = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    items += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def run_python(code: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this checkout's packages; fail the test on a
    timeout (a hang or a run to MemoryError)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        return subprocess.run(
            [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s: {code}")


def kill_9_after_the_first_run(cmd: list[str], cwd: Path, env: dict[str, str], pause: float = 1.0) -> None:
    """Start the sweep ``cmd``, wait for its first finished run (its ``[1/`` line), ``pause`` seconds more,
    then ``kill -9`` it (its workers are left to notice that they are orphaned)."""
    import signal
    import time

    out = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, **out)
    deadline = time.monotonic() + 180
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("[1/"):
            break
        assert time.monotonic() < deadline, "the sweep finished no run in time"
    time.sleep(pause)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _h5(path: Path, **datasets: Any) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
    return path


def bad_hdf5_files(folder: Path) -> list[tuple[Path, str]]:
    """Data files no run can train on, each with what its error message says (``orch data inspect``'s
    checks): NaN, Inf, mismatched shapes or counts, an int dtype, no ``b``, zero pairs, 2-D arrays, a file
    that is not HDF5, a directory."""
    import numpy as np

    ok = np.random.default_rng(0).random((8, 16, 16), dtype=np.float32)
    nan, inf = ok.copy(), ok.copy()
    nan[2, 3, 3], inf[5, 0, 0] = np.nan, np.inf
    (folder / "text.h5").write_text("not an HDF5 file")
    (folder / "folder.h5").mkdir()
    return [
        (_h5(folder / "nan.h5", a=ok, b=nan), "dataset 'b' holds 1 NaN and 0 Inf values (first in slice 2)"),
        (_h5(folder / "inf.h5", a=inf, b=ok), "dataset 'a' holds 0 NaN and 1 Inf values (first in slice 5)"),
        (_h5(folder / "shape.h5", a=ok, b=ok[:, :, :12]), "paired datasets need the same (N, H, W)"),
        (_h5(folder / "count.h5", a=ok, b=ok[:6]), "paired datasets need the same (N, H, W)"),
        (_h5(folder / "int.h5", a=ok.astype(np.int32), b=ok), "has dtype int32; expected a float"),
        (_h5(folder / "nob.h5", a=ok), "dataset 'b' (domain b) not found; available: a"),
        (_h5(folder / "zero.h5", a=ok[:0], b=ok[:0]), "dataset 'a' is empty"),
        (_h5(folder / "flat.h5", a=ok[0], b=ok[0]), "expected 3-D (N, H, W)"),
        (folder / "text.h5", "not an HDF5 file"),
        (folder / "folder.h5", "not a file"),
    ]


def small_hdf5_files(folder: Path) -> list[tuple[Path, str]]:
    """Files ``orch data inspect`` accepts but no run of the tiny config (two encoder levels) can train on:
    3x3 images (torch: "Output size is too small") and a single pair (no validation split)."""
    import numpy as np

    rng = np.random.default_rng(0)
    tiny = rng.random((8, 3, 3), dtype=np.float32)
    one = rng.random((1, 16, 16), dtype=np.float32)
    return [
        (_h5(folder / "small.h5", a=tiny, b=tiny), "images of 3x3 are too small for the model"),
        (_h5(folder / "one.h5", a=one, b=one), "1 pair; a run needs at least 2"),
    ]
