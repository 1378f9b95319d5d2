"""Shared pieces of the speed benchmarks: the test matrix's resolved configs and timing helpers."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console

from model.config import RunConfig
from orchestrator.matrix import Matrix, load_matrix

ROOT = Path(__file__).resolve().parents[1]
TEST_MATRIX = ROOT / "matrices" / "test_matrix.yaml"

__all__ = [
    "ROOT",
    "TEST_MATRIX",
    "bfloat16_matrix",
    "cell_configs",
    "device_sync",
    "matmul_flops",
    "median_time",
    "positive_int",
    "timings",
    "wide_console",
]


def bfloat16_matrix(matrix: Matrix) -> Matrix:
    """``matrix`` under ``trainer.precision: bfloat16``, as experiment ``<name>_bfloat16`` (same store)."""
    base = matrix.base if isinstance(matrix.base, dict) else None
    if base is None:
        raise SystemExit("this benchmark needs a matrix whose base is inline")
    trainer = {**base.get("trainer", {}), "precision": "bfloat16"}
    return matrix.model_copy(update={"name": f"{matrix.name}_bfloat16", "base": {**base, "trainer": trainer}})


def wide_console() -> Console:
    """A console at least 120 columns wide, so tables print whole when the output is piped to a file."""
    width = Console().width
    return Console(width=max(width, 120))


def cell_configs(matrix: Path = TEST_MATRIX, seed: int = 0, device: str = "cpu") -> dict[str, RunConfig]:
    """Each cell of ``matrix`` at ``seed``, resolved as a sweep would run it, on ``device``."""
    _, specs = load_matrix(matrix)
    out = {}
    for spec in specs:
        if spec.seed == seed:
            data = spec.config.to_dict()
            data["trainer"]["device"] = device
            out[spec.cell] = RunConfig.model_validate(data)
    return out


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more (anything else is a usage error, exit 2)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def device_sync(device: torch.device) -> Callable[[], None]:
    """What waits for ``device``'s queued work: ``torch.cuda.synchronize`` on a GPU, nothing on the CPU."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def timings(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> list[float]:
    """Wall seconds of each of ``repeats`` calls of ``fn()`` (after one warm-up call)."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls (after one warm-up call)."""
    return statistics.median(timings(fn, repeats, sync))


def matmul_flops(device: torch.device, n: int = 1024, repeats: int = 20) -> float:
    """The machine's dense float32 matmul rate (FLOP/s) on ``device``: an n x n by n x n product.

    The best of ``repeats`` timings, not the median: the limit the machine showed, so a ratio against it
    errs low, never high (on a shared CPU the median moved by 20% from one run to the next).
    """
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return 2 * n**3 / min(timings(lambda: a @ b, repeats, device_sync(device)))
