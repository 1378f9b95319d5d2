"""The diagnostics' measurements, one per suspect of the cross loss (docs/note.md):

- **Latents** (hypothesis 1): :func:`latent_stats` (the distance between ``z_a`` and ``z_b``, absolute,
  relative to ``|z|`` and to unpaired latents, and the spread of ``z`` over the batch: tiny distance *and*
  tiny spread = a collapsed latent) and :func:`domain_probe` (the held-out accuracy of a linear classifier
  telling ``z_a`` from ``z_b``; 50% = no domain information left in the latent).
- **Gradients** (problem 2): :func:`gradient_norms`, for each loss term separately, the gradient norm it
  sends to the encoder, each decoder and the discriminator.
- **Skip reliance** (problem 1): :func:`skip_reliance`, the relative L1 change of a decoder's same-domain
  output when its skips are replaced by what the cross path gets (none under ``no_skip``, the other
  domain's under ``use_source``); 0 = the decoder ignores its skips, 1 = its output is all skip.
- **Data** (hypothesis 2): in :mod:`model.diagnose.data_content`.

Gradient norms are L2 norms over a module's parameters. ``weighted`` is the gradient of ``weight * term``
as it enters the total loss (a weight of 0 gives exactly 0); ``unweighted`` is the gradient of the term
alone (what it would send at weight 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    pass

__all__ = [
    "MODULES",
    "TERMS",
    "VARIANTS",
    "GradientNorms",
    "LatentStats",
    "ProbeResult",
    "domain_probe",
    "gradient_norms",
    "latent_stats",
    "pool_latent",
    "relative_change",
    "skip_reliance",
]

TERMS = ("content", "recon", "cross", "adv")
"""Loss terms whose gradients are measured separately."""
MODULES = ("encoder", "decoder_a", "decoder_b", "discriminator")
"""Modules the gradients are reported for (``discriminator`` = both domains' discriminators)."""
VARIANTS = ("no_skip", "use_source")
"""What the cross path can get instead of a decoder's own skips."""

# Thresholds of the readings (the figures themselves are always reported).
COLLAPSED_SPREAD = 0.05  # batch spread of z below this fraction of |z|: collapsed
DROWNED_RATIO = 0.2  # weighted cross / recon gradient on a decoder below this: drowned
DOMINANT_RATIO = 5.0  # ... above this: cross dominates
RELIANCE_HIGH = 0.5  # relative change of the output without its skips above this: leans on them
RELIANCE_LOW = 0.1  # ... below this: barely uses them
TREND = 0.05  # relative change start -> end beyond this: falls / rises
CAPACITY_GOOD = 0.5  # fraction of the mean-image error the latent alone removes: carries the image
CAPACITY_POOR = 0.2  # ... below this: carries little


# ------------------------------------------------------------------------------------------- latents


@dataclass(frozen=True)
class LatentStats:
    """Agreement and spread of paired latents.

    Attributes:
        distance: mean ``|z_a - z_b|`` (the content loss).
        relative: ``distance`` over the mean ``|z|``.
        unpaired: mean ``|z_a[i] - z_b[j]|`` over non-matching pairs ``j != i``; ``distance /
            unpaired`` is 0 when pairs agree perfectly and about 1 when pairing leaves no trace in z.
        spread: mean over latent elements of the standard deviation over the batch (both domains).
        spread_relative: ``spread`` over the mean ``|z|``.
        magnitude: mean ``|z|`` over both domains.
        collapsed: the latent barely varies over the batch (``spread_relative`` below
            :data:`COLLAPSED_SPREAD`, or ``z`` vanishes): a small distance then means nothing.
    """

    distance: float
    relative: float
    unpaired: float
    spread: float
    spread_relative: float
    magnitude: float
    collapsed: bool

    @property
    def pair_ratio(self) -> float:
        """``distance / unpaired`` (nan when unpaired distance is 0)."""
        return self.distance / self.unpaired if self.unpaired > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "distance": self.distance,
            "relative": self.relative,
            "unpaired": self.unpaired,
            "pair_ratio": self.pair_ratio,
            "spread": self.spread,
            "spread_relative": self.spread_relative,
            "magnitude": self.magnitude,
            "collapsed": self.collapsed,
        }


