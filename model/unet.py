"""The note's shared UNet encoder and its two decoders.

Shapes: images are (B, C, H, W). An encoder with ``features = [f0, ..., f_{n-1}]`` returns the latent
``z`` of shape (B, latent_channels, H / 2**n, W / 2**n) and ``n`` skips, shallow to deep: skip ``i``
has ``f_i`` channels at resolution H / 2**i. A decoder has ``n`` ``Up`` blocks, deep to shallow; block
``i`` consumes skip ``n - 1 - i``.

Two ``Up`` variants:

- ``concat`` (the original, the familiar UNet ``Up``): upsample, centre-pad to the skip's size,
  ``cat([skip, upsampled])``, DoubleConv. Without a skip it concatenates zeros of the skip's shape,
  exactly the behaviour the note diagnoses (Problem 1).
- ``add`` (Plan A): ``upsampled + skip_weight * interpolate(skip)``; nothing is concatenated, so a
  missing skip loses no input channels.

Normalisation: every block's norm is ``model.norm`` (:mod:`model.norm`): BatchNorm by default, or
BatchNorm with running statistics per path, GroupNorm, InstanceNorm or none.

Grouped passes: the trainer encodes both domains in one batched pass and runs a decoder's two passes
(same-domain and cross) in one when both or neither have skips. The inputs are stacked along the
batch as equal blocks, one per *path* (``paths``: the encoder's ``a`` and ``b``, a decoder's ``same``
and ``cross``), and every norm treats each block as a separate call would: BatchNorm normalises each
block with its own statistics and updates its running statistics one block after the other
(:func:`group_batch_norm`), per-path BatchNorm also routes each block to its path's running statistics,
and the per-sample norms need nothing. So a grouped pass computes the separate passes' numbers (tests
check it), with fewer, larger kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.config import DecoderConfig, EncoderConfig, ModelConfig
from model.norm import DECODER_PATHS, ENCODER_PATHS, group_batch_norm, make_norm, normalise

__all__ = [
    "CROSS_DOMAIN_STRATEGIES",
    "CrossDomainAE",
    "Decoder",
    "DoubleConv",
    "Down",
    "Encoder",
    "Passes",
    "Up",
    "group_batch_norm",
    "latent_size",
    "min_image_size",
]

Size = tuple[int, int]
#: The path of each equal batch block of a grouped pass, in order (e.g. ``("same", "cross")``); None for
#: a path left unsaid (per-path BatchNorm refuses it), and None for the whole tuple means one such block.
Paths = Sequence[str | None]

#: Where the cross path's skips come from: the source domain's (``use_source``) or nowhere (``no_skip``).
CROSS_DOMAIN_STRATEGIES = ("use_source", "no_skip")


def min_image_size(cfg: ModelConfig) -> int:
    """The smallest height and width an image may have to pass through the model: ``2**len(features)``.

    The encoder halves the image (max-pool by 2, rounding down) in each of its ``len(features) - 1``
    ``Down`` blocks and once more into the bottleneck, ``len(features)`` times in all, and the latent needs
    a pixel: 3x3 images and two levels end in a 0x0 map (torch: "Output size is too small"). Checked
    against real forward passes for several depths (tests/model_tests/test_unet.py).
    """
    return 2 ** len(cfg.encoder.features)


def latent_size(cfg: ModelConfig, height: int, width: int) -> Size:
    """The latent's (h, w) for images of ``height`` x ``width`` (0 where the image is too small)."""
    levels = len(cfg.encoder.features)
    return height >> levels, width >> levels


class DoubleConv(nn.Module):
    """(conv 3x3 => norm => ReLU) * 2; keeps H and W.

    The norms are ``model.norm``'s (:func:`model.norm.make_norm`; BatchNorm by default), still named
    ``bn1`` and ``bn2`` so that checkpoints keep their keys; ``paths`` are the passes through the block
    (per-path BatchNorm keeps statistics for each). Without a norm the convolutions get a bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int | None = None,
        norm: str = "batch",
        paths: Sequence[str] = ENCODER_PATHS,
    ) -> None:
        super().__init__()
        mid = mid_channels or out_channels
        bias = norm == "none"
        self.conv1 = nn.Conv2d(in_channels, mid, kernel_size=3, padding=1, bias=bias)
        self.bn1 = make_norm(norm, mid, paths)
        self.conv2 = nn.Conv2d(mid, out_channels, kernel_size=3, padding=1, bias=bias)
        self.bn2 = make_norm(norm, out_channels, paths)

    def forward(self, x: torch.Tensor, paths: Paths | None = None) -> torch.Tensor:
        return self.after_conv1(self.conv1(x), paths)

    def after_conv1(self, h: torch.Tensor, paths: Paths | None = None) -> torch.Tensor:
        """The block from the first norm on, given the first convolution's output ``h``."""
        h = F.relu(normalise(self.bn1, h, paths))
        return F.relu(normalise(self.bn2, self.conv2(h), paths))


