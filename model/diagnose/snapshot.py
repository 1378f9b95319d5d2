"""A :class:`Snapshot`: every diagnostic of a trainer's model at one step, taken without changing it.

Measurements use fixed pairs (the first validation pairs; gradients: the first training batch) so that
start and end compare like with like. BatchNorm runs on batch statistics, as in a training step, and its
running buffers are restored afterwards: measuring never changes the model, and a short run is not judged
through running statistics that have barely warmed up.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from model.diagnose.measures import (
    VARIANTS,
    GradientNorms,
    LatentStats,
    ProbeResult,
    domain_probe,
    gradient_norms,
    latent_stats,
    pool_latent,
    relative_change,
)
from model.trainer import Trainer, skip_weight_at

if TYPE_CHECKING:
    pass

__all__ = [
    "Snapshot",
    "measure",
]

# ----------------------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class Snapshot:
    """Every diagnostic at one training step (0 = before any update).

    Attributes:
        step: training steps done.
        skip_weight: the skip weight the decoders ran with.
        errors: L1 losses on the fixed held-out pairs: ``content``, ``recon_a``, ``recon_b``,
            ``cross_a`` (``x_a_from_b``), ``cross_b`` (``x_b_from_a``), ``recon``, ``cross``, ``total``
            (and ``adv`` with a discriminator).
        latent: :class:`LatentStats` of the held-out pairs.
        probe: the domain probe (fitted on training pairs, scored on held-out pairs).
        gradients: :class:`GradientNorms` on the fixed training batch.
        reliance: ``no_skip`` / ``use_source`` -> decoder -> relative change of the same-domain output
            (:func:`skip_reliance`).
        latent_only: ``latent_only_a`` / ``_b``: recon L1 from the latent alone; ``with_skips_a`` /
            ``_b``: with the decoder's own skips; ``mean_image_a`` / ``_b``: L1 of the batch's mean
            image (a decoder that learnt nothing specific).
        arrays: pooled held-out latents ``z_a``, ``z_b`` (B, 2L) for figures (not serialised).
    """

    step: int
    skip_weight: float
    errors: dict[str, float]
    latent: LatentStats
    probe: ProbeResult
    gradients: GradientNorms
    reliance: dict[str, dict[str, float]]
    latent_only: dict[str, float]
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def capacity(self, domain: str) -> float:
        """Fraction of the mean-image error the latent alone removes for ``domain`` (``a``/``b``)."""
        base = self.latent_only[f"mean_image_{domain}"]
        return 1.0 - self.latent_only[f"latent_only_{domain}"] / base if base > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "skip_weight": self.skip_weight,
            "errors": dict(self.errors),
            "latent": self.latent.to_dict(),
            "probe": self.probe.to_dict(),
            "gradients": self.gradients.to_dict(),
            "skip_reliance": {v: dict(d) for v, d in self.reliance.items()},
            "latent_only": dict(self.latent_only) | {f"capacity_{d}": self.capacity(d) for d in "ab"},
        }

    def flat(self) -> dict[str, float]:
        """Finite numeric figures under dotted names (e.g. ``grad.weighted.cross.decoder_a``)."""
        out: dict[str, float] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            elif isinstance(value, bool):
                out[prefix] = float(value)
            elif isinstance(value, int | float) and math.isfinite(value):
                out[prefix] = float(value)

        d = self.to_dict()
        d["grad"] = d.pop("gradients")
        d.pop("step")
        walk("", d)
        return out


@contextmanager
def _batch_statistics(modules: Sequence[nn.Module | None]) -> Iterator[None]:
    """Run ``modules`` in training mode (BatchNorm on batch statistics) and put back their modes and
    buffers (running statistics) afterwards."""
    mods = [m for m in modules if m is not None]
    modes = [(sub, sub.training) for m in mods for sub in m.modules()]
    saved = [(buf, buf.detach().clone()) for m in mods for buf in m.buffers()]
    try:
        for m in mods:
            m.train()
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)
        for sub, mode in modes:
            sub.training = mode


def _l1(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x - y).abs().mean())


def _pooled_latents(trainer: Trainer, split: Any, n: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled latents (n, 2L) of domains a and b for the first ``n`` pairs of ``split``."""
    feats_a, feats_b = [], []
    for start in range(0, n, chunk):
        batch = split.take(np.arange(start, min(n, start + chunk)))
        feats_a.append(pool_latent(trainer.model.encoder(batch["a"], paths=("a",))[0]))
        feats_b.append(pool_latent(trainer.model.encoder(batch["b"], paths=("b",))[0]))
    return np.concatenate(feats_a), np.concatenate(feats_b)