def latent_stats(z_a: torch.Tensor, z_b: torch.Tensor) -> LatentStats:
    """Distance, spread and collapse of paired latents.

    Args:
        z_a: latents of domain a, (B, ...) (e.g. (B, L, h, w)); row i pairs with row i of ``z_b``.
        z_b: latents of domain b, same shape.

    Returns:
        :class:`LatentStats`. With B = 1 the spread is 0 and the unpaired distance is nan.
    """
    if z_a.shape != z_b.shape:
        raise ValueError(f"z_a {tuple(z_a.shape)} and z_b {tuple(z_b.shape)} must have the same shape")
    za, zb = z_a.detach().flatten(1).double(), z_b.detach().flatten(1).double()  # (B, D)
    n = za.shape[0]
    distance = float((za - zb).abs().mean())
    magnitude = float(0.5 * (za.abs().mean() + zb.abs().mean()))
    if n > 1:
        # every non-matching pair (i, j), i != j: mean over the full (B, B) table minus its diagonal
        table = torch.cdist(za, zb, p=1) / za.shape[1]  # (B, B) mean |z_a[i] - z_b[j]|
        unpaired = float((table.sum() - table.diagonal().sum()) / (n * (n - 1)))
        spread = float(0.5 * (za.std(0).mean() + zb.std(0).mean()))
    else:
        unpaired, spread = math.nan, 0.0
    tiny = 1e-12
    relative = distance / magnitude if magnitude > tiny else math.nan
    spread_rel = spread / magnitude if magnitude > tiny else 0.0
    collapsed = magnitude <= tiny or (n > 1 and spread_rel < COLLAPSED_SPREAD)
    return LatentStats(distance, relative, unpaired, spread, spread_rel, magnitude, collapsed)


def pool_latent(z: torch.Tensor) -> np.ndarray:
    """Spatially pooled latent features for the domain probe.

    Args:
        z: (B, L, h, w) latents.

    Returns:
        (B, 2L) float64: each channel's mean and standard deviation over space.
    """
    flat = z.detach().flatten(2).double()  # (B, L, h*w)
    std = flat.std(2, unbiased=False)
    return torch.cat([flat.mean(2), std], dim=1).cpu().numpy()


@dataclass(frozen=True)
class ProbeResult:
    """A linear classifier telling domain a's latents from domain b's.

    Attributes:
        accuracy: accuracy on the held-out samples (balanced: one of each domain per pair).
        train_accuracy: accuracy on the samples it was fitted on.
        n_train: samples it was fitted on.
        n_test: held-out samples.
    """

    accuracy: float
    train_accuracy: float
    n_train: int
    n_test: int

    @property
    def chance_margin(self) -> float:
        """Two standard errors of a coin flip's accuracy over ``n_test`` samples."""
        return 1.0 / math.sqrt(self.n_test) if self.n_test else math.inf

    @property
    def informative(self) -> bool:
        """Held-out accuracy clearly above chance: the latent carries domain information."""
        return self.accuracy > 0.5 + self.chance_margin

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "train_accuracy": self.train_accuracy,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "chance_margin": self.chance_margin,
            "informative": self.informative,
        }


