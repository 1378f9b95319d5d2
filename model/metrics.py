"""The measures every run reports: L1, PSNR, the noise leak (docs/note.md's "noise leak") and the
constant-prediction baselines every cross loss is read against.

Pure tensor functions; the trainer's validation pass (:meth:`model.trainer.Trainer.evaluate`) and the
documentation scripts use them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["BASELINES", "constant_baselines", "l1", "noise_leak_terms", "psnr"]

#: The baseline metrics :func:`constant_baselines` returns, each logged once per run (at epoch 0).
BASELINES = ("cross_mean_image", "cross_zeros", "cross_baseline", "cross_mean_image_psnr_clean")


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


@torch.inference_mode()
def constant_baselines(
    train: Iterable[dict[str, torch.Tensor]], val: Iterable[dict[str, torch.Tensor]]
) -> dict[str, float]:
    """The cross loss a model gets for free, without looking at its input, on the validation pairs.

    A cross output that ignores its source can at best predict one image for every input: the target
    domain's mean training image (``cross_mean_image``), or nothing at all (``cross_zeros``, the mean
    absolute target). ``cross_baseline`` is the lower of the two: a cross loss that ends there has learnt
    no image-specific mapping, whatever its trend. With clean images, ``cross_mean_image_psnr_clean`` is
    the mean image's PSNR against the clean targets (comparable to ``cross_psnr_clean``). Every value is
    the mean over both directions, as ``cross`` is.

    Args:
        train: batches (dicts with ``a``, ``b`` of shape (B, 1, H, W)) of the training pairs.
        val: batches of the validation pairs (with ``clean_a``, ``clean_b`` when known).
    """
    totals: dict[str, torch.Tensor] = {}
    n = 0
    for batch in train:
        for d in "ab":
            totals[d] = totals.get(d, 0) + batch[d].double().sum(0, keepdim=True)  # (1, 1, H, W)
        n += batch["a"].shape[0]
    mean = {d: (totals[d] / n).float() for d in "ab"}
    sums = {"cross_mean_image": 0.0, "cross_zeros": 0.0, "cross_mean_image_psnr_clean": 0.0}
    seen, clean = 0, True
    for batch in val:
        b = batch["a"].shape[0]
        for d in "ab":
            target = batch[d]
            sums["cross_mean_image"] += 0.5 * float((mean[d] - target).abs().mean((1, 2, 3)).sum())
            sums["cross_zeros"] += 0.5 * float(target.abs().mean((1, 2, 3)).sum())
            if f"clean_{d}" in batch:
                guess = mean[d].expand_as(target)
                sums["cross_mean_image_psnr_clean"] += 0.5 * float(psnr(guess, batch[f"clean_{d}"]).sum())
            else:
                clean = False
        seen += b
    out = {k: v / seen for k, v in sums.items()}
    if not clean:
        out.pop("cross_mean_image_psnr_clean")
    out["cross_baseline"] = min(out["cross_mean_image"], out["cross_zeros"])
    return out
