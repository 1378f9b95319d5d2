"""The measures every run reports: L1, PSNR and the noise leak (docs/note.md's "noise leak").

Pure tensor functions; the trainer's validation pass (:meth:`model.trainer.Trainer.evaluate`) and the
documentation scripts use them.
"""

from __future__ import annotations

import torch

__all__ = ["l1", "noise_leak_terms", "psnr"]


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of ``x`` and ``y`` (any equal shapes): the note's losses."""
    return (x - y).abs().mean()


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of ``pred`` against ``target`` (B, 1, H, W), peak = the target's max; (B,)."""
    mse = ((pred - target) ** 2).mean((1, 2, 3)).clamp_min(1e-12)
    peak = target.amax((1, 2, 3)).clamp_min(1e-6)
    return 10 * torch.log10(peak**2 / mse)


def noise_leak_terms(
    err: torch.Tensor, noise: torch.Tensor, src_clean: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Numerator and denominator of the noise leak: the regression slope of the cross output's error
    ``err`` on the source image's noise ``noise`` (all (B, 1, H, W)); ``num / den`` is the fraction of
    the source's noise that reaches the output (0: none, 1: all of it).

    Only bright source pixels count: there magnitude (Rician) noise is unbiased, while in dark ones its
    bias follows the anatomy and would correlate with any structural error.
    """
    mask = (src_clean > 0.2 * src_clean.amax((1, 2, 3), keepdim=True)).float()
    k = mask.sum().clamp_min(1)
    err = (err - (err * mask).sum() / k) * mask
    noise = (noise - (noise * mask).sum() / k) * mask
    return (err * noise).sum(), (noise * noise).sum()
