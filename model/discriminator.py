"""Plan D: a small patch discriminator.

It tells same-domain reconstructions (latent + skips -> x) from cross-domain outputs (the other
domain's latent, no skips -> x); the decoders are trained to make the two indistinguishable.
"""

from __future__ import annotations

import torch
from torch import nn

from model.config import DiscriminatorConfig

__all__ = ["PatchDiscriminator", "discriminator_fits", "min_discriminator_size"]


class PatchDiscriminator(nn.Module):
    """PatchGAN-style classifier: (B, C, H, W) -> per-patch logits (B, 1, H / 2**k, W / 2**k)."""

    def __init__(self, cfg: DiscriminatorConfig, in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, width in enumerate(cfg.features):
            layers.append(nn.Conv2d(prev, width, kernel_size=4, stride=2, padding=1))
            if i > 0:
                layers.append(nn.InstanceNorm2d(width, affine=True))
            layers.append(nn.LeakyReLU(0.2))
            prev = width
        layers.append(nn.Conv2d(prev, 1, kernel_size=3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def discriminator_fits(cfg: DiscriminatorConfig, height: int, width: int) -> bool:
    """Whether images of ``height`` x ``width`` pass through the discriminator in training.

    Each level's convolution (kernel 4, stride 2, padding 1) halves the map, rounding down; from the second
    level on an InstanceNorm follows, which in training needs more than one value per map.
    """
    h, w = height, width
    for level in range(len(cfg.features)):
        h, w = h // 2, w // 2
        if h < 1 or w < 1 or (level > 0 and h * w < 2):
            return False
    return True


def min_discriminator_size(cfg: DiscriminatorConfig) -> int:
    """The smallest side of a square image the discriminator takes in training (2 for one level, else
    ``2**(levels + 1)``)."""
    return 2 if len(cfg.features) == 1 else 2 ** (len(cfg.features) + 1)