class Down(nn.Module):
    """Max-pool by 2, then DoubleConv."""

    def __init__(
        self, in_channels: int, out_channels: int, norm: str = "batch", paths: Sequence[str] = ENCODER_PATHS
    ) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.conv = DoubleConv(in_channels, out_channels, norm=norm, paths=paths)

    def forward(self, x: torch.Tensor, paths: Paths | None = None) -> torch.Tensor:
        return self.conv(self.pool(x), paths)


def _stack(blocks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Blocks stacked along the batch (a single block as it is, without a copy)."""
    return blocks[0] if len(blocks) == 1 else torch.cat(list(blocks))


def _pad_to(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Centre-pad (or crop) ``x`` (B, C, h, w) to spatial ``size``, as the familiar UNet ``Up`` does."""
    dy, dx = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if dy == 0 and dx == 0:
        return x
    return F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])


class Up(nn.Module):
    """Upsample the latent path and merge one skip.

    Args:
        in_channels: channels of the deeper input ``x1``.
        skip_channels: channels of the skip ``x2``; the upsampled path has as many, so in ``concat``
            mode the convolution sees half skip, half latent (the note's "roughly 50%").
        out_channels: channels of the output.
        mode: ``concat`` (original) or ``add`` (Plan A).
        upsample: ``transpose`` (ConvTranspose2d) or ``bilinear`` (+ 1x1 conv).
        norm: the block's normalisation (:data:`model.norm.NORMS`).
        paths: the passes through the block (per-path BatchNorm keeps statistics for each).
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        mode: str = "concat",
        upsample: str = "transpose",
        norm: str = "batch",
        paths: Sequence[str] = DECODER_PATHS,
    ) -> None:
        super().__init__()
        if mode not in ("concat", "add"):
            raise ValueError(f"Up mode must be 'concat' or 'add', not {mode!r}")
        self.mode = mode
        self.skip_channels = skip_channels
        if upsample == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, skip_channels, kernel_size=2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                nn.Conv2d(in_channels, skip_channels, kernel_size=1),
            )
        conv_in = 2 * skip_channels if mode == "concat" else skip_channels
        self.conv = DoubleConv(conv_in, out_channels, norm=norm, paths=paths)

    def forward(
        self,
        x1: torch.Tensor,
        x2: torch.Tensor | None = None,
        skip_weight: float = 1.0,
        size: Size | None = None,
        paths: Paths | None = None,
    ) -> torch.Tensor:
        """Merge ``x1`` (B, in, h, w) with the skip ``x2`` (B, skip, H, W) or, when absent, nothing.

        Args:
            size: output (H, W) when ``x2`` is None (default: twice ``x1``'s).
            paths: ``x1`` (and ``x2``) stack one equal batch block per path named here, each normalised
                as its own call on its path would be (default: one block, on the first path).

        Returns:
            (B, out, H, W)
        """
        x1 = self.up(x1)  # (B, skip, 2h, 2w)
        target = tuple(x2.shape[-2:]) if x2 is not None else size
        if target is not None:
            x1 = _pad_to(x1, target)  # (B, skip, H, W)
        if self.mode == "add":
            if x2 is None:
                return self.conv(x1, paths)  # nothing is lost without a skip
            if x2.shape[-2:] != x1.shape[-2:]:
                x2 = F.interpolate(x2, size=x1.shape[-2:])
            return self.conv(x1 + skip_weight * x2, paths)
        if x2 is None:
            # The original concatenates zeros: cat([0, x1]). Their half of the first convolution
            # contributes nothing, so convolve x1 with the upsampled half of the weights alone: the
            # same numbers without the wasted work (tests check it against the explicit zeros).
            conv1 = self.conv.conv1
            h = F.conv2d(x1, conv1.weight[:, self.skip_channels :], conv1.bias, padding=1)
            return self.conv.after_conv1(h, paths)
        if skip_weight != 1.0:
            x2 = skip_weight * x2
        return self.conv(torch.cat([x2, x1], dim=1), paths)  # (B, 2 * skip, H, W) -> (B, out, H, W)

    def forward_explicit_zeros(
        self, x1: torch.Tensor, size: Size | None = None, paths: Paths | None = None
    ) -> torch.Tensor:
        """The original no-skip path, literally ``cat([zeros_like(x1), x1])`` (reference for tests)."""
        x1 = self.up(x1)
        if size is not None:
            x1 = _pad_to(x1, size)
        return self.conv(torch.cat([torch.zeros_like(x1), x1], dim=1), paths)


class Encoder(nn.Module):
    """Shared UNet encoder: image -> (latent, skips); its paths are the domains ``a`` and ``b``."""

    def __init__(self, cfg: EncoderConfig, norm: str = "batch") -> None:
        super().__init__()
        f = cfg.features
        self.inc = DoubleConv(cfg.in_channels, f[0], norm=norm, paths=ENCODER_PATHS)
        self.downs = nn.ModuleList(Down(f[i - 1], f[i], norm, ENCODER_PATHS) for i in range(1, len(f)))
        self.bottleneck = Down(f[-1], cfg.latent_channels, norm, ENCODER_PATHS)
        self.skip_channels = list(f)

    def forward(self, x: torch.Tensor, paths: Paths | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode ``x`` (B, C, H, W).

        Args:
            paths: the domain of each equal batch block ``x`` stacks (e.g. ``("a", "b")``), each
                normalised as encoding it alone would (outputs keep the blocks stacked). Default: one
                block; per-path BatchNorm refuses that (it needs to know the domain).

        Returns:
            ``z`` (B, latent, H / 2**n, W / 2**n) and skips, shallow to deep: skip i is
            (B, features[i], H / 2**i, W / 2**i).
        """
        h = self.inc(x, paths)
        skips = [h]
        for down in self.downs:
            h = down(h, paths)
            skips.append(h)
        return self.bottleneck(h, paths), skips


class Decoder(nn.Module):
    """One domain's decoder: latent (+ optional skips) -> image; its paths are ``same`` (the
    same-domain reconstruction) and ``cross`` (the cross output)."""

    def __init__(
        self,
        cfg: DecoderConfig,
        skip_channels: Sequence[int],
        up_mode: str = "concat",
        upsample: str = "transpose",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        skips_deep_first = list(reversed(skip_channels))
        ins = [cfg.latent_channels, *cfg.features[:-1]]
        self.ups = nn.ModuleList(
            Up(ins[i], skips_deep_first[i], cfg.features[i], up_mode, upsample, norm, DECODER_PATHS)
            for i in range(len(cfg.features))
        )
        self.outc = nn.Conv2d(cfg.features[-1], cfg.out_channels, kernel_size=1)

    def forward(
        self,
        z: torch.Tensor,
        skips: Sequence[torch.Tensor] | None = None,
        *,
        sizes: Sequence[Size] | None = None,
        skip_weight: float = 1.0,
        path: str | None = None,
    ) -> torch.Tensor:
        """Decode ``z`` (B, latent, h, w).

        Args:
            skips: the encoder's skips, shallow to deep, or None (the cross path without skips).
            sizes: spatial size of each encoder level, shallow to deep; used without skips so the
                output has the input's size for any H, W.
            skip_weight: scale of the skips (Plan A's schedule).
            path: ``same`` or ``cross``: whose statistics per-path BatchNorm uses (required there,
                ignored by the other norms).

        Returns:
            (B, out_channels, H, W)
        """
        return self.forward_groups(
            [z],
            None if skips is None else [skips],
            paths=None if path is None else (path,),
            sizes=sizes,
            skip_weight=skip_weight,
        )[0]

    def forward_groups(
        self,
        zs: Sequence[torch.Tensor],
        skips: Sequence[Sequence[torch.Tensor]] | None,
        *,
        paths: Paths | None,
        sizes: Sequence[Size] | None = None,
        skip_weight: float = 1.0,
    ) -> list[torch.Tensor]:
        """:meth:`forward` of each ``zs[g]`` with ``skips[g]`` (or, when ``skips`` is None, none) on path
        ``paths[g]``, in one batched pass; every ``zs[g]`` has the same shape. Returns one output per
        ``g``."""
        groups = len(zs)
        if paths is not None and len(paths) != groups:
            raise ValueError(f"{groups} latents but {len(paths)} paths: name one path per latent")
        h = _stack(zs)  # (groups * B, latent, h, w)
        n = len(self.ups)
        for i, up in enumerate(self.ups):
            level = n - 1 - i
            skip = _stack([s[level] for s in skips]) if skips is not None else None
            size = tuple(sizes[level]) if sizes is not None else None
            h = up(h, skip, skip_weight=skip_weight, size=size, paths=paths or (None,) * groups)
        return list(self.outc(h).chunk(groups))


@dataclass(frozen=True)
class Passes:
    """One forward pass of the note's model on a batch of pairs; images are (B, 1, H, W).

    ``recon_a`` is ``decoder_a(z_a, skips_a or None)``, ``a_from_b`` (the cross output ``x_a_from_b``)
    is ``decoder_a(z_b, skips_b or None)``, and symmetrically for ``b``.
    """

    z_a: torch.Tensor  # (B, L, h, w)
    z_b: torch.Tensor  # (B, L, h, w)
    recon_a: torch.Tensor
    a_from_b: torch.Tensor
    recon_b: torch.Tensor
    b_from_a: torch.Tensor

    def float(self) -> Passes:
        """Every tensor as float32 (the passes may have run under a bfloat16 autocast)."""
        return Passes(*(getattr(self, f).float() for f in self.__dataclass_fields__))


class CrossDomainAE(nn.Module):
    """The note's model: one shared encoder, ``decoder_a`` (PD) and ``decoder_b`` (PDFS)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.encoder = Encoder(cfg.encoder, cfg.norm)
        skip_ch = self.encoder.skip_channels
        self.decoder_a = Decoder(cfg.decoder_a, skip_ch, cfg.up_mode, cfg.upsample, cfg.norm)
        self.decoder_b = Decoder(cfg.decoder_b, skip_ch, cfg.up_mode, cfg.upsample, cfg.norm)

    def forward(
        self,
        x_a: torch.Tensor,
        x_b: torch.Tensor,
        *,
        same_domain_use_skip: bool = True,
        cross_domain_strategy: str = "use_source",
        skip_weight: float = 1.0,
    ) -> Passes:
        """Encode both domains and decode the four outputs, routing the skips as the note's flags say.

        Args:
            x_a, x_b: a batch of pairs, (B, 1, H, W) each.
            same_domain_use_skip: the same-domain reconstructions get their own domain's skips (plan B
                turns this off: the latent alone must reconstruct).
            cross_domain_strategy: what the cross path's decoder gets: ``use_source`` (the source
                domain's skips, which carry its noise) or ``no_skip`` (the latent alone).
            skip_weight: scale of every skip that is used (plan A's schedule).

        Returns:
            :class:`Passes`. Both domains go through the encoder in one batched pass, and a decoder's
            same-domain and cross passes run as one when they share a skip mode; grouped passes keep each
            block's normalisation statistics (and, with ``batch_per_path``, its path's running
            statistics), so the numbers are those of separate calls (tests check it).
        """
        if cross_domain_strategy not in CROSS_DOMAIN_STRATEGIES:
            raise ValueError(f"cross_domain_strategy must be one of {CROSS_DOMAIN_STRATEGIES}")
        z, skips = self.encoder(torch.cat([x_a, x_b]), paths=ENCODER_PATHS)  # (2B, L, h, w), [(2B, f_i, ...)]
        z_a, z_b = z.chunk(2)
        halves = [s.chunk(2) for s in skips]
        skips_a, skips_b = [h[0] for h in halves], [h[1] for h in halves]
        sizes = [tuple(s.shape[-2:]) for s in skips]
        same = same_domain_use_skip
        use_src = cross_domain_strategy == "use_source"
        kw = {"sizes": sizes, "skip_weight": skip_weight}
        if same == use_src:  # one pass per decoder: [same-domain, cross] stacked
            recon_a, a_from_b = self.decoder_a.forward_groups(
                [z_a, z_b], [skips_a, skips_b] if same else None, paths=DECODER_PATHS, **kw
            )
            recon_b, b_from_a = self.decoder_b.forward_groups(
                [z_b, z_a], [skips_b, skips_a] if same else None, paths=DECODER_PATHS, **kw
            )
        else:
            recon_a = self.decoder_a(z_a, skips_a if same else None, path="same", **kw)
            recon_b = self.decoder_b(z_b, skips_b if same else None, path="same", **kw)
            a_from_b = self.decoder_a(z_b, skips_b if use_src else None, path="cross", **kw)
            b_from_a = self.decoder_b(z_a, skips_a if use_src else None, path="cross", **kw)
        return Passes(z_a, z_b, recon_a, a_from_b, recon_b, b_from_a)