def measure(
    trainer: Trainer,
    *,
    step: int = 0,
    skip_weight: float | None = None,
    eval_pairs: int = 64,
    probe_pairs: int = 128,
) -> Snapshot:
    """Take every diagnostic of ``trainer``'s model now; the model is left as it was.

    Args:
        trainer: a :class:`~model.trainer.Trainer` (e.g. ``fit(...).trainer``).
        step: the step number to record.
        skip_weight: skip weight for the decoders (default: the schedule's first-epoch value).
        eval_pairs: held-out pairs for errors, latents, skip reliance and latent-only capacity.
        probe_pairs: at most this many training pairs fit the domain probe and this many held-out
            pairs score it.

    Returns:
        :class:`Snapshot`.
    """
    tc = trainer.config.trainer
    sw = skip_weight_at(tc, 1) if skip_weight is None else float(skip_weight)
    model = trainer.model
    discs = [d for d in (trainer.disc_a, trainer.disc_b) if d is not None]
    n_eval = min(eval_pairs, len(trainer.val))
    val = trainer.val.take(np.arange(n_eval))
    x_a, x_b = val["a"], val["b"]  # (B, 1, H, W)
    with _batch_statistics([model, *discs]):
        with torch.no_grad():
            out = trainer.forward(x_a, x_b, sw)
            errors = {k: float(v) for k, v in out.losses.items()}
            z_a, skips_a = model.encoder(x_a, paths=("a",))  # (B, L, h, w), skips shallow to deep
            z_b, skips_b = model.encoder(x_b, paths=("b",))
            sizes = [tuple(s.shape[-2:]) for s in skips_a]
            reliance: dict[str, dict[str, float]] = {v: {} for v in VARIANTS}
            latent_only: dict[str, float] = {}
            for d, decoder, z, own, other, x in (
                ("a", model.decoder_a, z_a, skips_a, skips_b, x_a),
                ("b", model.decoder_b, z_b, skips_b, skips_a, x_b),
            ):
                # the same-domain path's statistics for the trained output; the replacements are what
                # the cross path gets (BatchNorm runs on batch statistics here, so this only says whose
                # running statistics would move, and those are put back)
                ref = decoder(z, own, sizes=sizes, skip_weight=sw, path="same")  # (B, 1, H, W)
                bare = decoder(z, None, sizes=sizes, skip_weight=sw, path="cross")
                swapped = decoder(z, other, sizes=sizes, skip_weight=sw, path="cross")
                reliance["no_skip"][f"decoder_{d}"] = relative_change(ref, bare)
                reliance["use_source"][f"decoder_{d}"] = relative_change(ref, swapped)
                latent_only[f"latent_only_{d}"] = _l1(bare, x)
                latent_only[f"with_skips_{d}"] = _l1(ref, x)
                latent_only[f"mean_image_{d}"] = _l1(x.mean(0, keepdim=True).expand_as(x), x)
            latent = latent_stats(z_a, z_b)
            n_train = min(probe_pairs, len(trainer.train))
            n_test = min(probe_pairs, len(trainer.val))
            chunk = max(n_eval, 2)
            tr_a, tr_b = _pooled_latents(trainer, trainer.train, n_train, chunk)
            te_a, te_b = _pooled_latents(trainer, trainer.val, n_test, chunk)
            probe = domain_probe(tr_a, tr_b, te_a, te_b)
            arrays = {"z_a": pool_latent(z_a), "z_b": pool_latent(z_b)}
        batch = trainer.train.take(np.arange(min(tc.batch_size, len(trainer.train))))
        with torch.enable_grad():
            losses = trainer.forward(batch["a"], batch["b"], sw).losses
            # the gradient of the content term that is trained (trainer.content_loss), not of the
            # note's L1 diagnostic when the two differ
            losses = {**losses, "content": losses.get("content_loss", losses["content"])}
            grads = gradient_norms(
                losses,
                tc.loss_weights.model_dump(),
                {
                    "encoder": model.encoder,
                    "decoder_a": model.decoder_a,
                    "decoder_b": model.decoder_b,
                    "discriminator": discs or None,
                },
            )
    return Snapshot(step, sw, errors, latent, probe, grads, reliance, latent_only, arrays)
