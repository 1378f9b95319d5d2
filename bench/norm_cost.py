"""The cost of each ``model.norm`` on one cell of the test matrix: one training epoch per norm.

Every norm gets its own trainer on the cell's config (seed 0, the matrix's budget of steps per epoch);
after one warm-up epoch each, the trainers' epochs are timed in turn, ``--repeats`` rounds, so that a
slow spell of a shared machine hits them all alike. Prints the median wall and CPU seconds per epoch
and their ratios to ``batch`` (the note's BatchNorm). On one thread the process's CPU time is the
steadier reading where other jobs share the cores: it does not count the time the process waits for
one.

    .venv/bin/python -m bench.norm_cost [--cell no_skip_everywhere] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from rich.table import Table

from bench.common import cell_configs, positive_int, wide_console
from model.config import RunConfig
from model.norm import NORMS
from model.trainer import Trainer

__all__ = ["main", "time_norms"]


def time_norms(config: RunConfig, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of each of ``repeats`` training epochs of ``config`` under every norm, timed in
    turn."""
    trainers = {}
    for norm in NORMS:
        data = config.to_dict()
        data["model"]["norm"] = norm
        trainers[norm] = Trainer(RunConfig.model_validate(data))
        trainers[norm].train_epoch(1)  # warm-up: first-call allocations and kernel selection
    times: dict[str, list[tuple[float, float]]] = {norm: [] for norm in NORMS}
    for _ in range(repeats):
        for norm, trainer in trainers.items():
            wall, cpu = time.perf_counter(), time.process_time()
            trainer.train_epoch(2)
            times[norm].append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default="no_skip_everywhere")
    ap.add_argument("--repeats", type=positive_int, default=7)
    ap.add_argument("--threads", type=positive_int, default=1)
    args = ap.parse_args(argv)
    data = cell_configs()[args.cell].to_dict()
    data["trainer"]["threads"] = args.threads
    config = RunConfig.model_validate(data)
    times = time_norms(config, args.repeats)
    wall = {norm: statistics.median(t[0] for t in ts) for norm, ts in times.items()}
    cpu = {norm: statistics.median(t[1] for t in ts) for norm, ts in times.items()}
    table = Table(
        title=f"one training epoch of {args.cell} ({config.trainer.steps_per_epoch} steps, "
        f"{args.threads} thread(s), median of {args.repeats})"
    )
    for col in ("norm", "wall s", "wall vs batch", "CPU s", "CPU vs batch", "CPU min-max s"):
        table.add_column(col, justify="left" if col == "norm" else "right")
    for norm, ts in times.items():
        spread = f"{min(t[1] for t in ts):.2f}-{max(t[1] for t in ts):.2f}"
        table.add_row(
            norm,
            f"{wall[norm]:.2f}",
            f"{wall[norm] / wall['batch']:.2f}x",
            f"{cpu[norm]:.2f}",
            f"{cpu[norm] / cpu['batch']:.2f}x",
            spread,
        )
    wide_console().print(table)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")


if __name__ == "__main__":
    main()
