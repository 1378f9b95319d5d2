"""Benchmark 1: the trainer's achieved FLOP/s against the machine's own dense matmul FLOP/s.

For each cell of the test matrix (its resolved config at seed 0, the size a sweep runs), count the FLOPs
of one training step with ``torch.utils.flop_counter`` (forward and backward of every convolution and
matmul), time the trainer's steps, and time a dense float32 matmul in the same process; print the
ratio achieved / matmul.

It also times the step's convolutions alone: every convolution one training step calls (captured with
their shapes, memory layout and which inputs need gradients), each run forward and backward in
isolation on fresh tensors of the same shapes. Their FLOP/s against the matmul's is the most a trainer
built on the same convolution kernels can reach, were everything else in the step (BatchNorm, ReLU,
concatenation, the optimiser) free; the trainer's FLOP/s against theirs is how close it comes to that.

    .venv/bin/python -m bench.trainer_flops [--steps 30] [--device cpu|cuda] [--precision float32|bfloat16]
        [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from rich.table import Table
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from bench.common import cell_configs, device_sync, matmul_flops, positive_int, timings, wide_console
from model.trainer import Trainer

__all__ = ["ConvCall", "conv_calls", "convs_alone", "main", "step_flops"]

_CONVS = (F.conv2d, F.conv_transpose2d)


def _one_step(trainer: Trainer, mode: AbstractContextManager) -> None:
    """One training step's forward and backward (no update) on the first batch, under ``mode``."""
    batch = trainer.train.take(torch.arange(trainer.config.trainer.batch_size))
    with mode:
        out = trainer.forward(batch["a"], batch["b"], 1.0)
        out.losses["total"].backward()
    trainer.model.zero_grad(set_to_none=True)


def step_flops(trainer: Trainer) -> int:
    """FLOPs of one training step (forward + backward; the optimiser's elementwise update is not counted)."""
    counter = FlopCounterMode(display=False)
    _one_step(trainer, counter)
    return counter.get_total_flops()


@dataclass(frozen=True)
class ConvCall:
    """One convolution of a training step, as called: enough to replay it on fresh tensors."""

    func: object  # F.conv2d or F.conv_transpose2d
    input: tuple[int, ...]
    weight: tuple[int, ...]
    bias: bool
    input_grad: bool
    channels_last: bool
    options: tuple  # the call's remaining arguments (stride, padding, ...), positional then keyword

    def tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Fresh input, weight and bias of the call's shapes, layout and gradient needs."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = torch.randn(self.input, device=device).to(memory_format=fmt).requires_grad_(self.input_grad)
        w = torch.randn(self.weight, device=device).to(memory_format=fmt).requires_grad_()
        out_channels = self.weight[1 if self.func is F.conv_transpose2d else 0]
        b = torch.randn(out_channels, device=device).requires_grad_() if self.bias else None
        return x, w, b

    def __call__(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        args, kwargs = self.options
        return self.func(x, w, b, *args, **dict(kwargs))


class _Capture(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[ConvCall] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _CONVS:
            x, w, *rest = args
            bias = rest.pop(0) if rest else kwargs.get("bias")
            options = (tuple(rest), tuple(sorted((k, v) for k, v in kwargs.items() if k != "bias")))
            self.calls.append(
                ConvCall(
                    func,
                    tuple(x.shape),
                    tuple(w.shape),
                    bias is not None,
                    x.requires_grad,
                    x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(),
                    options,
                )
            )
        return func(*args, **kwargs)


def conv_calls(trainer: Trainer) -> list[ConvCall]:
    """Every convolution one training step of ``trainer`` calls, in order (the discriminator's too)."""
    capture = _Capture()
    _one_step(trainer, capture)
    return capture.calls


def convs_alone(
    calls: list[ConvCall], device: torch.device, autocast: torch.autocast, repeats: int = 10
) -> tuple[int, float]:
    """(FLOPs, seconds) of ``calls`` each run forward and backward alone: the median of ``repeats``
    timings per distinct call, summed over the calls."""
    sync = device_sync(device)
    flops = seconds = 0.0
    for call, n in Counter(calls).items():
        x, w, b = call.tensors(device)
        needs = [t for t in (x, w, b) if t is not None and t.requires_grad]
        with autocast:
            grad = torch.randn_like(call(x, w, b))

        def once(call: ConvCall = call, x=x, w=w, b=b, needs=needs, grad=grad) -> None:
            with autocast:
                out = call(x, w, b)
            torch.autograd.grad(out, needs, grad)

        counter = FlopCounterMode(display=False)
        with counter:
            once()
        flops += n * counter.get_total_flops()
        seconds += n * statistics.median(timings(once, repeats, sync))
    return int(flops), seconds


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--steps", type=positive_int, default=30, help="training steps per timing (one timed epoch)"
    )
    ap.add_argument("--repeats", type=positive_int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads (default: one per core); 1: what each worker of a default CPU sweep gets",
    )
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = device_sync(device)
    console = wide_console()
    table = Table(
        title=f"trainer vs dense matmul ({device}, {torch.get_num_threads()} threads, {args.precision})"
    )
    columns = (
        "cell",
        "GFLOP/step",
        "steps/s",
        "trainer GFLOP/s",
        "matmul GFLOP/s",
        "ratio",
        "convs alone GFLOP/s",
        "convs alone / matmul",
        "trainer / convs alone",
    )
    for col in columns:
        table.add_column(col, justify="right" if col != "cell" else "left")
    for cell, cfg in cell_configs(device=args.device).items():
        data = cfg.to_dict()
        data["trainer"] |= {"steps_per_epoch": args.steps, "precision": args.precision}
        if args.threads is not None:
            data["trainer"]["threads"] = args.threads
        trainer = Trainer(type(cfg).model_validate(data))
        flops = step_flops(trainer)
        calls = conv_calls(trainer)
        # each repeat times an epoch, the convolutions alone and the matmul back to back, so a machine
        # whose speed drifts moves all three alike; the table shows the medians over the repeats
        readings = []
        trainer.train_epoch(1)  # warm-up
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            trainer.train_epoch(1)
            sync()
            seconds = (time.perf_counter() - t0) / args.steps
            conv_flops, conv_seconds = convs_alone(calls, device, trainer.autocast(), repeats=3)
            peak = matmul_flops(device, repeats=10)
            achieved, conv_rate = flops / seconds, conv_flops / conv_seconds
            ratios = (achieved / peak, conv_rate, conv_rate / peak, achieved / conv_rate)
            readings.append((1 / seconds, achieved, peak, *ratios))
        med = [statistics.median(col) for col in zip(*readings, strict=True)]
        table.add_row(
            cell,
            f"{flops / 1e9:.3f}",
            f"{med[0]:.1f}",
            f"{med[1] / 1e9:.1f}",
            f"{med[2] / 1e9:.1f}",
            f"{med[3]:.2f}",
            f"{med[4] / 1e9:.1f}",
            f"{med[5]:.2f}",
            f"{med[6]:.2f}",
        )
    console.print(table)
    console.print(
        f"medians over {args.repeats} repeats of: one {args.steps}-step epoch, the convolutions alone, "
        "the matmul (best of 10)"
    )
    console.print(
        "convs alone: the step's convolutions, each run forward and backward in isolation; "
        "their rate over the matmul's is the ratio a trainer reaches if nothing else in the step cost time"
    )


if __name__ == "__main__":
    main()
