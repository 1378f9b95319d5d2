"""What a run's data must satisfy for its model, checked before anything is written.

:func:`check_data_fits` is shared by ``orch train`` (after opening the data, before a run directory or a
tracked run exists), the trainer itself, and the sweep's preflight (once per data source and model,
before the sweep's parent run exists), so that data a run cannot train on is refused up front with one
message instead of crashing inside torch.
"""

from __future__ import annotations

from model.config import RunConfig
from model.data import DataError, SourceShape, split_indices
from model.discriminator import discriminator_fits, min_discriminator_size
from model.unet import latent_size, min_image_size

__all__ = ["check_data_fits"]


def _train_batch(config: RunConfig, n: int) -> int:
    """The batch a training step of ``config`` takes from ``n`` pairs (the trainer's own split)."""
    train, _ = split_indices(n, config.data.val_fraction)
    return min(config.trainer.batch_size, len(train))


def check_data_fits(config: RunConfig, shape: SourceShape) -> None:
    """Refuse data a run of ``config`` cannot train on.

    Checks: at least 2 pairs (a training and a validation split); images at least
    :func:`~model.unet.min_image_size` on each side (the encoder halves them once per level); a bottleneck
    of more than one value when a training batch holds a single pair (BatchNorm needs two); and, with
    ``trainer.loss_weights.adv > 0``, images the discriminator takes.

    Raises:
        DataError: naming the data, its size and the setting that needs more.
    """
    where, h, w = shape.where, shape.height, shape.width
    if shape.n < 2:
        raise DataError(
            f"{where}: {shape.n} pair{'s' * (shape.n != 1)}; a run needs at least 2 (a training and a "
            "validation split)"
        )
    levels, side = len(config.model.encoder.features), min_image_size(config.model)
    if h < side or w < side:
        raise DataError(
            f"{where}: images of {h}x{w} are too small for the model: its encoder halves them {levels} "
            f"times (model.encoder.features has {levels} levels), so they need at least {side}x{side}; "
            "use larger images or fewer levels"
        )
    if latent_size(config.model, h, w) == (1, 1) and _train_batch(config, shape.n) == 1:
        raise DataError(
            f"{where}: images of {h}x{w} leave a 1x1 latent and a training batch holds one pair "
            f"(trainer.batch_size {config.trainer.batch_size}, {shape.n} pairs): BatchNorm needs more than "
            "one value; use a larger batch, more pairs or larger images"
        )
    disc = config.model.discriminator
    if config.trainer.loss_weights.adv > 0 and not discriminator_fits(disc, h, w):
        side = min_discriminator_size(disc)
        raise DataError(
            f"{where}: images of {h}x{w} are too small for the discriminator (trainer.loss_weights.adv > 0; "
            f"model.discriminator.features has {len(disc.features)} levels): it needs at least {side}x{side}"
        )
