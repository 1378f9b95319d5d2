"""The forms of the content term (``trainer.content_loss``): what pulls a pair's latents together.

The note's content loss, ``|z_a - z_b|``, is minimised by a latent that is the same for every image, and
on the phantoms it gets there: the spread of ``z`` over the batch falls from about 96% of ``|z|`` to 1%
(docs/findings.md). The forms:

- ``l1`` (the note's, the default): ``mean |z_a - z_b|`` (:func:`model.metrics.l1`).
- ``cosine``: ``mean_i (1 - cos(z_a[i], z_b[i]))``, each latent flattened (:func:`cosine_distance`):
  scale-free, as the distance of SimSiam and BYOL is, so shrinking ``z`` no longer lowers it; a latent
  that is the same for every image still scores 0.
- ``vicreg``: the note's L1 invariance plus VICReg's variance term (Bardes, Ponce & LeCun 2022,
  "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning"):
  ``|z_a - z_b| + w * (v(z_a) + v(z_b))`` with ``v`` the hinge on each latent element's standard
  deviation over the batch (:func:`variance_hinge`, gamma = 1, eps = 1e-4 as in the paper) and ``w``
  ``trainer.content_variance_weight`` (VICReg's mu / lambda: 1 in the paper). VICReg's invariance is an
  MSE and it adds a covariance term; here the invariance stays the note's L1, so the variance term is the
  one change, and there is no covariance term.

``stop_gradient`` (``trainer.content_stop_gradient``) treats one latent of the invariance as a fixed
target, as SimSiam does (Chen & He 2021, "Exploring Simple Siamese Representation Learning"): ``a``
detaches ``z_a`` (only ``z_b`` is pulled toward it), ``b`` the reverse, ``symmetric`` the mean of the two
(SimSiam's symmetrised loss, without its predictor). The value is unchanged; only the gradient differs.
VICReg's variance terms are never detached.

Every function returns a scalar on its inputs' device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from model.config import TrainerConfig
from model.metrics import l1

__all__ = [
    "CONTENT_LOSSES",
    "STOP_GRADIENTS",
    "VICREG_EPS",
    "VICREG_GAMMA",
    "content_loss",
    "trained_content",
    "cosine_distance",
    "variance_hinge",
]

#: The values of ``trainer.content_loss``.
CONTENT_LOSSES = ("l1", "cosine", "vicreg")
#: The values of ``trainer.content_stop_gradient``.
STOP_GRADIENTS = ("none", "a", "b", "symmetric")
#: VICReg's target standard deviation (gamma) and the epsilon under its square root.
VICREG_GAMMA = 1.0
VICREG_EPS = 1e-4


def cosine_distance(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """``mean_i (1 - cos(z_a[i], z_b[i]))`` over the batch, each latent (B, ...) flattened; in [0, 2]."""
    cos = F.cosine_similarity(z_a.flatten(1), z_b.flatten(1), dim=1)  # (B,)
    return (1 - cos).mean()


def variance_hinge(z: torch.Tensor, gamma: float = VICREG_GAMMA, eps: float = VICREG_EPS) -> torch.Tensor:
    """VICReg's variance term: ``mean_j max(0, gamma - sqrt(Var_i z[i, j] + eps))``.

    Args:
        z: latents (B, ...); ``j`` runs over the flattened elements, the variance (unbiased, as in the
            paper's code) over the batch.

    Returns:
        A scalar: 0 when every element varies over the batch by at least ``gamma`` (standard deviation),
        about ``gamma`` for a collapsed latent. A batch of one has no spread to measure: 0.
    """
    flat = z.flatten(1)  # (B, D)
    if flat.shape[0] < 2:
        return flat.new_zeros(())
    std = torch.sqrt(flat.var(dim=0) + eps)  # (D,)
    return F.relu(gamma - std).mean()


def content_loss(
    kind: str,
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    variance_weight: float = 1.0,
    stop_gradient: str = "none",
) -> torch.Tensor:
    """The content term ``kind`` (one of :data:`CONTENT_LOSSES`) of paired latents ``z_a``, ``z_b`` (B, ...).

    Args:
        variance_weight: ``vicreg``'s weight of the variance terms against the invariance.
        stop_gradient: which latent the invariance treats as a fixed target (:data:`STOP_GRADIENTS`).
    """
    if kind not in CONTENT_LOSSES:
        raise ValueError(f"content_loss must be one of {CONTENT_LOSSES}, not {kind!r}")
    distance = cosine_distance if kind == "cosine" else l1
    invariance = _invariance(distance, z_a, z_b, stop_gradient)
    if kind == "vicreg":
        return invariance + variance_weight * (variance_hinge(z_a) + variance_hinge(z_b))
    return invariance


def _invariance(
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    stop_gradient: str,
) -> torch.Tensor:
    if stop_gradient == "none":
        return distance(z_a, z_b)
    if stop_gradient == "a":
        return distance(z_a.detach(), z_b)
    if stop_gradient == "b":
        return distance(z_a, z_b.detach())
    if stop_gradient == "symmetric":
        return 0.5 * (distance(z_a.detach(), z_b) + distance(z_a, z_b.detach()))
    raise ValueError(f"content_stop_gradient must be one of {STOP_GRADIENTS}, not {stop_gradient!r}")


def trained_content(
    cfg: TrainerConfig, z_a: torch.Tensor, z_b: torch.Tensor, note: torch.Tensor
) -> torch.Tensor:
    """The content term the total trains: ``note`` (the note's ``|z_a - z_b|``, already computed) at the
    defaults, else :func:`content_loss` of ``cfg.content_loss`` with ``cfg.content_stop_gradient``."""
    if cfg.content_loss == "l1" and cfg.content_stop_gradient == "none":
        return note
    return content_loss(
        cfg.content_loss,
        z_a,
        z_b,
        variance_weight=cfg.content_variance_weight,
        stop_gradient=cfg.content_stop_gradient,
    )
