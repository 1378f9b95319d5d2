"""Values that move over a run's epochs: the skip weight (Plan A), the content weight and the learning rate
(remedies).

Each is a pure function of the config and the epoch, so a resumed run (:mod:`model.checkpoint`) follows
the same schedule with nothing to save.
"""

from __future__ import annotations

import math

from model.config import TrainerConfig

__all__ = ["content_weight_at", "lr_at", "lr_moves", "scheduled", "skip_weight_at"]


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


def lr_at(cfg: TrainerConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """Learning rate of the update at ``step`` (0-based) of training epoch ``epoch`` (1-based).

    Training time runs in epochs, counted in fractions of an epoch, so a run with more steps per epoch
    (``budget.scale``) follows the same curve over its epochs. The first ``lr_warmup_epochs`` rise
    linearly from 0 to ``lr`` (the first update already moves: it uses ``lr`` times its end point's
    fraction); then ``constant`` holds ``lr`` and ``cosine`` falls from ``lr`` to ``lr_final`` at the last
    step (Loshchilov & Hutter 2017, "SGDR", without restarts; the warm-up as in Goyal et al. 2017).
    """
    t = (epoch - 1) + (step + 1) / steps_per_epoch  # epochs of training done after this update
    warmup = cfg.lr_warmup_epochs
    if warmup > 0 and t < warmup:
        return cfg.lr * t / warmup
    if cfg.lr_schedule == "constant":
        return cfg.lr
    span = cfg.epochs - warmup
    frac = 1.0 if span <= 0 else min(1.0, max(0.0, (t - warmup) / span))
    return cfg.lr_final + (cfg.lr - cfg.lr_final) * 0.5 * (1.0 + math.cos(math.pi * frac))


def lr_moves(cfg: TrainerConfig) -> bool:
    """Whether the learning rate changes during training (else the optimiser keeps ``lr`` throughout)."""
    return cfg.lr_schedule != "constant" or cfg.lr_warmup_epochs > 0
