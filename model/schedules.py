"""Values that move over a run's epochs: the skip weight (Plan A) and the content weight (remedies).

Each is a pure function of the config and the epoch, so a resumed run (:mod:`model.checkpoint`) follows
the same schedule with nothing to save.
"""

from __future__ import annotations

import math

from model.config import TrainerConfig

__all__ = ["content_weight_at", "scheduled", "skip_weight_at"]


def scheduled(schedule: str, start: float, final: float, end_epoch: int, epoch: int) -> float:
    """A value scheduled over training epochs (1-based; epoch 0, before training, uses ``start``).

    ``constant`` stays at ``start``; ``linear`` and ``cosine`` go from ``start`` at epoch 1 to ``final``
    at epoch ``end_epoch`` (either direction) and stay there.
    """
    if schedule == "constant" or epoch <= 1:
        return start
    span = end_epoch - 1
    t = 1.0 if span <= 0 else min(1.0, (epoch - 1) / span)
    if schedule == "linear":
        frac = 1.0 - t
    else:
        frac = 0.5 * (1.0 + math.cos(math.pi * t))
    return final + (start - final) * frac


def skip_weight_at(cfg: TrainerConfig, epoch: int) -> float:
    """Skip weight used during training epoch ``epoch`` (1-based; epoch 0 uses the start value).

    ``linear`` and ``cosine`` go from ``skip_weight`` at epoch 1 to ``skip_weight_final`` at epoch
    ``skip_decay_epochs`` (default: the last epoch) and stay there.
    """
    end = cfg.skip_decay_epochs or cfg.epochs
    return scheduled(cfg.skip_schedule, cfg.skip_weight, cfg.skip_weight_final, end, epoch)


def content_weight_at(cfg: TrainerConfig, epoch: int) -> float:
    """Content weight used during training epoch ``epoch`` (1-based; epoch 0 uses the start value).

    ``linear`` and ``cosine`` go from ``loss_weights.content`` at epoch 1 to ``content_weight_final`` at
    epoch ``content_ramp_epochs`` (default: the last epoch) and stay there.
    """
    end = cfg.content_ramp_epochs or cfg.epochs
    start = cfg.loss_weights.content
    return scheduled(cfg.content_schedule, start, cfg.content_weight_final, end, epoch)