def domain_probe(
    a_train: np.ndarray,
    b_train: np.ndarray,
    a_test: np.ndarray,
    b_test: np.ndarray,
    *,
    l2: float = 1e-2,
) -> ProbeResult:
    """Fit an L2-regularised logistic regression telling a from b; score it on held-out samples.

    Features are standardised with the training samples' statistics. Identical latents
    (``a_test == b_test``) get exactly 50%: the classifier gives both members of a pair the same label.

    Args:
        a_train: (N, ...) features of domain a (flattened to (N, D)), e.g. :func:`pool_latent`.
        b_train: (N', ...) features of domain b.
        a_test: (M, ...) held-out features of domain a.
        b_test: (M', ...) held-out features of domain b.
        l2: weight of the L2 penalty on the (standardised) coefficients.

    Returns:
        :class:`ProbeResult`.
    """
    from scipy.optimize import minimize

    def rows(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64).reshape(len(x), -1)

    x_train = np.concatenate([rows(a_train), rows(b_train)])  # (N, D)
    y_train = np.r_[np.zeros(len(a_train)), np.ones(len(b_train))]
    x_test = np.concatenate([rows(a_test), rows(b_test)])
    y_test = np.r_[np.zeros(len(a_test)), np.ones(len(b_test))]
    if len(a_train) == 0 or len(b_train) == 0:
        raise ValueError("the probe needs training samples of both domains")
    mean, std = x_train.mean(0), x_train.std(0)
    std = np.where(std > 1e-12, std, 1.0)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    n, d = x_train.shape

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        logits = x_train @ w[:d] + w[d]
        p = 0.5 * (1.0 + np.tanh(0.5 * logits))  # sigmoid without overflow
        value = np.mean(np.logaddexp(0.0, logits) - y_train * logits) + 0.5 * l2 * w[:d] @ w[:d]
        r = (p - y_train) / n
        return float(value), np.r_[x_train.T @ r + l2 * w[:d], r.sum()]

    w = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B", options={"maxiter": 500}).x

    def accuracy(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((x @ w[:d] + w[d] > 0) == (y > 0.5))) if len(y) else math.nan

    return ProbeResult(accuracy(x_test, y_test), accuracy(x_train, y_train), len(y_train), len(y_test))


# ----------------------------------------------------------------------------------------- gradients


