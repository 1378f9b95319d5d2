"""Benchmark 2: the trainer against a plain PyTorch loop written the way the note's code reads.

The plain loop: separate encoder passes for the two domains, four separate decoder calls, the original
``Up`` concatenating explicit zeros when a path has no skip, and ``.item()`` on every loss every step.
Both start from the same weights and see the same batches in the same order (the trainer's own
permutation): the losses of the first step (same weights, same batch) must agree to float rounding, and
the per-epoch mean losses stay close (Adam amplifies rounding differences a little over the steps); the
script prints both relative differences beside the steps/s ratio.

The ceiling column is the speed-up a trainer would reach if it did the step's necessary FLOPs (counted
as in ``bench.trainer_flops``: no convolution of zeros) at the machine's dense float32 matmul rate,
measured in the same run: the most that making the trainer faster, rather than doing less work, can give.
The convolution ceiling is the speed-up a trainer would reach if its step cost only its own convolutions
run alone (``bench.trainer_flops.convs_alone``, timed beside each epoch): the most a trainer built on the
same convolution kernels can give.

    .venv/bin/python -m bench.plain_loop [--steps 30] [--repeats 3] [--cells original,no_skip]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from rich.table import Table

from bench.common import cell_configs, matmul_flops, positive_int, wide_console
from bench.trainer_flops import conv_calls, convs_alone, step_flops
from model.trainer import Trainer
from model.unet import CrossDomainAE, Decoder

__all__ = ["main", "plain_epoch"]


def _plain_decode(
    decoder: Decoder, z: torch.Tensor, skips: list[torch.Tensor] | None, sizes: list
) -> torch.Tensor:
    h, n = z, len(decoder.ups)
    for i, up in enumerate(decoder.ups):
        level = n - 1 - i
        if skips is not None:
            h = up(h, skips[level])
        elif up.mode == "concat":
            h = up.forward_explicit_zeros(h, tuple(sizes[level]))  # the note's torch.zeros_like stand-in
        else:
            h = up(h, None, size=tuple(sizes[level]))
    return decoder.outc(h)


def plain_epoch(
    model: CrossDomainAE,
    optimizer: torch.optim.Optimizer,
    batches: list[dict[str, torch.Tensor]],
    trainer: Trainer,
) -> dict[str, float]:
    """One epoch of the note's loop over ``batches``; returns the mean losses read with ``.item()``."""
    tc = trainer.config.trainer
    w = tc.loss_weights
    same, use_src = tc.same_domain_use_skip, tc.cross_domain_strategy == "use_source"
    model.train()
    sums = {"content": 0.0, "recon": 0.0, "cross": 0.0, "total": 0.0}
    for batch in batches:
        x_a, x_b = batch["a"], batch["b"]
        z_a, skips_a = model.encoder(x_a)
        z_b, skips_b = model.encoder(x_b)
        sizes = [s.shape[-2:] for s in skips_a]
        recon_a = _plain_decode(model.decoder_a, z_a, skips_a if same else None, sizes)
        recon_b = _plain_decode(model.decoder_b, z_b, skips_b if same else None, sizes)
        a_from_b = _plain_decode(model.decoder_a, z_b, skips_b if use_src else None, sizes)
        b_from_a = _plain_decode(model.decoder_b, z_a, skips_a if use_src else None, sizes)
        content = (z_a - z_b).abs().mean()
        recon = 0.5 * ((recon_a - x_a).abs().mean() + (recon_b - x_b).abs().mean())
        cross = 0.5 * ((a_from_b - x_a).abs().mean() + (b_from_a - x_b).abs().mean())
        total = w.content * content + w.recon * recon + w.cross * cross
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        for k, v in (("content", content), ("recon", recon), ("cross", cross), ("total", total)):
            sums[k] += v.item()
    return {k: v / len(batches) for k, v in sums.items()}


def _trainer_batches(trainer: Trainer, steps: int) -> list[dict[str, torch.Tensor]]:
    """The batches the trainer's next epoch will draw, drawn from a copy of its generator."""
    gen = torch.Generator().manual_seed(trainer.config.trainer.seed)
    gen.set_state(trainer.generator.get_state())
    n, bs = len(trainer.train), min(trainer.config.trainer.batch_size, len(trainer.train))
    perm, cursor, out = torch.randperm(n, generator=gen), 0, []
    for _ in range(steps):
        if cursor + bs > n:
            perm, cursor = torch.randperm(n, generator=gen), 0
        out.append(trainer.train.take(perm[cursor : cursor + bs]))
        cursor += bs
    return out


