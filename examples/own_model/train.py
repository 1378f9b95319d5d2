"""A researcher's own training code, as orch runs it: a small PyTorch MLP fitting y = sin(3x) + noise.

Nothing here imports orch. orch calls ``fit(params, seed, epochs)`` and reads one dict of metrics per
epoch, epoch 0 (before any update) first; ``checkpoint`` is the optional hook that lets an interrupted run
continue where it stopped (docs/own_training.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn


class Params(BaseModel):
    """The run's params (base + cell in the matrix); a typo in the matrix fails before anything runs."""

    model_config = ConfigDict(extra="forbid")

    lr: float = 3e-3
    width: int = 32
    batch_size: int = 64
    noise: float = 0.1  # the targets' noise: its variance is the loss no model can beat
    pairs: int = 512
    data_version: int = 1  # orch does not fingerprint data: a new dataset gets a new version here


def make_data(params: Params) -> tuple[torch.Tensor, ...]:
    """Train and validation sets, the same for every seed of a data version."""
    g = torch.Generator().manual_seed(1000 + params.data_version)
    x = torch.rand(params.pairs + 256, 1, generator=g) * 2 - 1  # (N, 1)
    y = torch.sin(3 * x) + params.noise * torch.randn(x.shape, generator=g)  # (N, 1)
    return x[: params.pairs], y[: params.pairs], x[params.pairs :], y[params.pairs :]


def fit(params: Params, seed: int, epochs: int, *, checkpoint: Any = None) -> Iterator[dict[str, float]]:
    """Train for ``epochs`` epochs, yielding the validation loss (and its floor and constant baseline)
    after each, epoch 0 first."""
    x, y, x_val, y_val = make_data(params)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(1, params.width), nn.Tanh(), nn.Linear(params.width, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    g = torch.Generator().manual_seed(seed)
    start = 0
    if checkpoint is not None and checkpoint.epoch is not None:  # resume where the run was stopped
        state = torch.load(checkpoint.path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        g.set_state(state["batches"])
        start = checkpoint.epoch + 1
    for epoch in range(start, epochs + 1):
        if epoch > 0:  # epoch 0 is measured before any update
            order = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), params.batch_size):
                batch = order[i : i + params.batch_size]
                loss = nn.functional.mse_loss(model(x[batch]), y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        if checkpoint is not None:  # the state this epoch ends with, written before its metrics are yielded
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
            torch.save(state | {"batches": g.get_state()}, checkpoint.path)
        with torch.no_grad():
            val = nn.functional.mse_loss(model(x_val), y_val).item()
        yield {
            "val_loss": val,
            "val_loss_floor": params.noise**2,  # what a perfect model scores on noisy targets
            "val_loss_baseline": y_val.var(unbiased=False).item(),  # predicting the mean, for free
            "train_steps": epoch * math.ceil(len(x) / params.batch_size),
        }
