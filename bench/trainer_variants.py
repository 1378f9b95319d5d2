"""The trainer's speed with one of its choices undone or an alternative tried, against the trainer as it is.

Variants (each a separate trainer on the same config, timed in alternating epochs so that a slow spell
of a shared machine hits them all alike):

- ``as is``: the trainer as it ships (channels_last weights, fused Adam);
- ``default layout``: the model moved back to PyTorch's default (contiguous) memory layout;
- ``unfused Adam``: ``torch.optim.Adam`` updating the parameters one by one (PyTorch's CPU default);
- ``torch.compile`` (with ``--compile``; slow): the model's passes compiled; its first epoch, which
  includes the compilation, is printed apart.

    .venv/bin/python -m bench.trainer_variants [--cells original,no_skip] [--repeats 4] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from rich.table import Table

from bench.common import cell_configs, wide_console
from model.config import RunConfig
from model.trainer import Trainer

__all__ = ["main"]


def _default_layout(t: Trainer) -> None:
    t.model.to(memory_format=torch.contiguous_format)


def _unfused_adam(t: Trainer) -> None:
    tc = t.config.trainer
    t.optimizer = torch.optim.Adam(t.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=False)


def _compiled(t: Trainer) -> None:
    t.model.forward = torch.compile(t.model.forward)  # type: ignore[method-assign]


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", default="original,no_skip")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (compiles for ~1 min)")
    args = ap.parse_args(argv)
    variants: dict[str, Callable[[Trainer], None] | None] = {
        "as is": None,
        "default layout": _default_layout,
        "unfused Adam": _unfused_adam,
    }
    if args.compile:
        variants["torch.compile"] = _compiled
    configs = cell_configs()
    console = wide_console()
    table = Table(title=f"trainer variants (cpu, {torch.get_num_threads()} threads, float32)")
    for col in ("cell", "variant", "steps/s", "vs as is", "first epoch s"):
        table.add_column(col, justify="left" if col in ("cell", "variant") else "right")
    for cell in args.cells.split(","):
        data = configs[cell].to_dict()
        data["trainer"]["steps_per_epoch"] = args.steps
        trainers, first = {}, {}
        for name, change in variants.items():
            trainers[name] = Trainer(RunConfig.model_validate(data))
            if change is not None:
                change(trainers[name])
            first[name] = _timed(lambda t=trainers[name]: t.train_epoch(1))
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, t in trainers.items():
                times[name].append(_timed(lambda t=t: t.train_epoch(1)))
        rate = {name: args.steps / statistics.median(v) for name, v in times.items()}
        for name in variants:
            table.add_row(
                cell, name, f"{rate[name]:.2f}", f"{rate[name] / rate['as is']:.2f}x", f"{first[name]:.1f}"
            )
    console.print(table)


if __name__ == "__main__":
    main()
