from __future__ import annotations

import pytest
import torch

from model.config import DecoderConfig, EncoderConfig, ModelConfig
from model.unet import CrossDomainAE, Decoder, Encoder, Up


def _model(up_mode: str, upsample: str = "transpose") -> CrossDomainAE:
    return CrossDomainAE(
        ModelConfig(
            encoder=EncoderConfig(features=[4, 8, 16], latent_channels=24),
            decoder_a=DecoderConfig(features=[16, 8, 4], latent_channels=24),
            decoder_b=DecoderConfig(features=[16, 8, 4], latent_channels=24),
            up_mode=up_mode,
            upsample=upsample,
        )
    )


@pytest.mark.parametrize("up_mode", ["concat", "add"])
@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
@pytest.mark.parametrize("with_skips", [True, False])
@pytest.mark.parametrize("hw", [(32, 32), (24, 40), (33, 29)])
def test_shapes_every_mode_and_skip_combination(
    up_mode: str, upsample: str, with_skips: bool, hw: tuple
) -> None:
    m = _model(up_mode, upsample)
    x = torch.randn(2, 1, *hw)
    z, skips = m.encoder(x)
    assert z.shape[:2] == (2, 24)
    assert [s.shape[1] for s in skips] == [4, 8, 16]
    assert [tuple(s.shape[-2:]) for s in skips][0] == hw
    sizes = [tuple(s.shape[-2:]) for s in skips]
    out = m.decoder_a(z, skips if with_skips else None, sizes=sizes)
    assert out.shape == (2, 1, *hw)


def test_concat_up_without_skip_equals_explicit_zeros() -> None:
    torch.manual_seed(0)
    up = Up(12, 6, 5, mode="concat")
    up.eval()
    x1 = torch.randn(3, 12, 4, 4)
    fast = up(x1, None)
    explicit = up.forward_explicit_zeros(x1)
    torch.testing.assert_close(fast, explicit, rtol=1e-5, atol=1e-6)


def test_concat_up_really_sees_zeros_without_skip() -> None:
    """The conv input is [zeros, upsampled]: the skip half of the first conv's weights is inert."""
    torch.manual_seed(0)
    up = Up(8, 4, 4, mode="concat")
    up.eval()
    x1 = torch.randn(2, 8, 4, 4)
    before = up(x1, None).clone()
    with torch.no_grad():
        up.conv.conv1.weight[:, :4] += 100.0  # the half that multiplies the (zero) skip
    torch.testing.assert_close(up(x1, None), before)
    with torch.no_grad():
        up.conv.conv1.weight[:, 4:] += 1.0  # the upsampled half does matter
    assert not torch.allclose(up(x1, None), before)


def test_concat_and_add_channel_arithmetic() -> None:
    concat, add = Up(16, 8, 8, mode="concat"), Up(16, 8, 8, mode="add")
    assert concat.conv.conv1.in_channels == 16  # [skip (8), upsampled (8)]
    assert add.conv.conv1.in_channels == 8  # upsampled + skip_weight * skip
    assert concat.up.out_channels == add.up.out_channels == 8


def test_add_up_uses_skip_weight_and_ignores_absent_skip() -> None:
    torch.manual_seed(0)
    up = Up(8, 4, 4, mode="add")
    up.eval()
    x1, x2 = torch.randn(2, 8, 4, 4), torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(up(x1, x2, skip_weight=0.0), up(x1, None))
    assert not torch.allclose(up(x1, x2, skip_weight=1.0), up(x1, None))


def test_decoder_levels_consume_matching_skips() -> None:
    enc = Encoder(EncoderConfig(features=[3, 5], latent_channels=7))
    dec = Decoder(DecoderConfig(features=[6, 2], latent_channels=7), enc.skip_channels)
    assert [u.skip_channels for u in dec.ups] == [5, 3]


def _depth(levels: int) -> ModelConfig:
    features = [4 * (i + 1) for i in range(levels)]
    return ModelConfig(
        encoder=EncoderConfig(features=features, latent_channels=8),
        decoder_a=DecoderConfig(features=features[::-1], latent_channels=8),
        decoder_b=DecoderConfig(features=features[::-1], latent_channels=8),
    )


def _passes(model: CrossDomainAE, height: int, width: int) -> bool:
    x = torch.rand(2, 1, height, width)
    try:
        model(x, x)
    except RuntimeError:  # torch: "Output size is too small" and kin
        return False
    return True


@pytest.mark.parametrize("levels", [1, 2, 3, 4])
def test_min_image_size_is_the_smallest_size_a_training_pass_takes(levels: int) -> None:
    """3x3 images and two levels crash torch; min_image_size says so exactly, for several depths."""
    from model.unet import min_image_size

    cfg = _depth(levels)
    model = CrossDomainAE(cfg).train()
    side = min_image_size(cfg)
    assert side == 2**levels
    assert _passes(model, side, side) and _passes(model, side, side + 3)
    assert not _passes(model, side - 1, side - 1)
    assert not _passes(model, side - 1, 64) and not _passes(model, 64, side - 1)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_discriminator_fits_matches_a_training_pass(levels: int) -> None:
    from model.config import DiscriminatorConfig
    from model.discriminator import PatchDiscriminator, discriminator_fits, min_discriminator_size

    cfg = DiscriminatorConfig(features=[4] * levels)
    disc = PatchDiscriminator(cfg).train()

    def runs(h: int, w: int) -> bool:
        try:
            disc(torch.rand(2, 1, h, w))
        except (RuntimeError, ValueError):  # InstanceNorm: "Expected more than 1 spatial element"
            return False
        return True

    for h, w in [(s, s) for s in range(1, 20)] + [(4, 8), (2, 16), (16, 3)]:
        assert discriminator_fits(cfg, h, w) == runs(h, w), (h, w)
    side = min_discriminator_size(cfg)
    assert runs(side, side) and not runs(side - 1, side - 1)