def compare(cfg, steps: int, repeats: int, precision: str = "float32") -> dict[str, float]:
    """Alternate trainer and plain epochs from one start: steps/s of each and the largest disagreement."""
    data = cfg.to_dict()
    data["trainer"] |= {"steps_per_epoch": steps, "precision": precision}
    trainer = Trainer(type(cfg).model_validate(data))
    # the note's code keeps PyTorch's default layout; the trainer's channels_last is one of its speed-ups
    plain_model = copy.deepcopy(trainer.model).to(memory_format=torch.contiguous_format)
    tc = trainer.config.trainer
    assert tc.optimizer == "adam", "the plain loop is the note's, with Adam"
    # PyTorch's default Adam, as the note's code would create it (the trainer's is fused)
    plain_opt = torch.optim.Adam(plain_model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    t_trainer, t_plain, conv_ceilings, diffs = [], [], [], []
    first = _first_step_diff(trainer, plain_model)
    calls = conv_calls(copy.deepcopy(trainer))  # a copy: its BatchNorm statistics stay untouched
    for epoch in range(1, repeats + 2):
        batches = _trainer_batches(trainer, steps)
        t0 = time.perf_counter()
        mine = trainer.train_epoch(epoch)
        t_trainer.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = plain_epoch(plain_model, plain_opt, batches, trainer)
        t_plain.append(time.perf_counter() - t0)
        if epoch > 1:
            _, conv_seconds = convs_alone(calls, trainer.device, trainer.autocast(), repeats=3)
            conv_ceilings.append(t_plain[-1] / steps / conv_seconds)
        diffs.append(max(abs(mine[f"train_{k}"] - v) / max(abs(v), 1e-12) for k, v in theirs.items()))
    # the first epoch of each is a warm-up
    mine_s = sorted(t_trainer[1:])[len(t_trainer[1:]) // 2] / steps
    plain_s = sorted(t_plain[1:])[len(t_plain[1:]) // 2] / steps
    # the ceiling: a trainer doing the step's necessary FLOPs at the machine's dense matmul rate
    ceiling = plain_s / (step_flops(trainer) / matmul_flops(trainer.device))
    return {
        "trainer": 1 / mine_s,
        "plain": 1 / plain_s,
        "ceiling": ceiling,
        "conv_ceiling": statistics.median(conv_ceilings),
        "first_step": first,
        "epochs": max(diffs),
    }


def _first_step_diff(trainer: Trainer, plain_model: CrossDomainAE) -> float:
    """Largest relative difference of the losses on one batch from the same weights (training mode)."""
    batch = _trainer_batches(trainer, 1)[0]
    twin = copy.deepcopy(trainer)  # a copy, so the running statistics of the timed models stay untouched
    mine = twin.forward(batch["a"], batch["b"], 1.0).losses
    model = copy.deepcopy(plain_model)
    theirs = plain_epoch(model, torch.optim.SGD(model.parameters(), lr=0.0), [batch], trainer)
    return max(abs(float(mine[k].detach()) - v) / max(abs(v), 1e-12) for k, v in theirs.items())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=positive_int, default=30)
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--cells", default=None, help="comma-separated test-matrix cells (default: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "bfloat16"],
        help="the trainer's (the plain loop: float32)",
    )
    args = ap.parse_args(argv)
    configs = cell_configs(device=args.device)
    cells = args.cells.split(",") if args.cells else list(configs)
    table = Table(
        title=f"trainer ({args.precision}) vs the note's plain loop "
        f"({args.device}, {torch.get_num_threads()} threads)"
    )
    for col in (
        "cell",
        "trainer steps/s",
        "plain steps/s",
        "speed-up",
        "ceiling",
        "convolution ceiling",
        "loss rel. diff, 1st step",
        "loss rel. diff, epoch means",
    ):
        table.add_column(col, justify="left" if col == "cell" else "right")
    for cell in cells:
        r = compare(configs[cell], args.steps, args.repeats, args.precision)
        table.add_row(
            cell,
            f"{r['trainer']:.2f}",
            f"{r['plain']:.2f}",
            f"{r['trainer'] / r['plain']:.2f}x",
            f"{r['ceiling']:.2f}x",
            f"{r['conv_ceiling']:.2f}x",
            f"{r['first_step']:.1e}",
            f"{r['epochs']:.1e}",
        )
    wide_console().print(table)


if __name__ == "__main__":
    main()