@dataclass(frozen=True)
class GradientNorms:
    """Gradient norms per loss term and module.

    Attributes:
        weights: each term's loss weight.
        weighted: term -> module -> L2 norm of the gradient of ``weight * term`` (as it enters the
            total; exactly 0 for a weight of 0 or a term that does not exist).
        unweighted: term -> module -> L2 norm of the gradient of the term alone (0 where it does not
            exist).
        total: module -> L2 norm of the gradient of the weighted sum of the terms.
        cosine: decoder -> cosine between the cross and recon gradients on it (None where one is 0).
        present: the terms that exist in this run (``adv`` only with a discriminator).

    The ``discriminator`` column holds what the generator's ``adv`` term sends to the discriminators;
    training discards it (they are updated by their own loss).
    """

    weights: dict[str, float]
    weighted: dict[str, dict[str, float]]
    unweighted: dict[str, dict[str, float]]
    total: dict[str, float]
    cosine: dict[str, float | None]
    present: tuple[str, ...]

    def ratio(self, module: str, *, weighted: bool = True) -> float | None:
        """Cross's gradient norm on ``module`` over recon's (inf when only cross sends one, None when
        neither does)."""
        table = self.weighted if weighted else self.unweighted
        cross, recon = table["cross"][module], table["recon"][module]
        if recon > 0:
            return cross / recon
        return math.inf if cross > 0 else None

    def term_total(self, term: str, *, weighted: bool = True) -> float:
        """L2 norm of ``term``'s gradient over all modules."""
        table = self.weighted if weighted else self.unweighted
        return math.sqrt(sum(v * v for v in table[term].values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": dict(self.weights),
            "weighted": {t: dict(v) for t, v in self.weighted.items()},
            "unweighted": {t: dict(v) for t, v in self.unweighted.items()},
            "total": dict(self.total),
            "cross_over_recon": {
                m: {
                    "weighted": self.ratio(m),
                    "unweighted": self.ratio(m, weighted=False),
                    "cosine": self.cosine.get(m),
                }
                for m in ("decoder_a", "decoder_b")
            },
            "present": list(self.present),
        }


def gradient_norms(
    losses: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    modules: Mapping[str, nn.Module | Sequence[nn.Module] | None],
) -> GradientNorms:
    """Gradient norm each loss term sends to each module, with ``torch.autograd.grad`` per term.

    Nothing is accumulated into ``.grad``; the graph is kept until the last term.

    Args:
        losses: scalar loss tensors by term (those of :data:`TERMS` present are measured), still
            attached to the graph.
        weights: loss weight per term (missing = 0).
        modules: module name -> module, list of modules, or None (absent: norms 0).

    Returns:
        :class:`GradientNorms` over :data:`TERMS` and the given modules.
    """
    params: dict[str, list[nn.Parameter]] = {}
    for name, mod in modules.items():
        mods = [] if mod is None else [mod] if isinstance(mod, nn.Module) else list(mod)
        params[name] = [p for m in mods for p in m.parameters() if p.requires_grad]
    flat = [p for ps in params.values() for p in ps]
    present = tuple(t for t in TERMS if t in losses and losses[t].requires_grad)
    grads: dict[str, dict[str, torch.Tensor | None]] = {}  # term -> module -> flat gradient (D,)
    for term in present:
        got = torch.autograd.grad(losses[term], flat, retain_graph=True, allow_unused=True)
        i = 0
        grads[term] = {}
        for name, ps in params.items():
            parts = [g.reshape(-1) for g in got[i : i + len(ps)] if g is not None]
            grads[term][name] = torch.cat(parts).double() if parts else None
            i += len(ps)

    def norm(g: torch.Tensor | None) -> float:
        return float(g.norm()) if g is not None else 0.0

    w = {t: float(weights.get(t, 0.0)) for t in TERMS}
    unweighted = {t: {m: norm(grads[t][m]) if t in grads else 0.0 for m in params} for t in TERMS}
    weighted = {t: {m: w[t] * v if w[t] > 0 else 0.0 for m, v in unweighted[t].items()} for t in TERMS}
    total: dict[str, float] = {}
    for m in params:
        parts = [w[t] * grads[t][m] for t in present if w[t] > 0 and grads[t][m] is not None]
        total[m] = float(torch.stack(parts).sum(0).norm()) if parts else 0.0
    cosine: dict[str, float | None] = {}
    for m in ("decoder_a", "decoder_b"):
        gc = grads.get("cross", {}).get(m)
        gr = grads.get("recon", {}).get(m)
        ok = gc is not None and gr is not None and float(gc.norm()) > 0 and float(gr.norm()) > 0
        cosine[m] = float(gc @ gr / (gc.norm() * gr.norm())) if ok else None
    return GradientNorms(w, weighted, unweighted, total, cosine, present)


# -------------------------------------------------------------------------------------- skip reliance


def relative_change(reference: torch.Tensor, other: torch.Tensor) -> float:
    """mean |reference - other| / mean |reference| (nan when the reference is all zeros)."""
    scale = float(reference.abs().mean())
    return float((reference - other).abs().mean()) / scale if scale > 0 else math.nan


@torch.no_grad()
def skip_reliance(
    decoder: Callable[..., torch.Tensor],
    z: torch.Tensor,
    skips: Sequence[torch.Tensor],
    replacement: Sequence[torch.Tensor] | None = None,
    *,
    sizes: Sequence[tuple[int, int]] | None = None,
    skip_weight: float = 1.0,
) -> float:
    """How much a decoder's same-domain output changes when its skips are replaced.

    Works for the ``concat`` and the ``add`` ``Up`` alike: only the decoder's outputs are compared.
    The decoder's mode (train/eval) is the caller's.

    Args:
        decoder: called as ``decoder(z, skips | None, sizes=..., skip_weight=...)`` -> (B, C, H, W),
            e.g. :class:`model.unet.Decoder`.
        z: the decoder's own domain's latent, (B, L, h, w).
        skips: that domain's skips, shallow to deep.
        replacement: what the cross path gets instead: None (``no_skip``) or the other domain's skips
            (``use_source``).
        sizes: spatial size of each encoder level, shallow to deep (default: the skips' sizes).
        skip_weight: scale of the skips.

    Returns:
        ``mean |out(skips) - out(replacement)| / mean |out(skips)|``: 0 when the decoder ignores its
        skips, about 1 when its output is all skip and the replacement removes it.
    """
    sizes = sizes if sizes is not None else [tuple(s.shape[-2:]) for s in skips]
    ref = decoder(z, skips, sizes=sizes, skip_weight=skip_weight)
    other = decoder(z, replacement, sizes=sizes, skip_weight=skip_weight)
    return relative_change(ref, other)
