"""Benchmark 1: the trainer's achieved FLOP/s against the machine's own dense matmul FLOP/s.

For each cell of the test matrix (its resolved config at seed 0, the size a sweep runs), count the FLOPs
of one training step with ``torch.utils.flop_counter`` (forward and backward of every convolution and
matmul), time the trainer's steps, and time a dense float32 matmul in the same process; print the
ratio achieved / matmul.

    .venv/bin/python -m bench.trainer_flops [--steps 30] [--device cpu|cuda] [--precision float32|bfloat16]
"""

from __future__ import annotations

import argparse

import torch
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from bench.common import cell_configs, matmul_flops, median_time, wide_console
from model.trainer import Trainer

__all__ = ["main", "step_flops"]


def step_flops(trainer: Trainer) -> int:
    """FLOPs of one training step (forward + backward; the optimiser's elementwise update is not counted)."""
    batch = trainer.train.take(torch.arange(trainer.config.trainer.batch_size))
    counter = FlopCounterMode(display=False)
    with counter:
        out = trainer.forward(batch["a"], batch["b"], 1.0)
        out.losses["total"].backward()
    trainer.model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="training steps per timing (one timed epoch)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    console = wide_console()
    table = Table(
        title=f"trainer vs dense matmul ({device}, {torch.get_num_threads()} threads, {args.precision})"
    )
    for col in ("cell", "GFLOP/step", "steps/s", "trainer GFLOP/s", "matmul GFLOP/s", "ratio"):
        table.add_column(col, justify="right" if col != "cell" else "left")
    for cell, cfg in cell_configs(device=args.device).items():
        data = cfg.to_dict()
        data["trainer"] |= {"steps_per_epoch": args.steps, "precision": args.precision}
        trainer = Trainer(type(cfg).model_validate(data))
        flops = step_flops(trainer)
        seconds = median_time(lambda t=trainer: t.train_epoch(1), args.repeats, sync) / args.steps
        peak = matmul_flops(device)
        achieved = flops / seconds
        table.add_row(
            cell,
            f"{flops / 1e9:.3f}",
            f"{1 / seconds:.1f}",
            f"{achieved / 1e9:.1f}",
            f"{peak / 1e9:.1f}",
            f"{achieved / peak:.2f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
