"""check_data_fits: data a run's model cannot train on is refused with one message, before training."""

from __future__ import annotations

import pytest
import torch

from model.config import RunConfig
from model.data import DataError, SourceShape
from model.preflight import check_data_fits
from model.unet import CrossDomainAE


def _config(tiny: dict, **trainer: object) -> RunConfig:
    return RunConfig.model_validate({**tiny, "trainer": {**tiny["trainer"], **trainer}})


def test_images_smaller_than_the_depth_allows_are_refused(tiny: dict) -> None:
    cfg = _config(tiny)  # two levels: 4x4 at least
    check_data_fits(cfg, SourceShape("d.h5", 8, 4, 4))
    for h, w in [(3, 3), (3, 64), (64, 3)]:
        with pytest.raises(DataError, match=rf"d\.h5: images of {h}x{w} are too small .* at least 4x4"):
            check_data_fits(cfg, SourceShape("d.h5", 8, h, w))


def test_fewer_than_two_pairs_are_refused(tiny: dict) -> None:
    with pytest.raises(DataError, match=r"d\.h5: 1 pair; a run needs at least 2"):
        check_data_fits(_config(tiny), SourceShape("d.h5", 1, 16, 16))


def test_a_one_pair_batch_needs_more_than_a_1x1_latent(tiny: dict) -> None:
    """BatchNorm in training needs two values: a batch of one pair and a 1x1 bottleneck crash torch."""
    cfg = _config(tiny, batch_size=1)
    with pytest.raises(DataError, match="1x1 latent and a training batch holds one pair"):
        check_data_fits(cfg, SourceShape("d.h5", 8, 4, 4))
    check_data_fits(cfg, SourceShape("d.h5", 8, 4, 8))
    check_data_fits(_config(tiny, batch_size=2), SourceShape("d.h5", 8, 4, 4))
    model = CrossDomainAE(cfg.model).train()
    with pytest.raises(ValueError, match="more than 1 value"):
        model(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))
    model(torch.rand(1, 1, 4, 8), torch.rand(1, 1, 4, 8))


def test_the_discriminator_counts_only_when_it_trains(tiny: dict) -> None:
    check_data_fits(_config(tiny), SourceShape("d.h5", 8, 4, 4))  # adv 0: no discriminator
    cfg = RunConfig.model_validate({**tiny, "trainer": {**tiny["trainer"], "loss_weights": {"adv": 0.1}}})
    with pytest.raises(DataError, match="too small for the discriminator .* at least 8x8"):
        check_data_fits(cfg, SourceShape("d.h5", 8, 4, 4))
