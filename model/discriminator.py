"""Plan D: a small patch discriminator.

It tells same-domain reconstructions (latent + skips -> x) from cross-domain outputs (the other
domain's latent, no skips -> x); the decoders are trained to make the two indistinguishable.
"""

from __future__ import annotations

import torch
from torch import nn

from model.config import DiscriminatorConfig

__all__ = ["PatchDiscriminator"]


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
