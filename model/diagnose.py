"""The note's diagnostics: why does the cross loss not fall?

:func:`diagnose` trains a config for a few steps and measures, at the start, at the end (and every
``every`` steps), one figure per suspect the note names:

- **Latents** (hypothesis 1): the distance between ``z_a`` and ``z_b`` (absolute, relative to ``|z|``
  and to unpaired latents), the spread of ``z`` over the batch (tiny distance *and* tiny spread = a
  collapsed latent), and a *domain probe*: the held-out accuracy of a linear classifier telling ``z_a``
  from ``z_b`` (50% = no domain information left in the latent).
- **Errors**: recon and cross per direction.
- **Gradients** (Problem 2): for each loss term separately, the gradient norm it sends to the encoder,
  each decoder and the discriminator, and the ratio cross / recon on each decoder.
- **Skip reliance** (Problem 1): the relative L1 change of a decoder's same-domain output when its skips
  are replaced by what the cross path gets (none under ``no_skip``, the other domain's under
  ``use_source``); 0 = the decoder ignores its skips, 1 = its output is all skip.
- **Latent-only capacity** (hypothesis 3): the recon error of each decoder fed the latent alone.
- **Data** (hypothesis 2): on data with clean images, how much of one domain's clean image the best
  per-pixel intensity mapping of the other's leaves unexplained.

Conventions (they matter for reading the numbers):

- Measurements use fixed pairs (the first validation pairs; gradients: the first training batch) so
  that start and end compare like with like.
- BatchNorm runs on batch statistics, as in a training step, and its running buffers are restored
  afterwards: measuring never changes the model, and a short run is not judged through running
  statistics that have barely warmed up.
- Gradient norms are L2 norms over a module's parameters. ``weighted`` is the gradient of
  ``weight * term`` as it enters the total loss (a weight of 0 gives exactly 0); ``unweighted`` is the
  gradient of the term alone (what it would send at weight 1).

Everything here is a plain library function usable from a notebook (:func:`measure` on a trainer you
already have, :func:`latent_stats`, :func:`domain_probe`, :func:`gradient_norms`,
:func:`skip_reliance`, :func:`data_content`, :func:`plot_report`); it never imports tracking code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from model.config import RunConfig
from model.data import PairedSource
from model.trainer import NonFiniteLossError, Trainer, skip_weight_at

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "MODULES",
    "TERMS",
    "VARIANTS",
    "DataContent",
    "DiagnosisReport",
    "GradientNorms",
    "LatentStats",
    "ProbeResult",
    "Reading",
    "Snapshot",
    "best_intensity_mapping",
    "data_content",
    "diagnose",
    "domain_probe",
    "gradient_norms",
    "latent_stats",
    "measure",
    "plot_report",
    "pool_latent",
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
DATA_RESIDUAL = 0.05  # residual after the best intensity mapping below this fraction of the signal
DATA_DIFFERING = 0.05  # ... and fewer pixels than this differing: same content
DIFFERING_LEVEL = 0.1  # a pixel differs when its residual exceeds this fraction of the target's p99


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


def _relative_change(reference: torch.Tensor, other: torch.Tensor) -> float:
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
    return _relative_change(ref, other)


# --------------------------------------------------------------------------------------------- data


def best_intensity_mapping(source: np.ndarray, target: np.ndarray, levels: int | None = None) -> np.ndarray:
    """The best per-pixel intensity mapping of ``source`` onto ``target``.

    A least-squares lookup table: the source's intensities are cut into ``levels`` quantile bins and
    each bin gets its own straight line ``target ~ a + b * source``. Any monotone or non-monotone
    intensity-to-intensity mapping (e.g. fat suppression darkening one tissue only) is fitted closely;
    what it cannot fit is structure: two tissues with one intensity in ``source`` and two in ``target``.

    Args:
        source: (H, W) image (any shape; it is flattened).
        target: an image of the same shape.
        levels: number of intensity bins (default: one per 16 pixels, between 4 and 64).

    Returns:
        The mapped source, float64, ``target``'s shape.
    """
    s = np.asarray(source, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=np.float64).ravel()
    if s.shape != t.shape:
        raise ValueError(f"source {np.shape(source)} and target {np.shape(target)} differ in size")
    k = levels or int(np.clip(s.size // 16, 4, 64))
    edges = np.unique(np.quantile(s, np.linspace(0.0, 1.0, k + 1)))
    m = max(len(edges) - 1, 1)
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, m - 1)  # (P,) bin of each pixel
    count = np.maximum(np.bincount(idx, minlength=m), 1)
    ms, mt = np.bincount(idx, s, m) / count, np.bincount(idx, t, m) / count
    var = np.bincount(idx, s * s, m) / count - ms**2
    cov = np.bincount(idx, s * t, m) / count - ms * mt
    slope = np.where(var > 1e-12, cov / np.where(var > 1e-12, var, 1.0), 0.0)
    pred = mt[idx] + slope[idx] * (s - ms[idx])
    return pred.reshape(np.shape(target))


@dataclass(frozen=True)
class DataContent:
    """How far the two domains' clean images are from "same content, different contrast".

    Attributes:
        known: the data has clean images (otherwise every figure is None: "unknown").
        pairs: pairs measured.
        residual: ``b_from_a`` / ``a_from_b`` -> mean ``|target - f(source)|`` over mean ``|target|``
            with ``f`` the best intensity mapping (:func:`best_intensity_mapping`), averaged over pairs.
        differing: the same keys -> fraction of foreground pixels whose residual exceeds
            :data:`DIFFERING_LEVEL` of the target's 99th percentile ("structure differs").
        example: arrays of the first pair for figures (not serialised).
    """

    known: bool
    pairs: int = 0
    residual: dict[str, float | None] = field(default_factory=dict)
    differing: dict[str, float | None] = field(default_factory=dict)
    example: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def same_content(self) -> bool | None:
        """Both directions are explained by an intensity mapping (None when unknown)."""
        if not self.known:
            return None
        return all(self.explained(d) for d in ("b_from_a", "a_from_b"))

    def explained(self, direction: str) -> bool:
        """``direction``'s residual and differing fraction are both small."""
        return (self.residual[direction] or 0) < DATA_RESIDUAL and (
            self.differing[direction] or 0
        ) < DATA_DIFFERING

    def to_dict(self) -> dict[str, Any]:
        if not self.known:
            return {"known": False, "reading": "unknown: the data has no clean images"}
        return {
            "known": True,
            "pairs": self.pairs,
            "residual": dict(self.residual),
            "differing": dict(self.differing),
            "same_content": self.same_content,
        }


def data_content(clean_a: np.ndarray | None, clean_b: np.ndarray | None) -> DataContent:
    """Compare paired clean images after the best intensity mapping, both ways.

    Args:
        clean_a: (N, H, W) clean images of domain a, or None (unknown).
        clean_b: (N, H, W) clean images of domain b, or None.

    Returns:
        :class:`DataContent`; ``known=False`` without clean images.
    """
    if clean_a is None or clean_b is None:
        return DataContent(known=False)
    clean_a, clean_b = np.asarray(clean_a), np.asarray(clean_b)
    if clean_a.shape != clean_b.shape or clean_a.ndim != 3:
        raise ValueError(f"clean_a {clean_a.shape} and clean_b {clean_b.shape} must both be (N, H, W)")
    residual: dict[str, list[float]] = {"b_from_a": [], "a_from_b": []}
    differing: dict[str, list[float]] = {"b_from_a": [], "a_from_b": []}
    example: dict[str, np.ndarray] = {}
    for i in range(len(clean_a)):
        a, b = clean_a[i].astype(np.float64), clean_b[i].astype(np.float64)
        fg = (a > 0.05 * a.max()) | (b > 0.05 * b.max())  # (H, W) union of both foregrounds
        for direction, src, tgt in (("b_from_a", a, b), ("a_from_b", b, a)):
            mapped = best_intensity_mapping(src, tgt)
            err = np.abs(tgt - mapped)
            scale = np.abs(tgt).mean()
            residual[direction].append(err.mean() / scale if scale > 0 else 0.0)
            level = DIFFERING_LEVEL * np.percentile(tgt, 99)
            differing[direction].append(float((err[fg] > level).mean()) if fg.any() else 0.0)
            if i == 0:
                example |= {f"{direction}_mapped": mapped, f"{direction}_residual": tgt - mapped}
        if i == 0:
            example |= {"clean_a": a, "clean_b": b}
    return DataContent(
        known=True,
        pairs=len(clean_a),
        residual={k: float(np.mean(v)) for k, v in residual.items()},
        differing={k: float(np.mean(v)) for k, v in differing.items()},
        example=example,
    )


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
        feats_a.append(pool_latent(trainer.model.encoder(batch["a"])[0]))
        feats_b.append(pool_latent(trainer.model.encoder(batch["b"])[0]))
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
            z_a, skips_a = model.encoder(x_a)  # (B, L, h, w), skips shallow to deep
            z_b, skips_b = model.encoder(x_b)
            sizes = [tuple(s.shape[-2:]) for s in skips_a]
            reliance: dict[str, dict[str, float]] = {v: {} for v in VARIANTS}
            latent_only: dict[str, float] = {}
            for d, decoder, z, own, other, x in (
                ("a", model.decoder_a, z_a, skips_a, skips_b, x_a),
                ("b", model.decoder_b, z_b, skips_b, skips_a, x_b),
            ):
                ref = decoder(z, own, sizes=sizes, skip_weight=sw)  # (B, 1, H, W)
                bare = decoder(z, None, sizes=sizes, skip_weight=sw)
                swapped = decoder(z, other, sizes=sizes, skip_weight=sw)
                reliance["no_skip"][f"decoder_{d}"] = _relative_change(ref, bare)
                reliance["use_source"][f"decoder_{d}"] = _relative_change(ref, swapped)
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


# ------------------------------------------------------------------------------------------ readings


@dataclass(frozen=True)
class Reading:
    """One line of the diagnosis: an item, its figure at the start and the end, and what it means."""

    item: str
    start: str
    end: str
    reading: str
    alert: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"


def _num(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a" if x is None or math.isnan(x) else "inf"
    return f"{x:.2e}" if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4) else f"{x:.4f}"


def _ratio(x: float | None) -> str:
    if x is None:
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:.2g}x"


def _trend(start: float, end: float) -> tuple[str, float]:
    change = (end - start) / start if start > 0 else math.nan
    if not math.isfinite(change):
        return "n/a", change
    word = "falls" if change < -TREND else "rises" if change > TREND else "flat"
    return word, change


@dataclass
class DiagnosisReport:
    """The outcome of :func:`diagnose`.

    Attributes:
        config: the run config diagnosed.
        steps: training steps asked for.
        steps_done: training steps done (fewer when training diverged).
        every: measurement interval (None: start and end only).
        status: ``finished`` or ``diverged``.
        reason: why training stopped early, or None.
        seconds: wall time.
        snapshots: measurements, first at step 0, last at the end.
        train_losses: per training step, the losses of that step's batch (before its update).
        data: :class:`DataContent` of the clean images (when known).
        domains: names of domains a and b (e.g. PD, PDFS).
    """

    config: RunConfig
    steps: int
    steps_done: int
    every: int | None
    status: str
    reason: str | None
    seconds: float
    snapshots: list[Snapshot]
    train_losses: list[dict[str, float]]
    data: DataContent
    domains: tuple[str, str] = ("a", "b")

    @property
    def start(self) -> Snapshot:
        return self.snapshots[0]

    @property
    def end(self) -> Snapshot:
        return self.snapshots[-1]

    @property
    def readings(self) -> list[Reading]:
        """One :class:`Reading` per item, comparing the first and last snapshots."""
        return _readings(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (non-finite numbers become None)."""
        return _json_safe(
            {
                "config": self.config.to_dict(),
                "steps": self.steps,
                "steps_done": self.steps_done,
                "every": self.every,
                "status": self.status,
                "reason": self.reason,
                "seconds": self.seconds,
                "domains": list(self.domains),
                "conventions": {
                    "gradients": "L2 norm over a module's parameters; weighted = gradient of weight * term "
                    "as it enters the total (0 when the weight is 0), unweighted = of the term alone",
                    "measurement": "fixed held-out pairs (gradients: the first training batch); BatchNorm "
                    "on batch statistics as in training, running buffers restored",
                    "skip_reliance": "mean |out(own skips) - out(replacement)| / mean |out(own skips)|; "
                    "no_skip: no skips, use_source: the other domain's skips",
                    "probe": "logistic regression on pooled z (channel mean and std), fitted on training "
                    "pairs, accuracy on held-out pairs (50% = no domain information)",
                    "data": "best per-pixel intensity mapping (piecewise-linear lookup table) of one "
                    "domain's clean image onto the other's; residual relative to the mean signal",
                },
                "snapshots": [s.to_dict() for s in self.snapshots],
                "train_losses": self.train_losses,
                "data": self.data.to_dict(),
                "readings": [r.to_dict() for r in self.readings],
            }
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _readings(report: DiagnosisReport) -> list[Reading]:
    out: list[Reading] = []
    if report.status != "finished":
        why = f"{report.status}: {report.reason}"
        out.append(Reading("training", "", f"step {report.steps_done}", why, True))
    out += [_latent_distance(report), _latent_spread(report), _probe(report)]
    out += _errors(report)
    out += _gradients(report)
    out += [_reliance(report, dec) for dec in ("decoder_a", "decoder_b")]
    out += [_capacity(report, d) for d in ("a", "b")]
    out.append(_data(report))
    return out


def _latent_distance(report: DiagnosisReport) -> Reading:
    s0, s1 = report.start, report.end
    lat = s1.latent
    ratio = lat.pair_ratio
    pairs = f"pairs are {_ratio(ratio)} as far apart as unpaired latents"
    alert = False
    if lat.collapsed:
        text, alert = (
            "z barely varies over the batch: the latent has collapsed; its small distance means nothing",
            True,
        )
    elif ratio < 0.5:
        text = f"{pairs}: z_a and z_b agree" + (" (below the note's 0.01)" if lat.distance < 0.01 else "")
    elif ratio < 0.9:
        text = f"{pairs}: z_a and z_b partly agree"
    else:
        text, alert = f"{pairs}: z does not encode the content the pair shares", True

    def fig(s: Snapshot) -> str:
        return f"{_num(s.latent.distance)} ({_pct(s.latent.relative)} of |z|)"

    return Reading("latent distance |z_a - z_b|", fig(s0), fig(s1), text, alert)


def _latent_spread(report: DiagnosisReport) -> Reading:
    lat = report.end.latent
    if lat.collapsed:
        text = "COLLAPSED: z is (nearly) the same for every image"
    else:
        text = "z varies over the batch: not collapsed"

    def fig(s: Snapshot) -> str:
        return f"{_num(s.latent.spread)} ({_pct(s.latent.spread_relative)} of |z|)"

    return Reading("latent spread over the batch", fig(report.start), fig(report.end), text, lat.collapsed)


def _probe(report: DiagnosisReport) -> Reading:
    pr, lat = report.end.probe, report.end.latent
    da, db = report.domains
    band = f"chance 50% +- {_pct(pr.chance_margin)}"
    if not pr.informative:
        text = f"near chance ({band}): no domain information left in the latent (hypothesis 1 unlikely)"
    else:
        close = "z_a and z_b are close, yet " if lat.relative < 0.1 else ""
        text = (
            f"{close}a linear probe tells {da} from {db} latents ({band}): the latent still carries "
            "domain information (hypothesis 1)"
        )
    item = f"domain probe ({pr.n_test} held-out latents)"
    return Reading(item, _pct(report.start.probe.accuracy), _pct(pr.accuracy), text, pr.informative)


def _errors(report: DiagnosisReport) -> list[Reading]:
    s0, s1 = report.start, report.end
    da, db = report.domains
    out = []
    for key, label in (
        ("recon_a", f"recon {da}"),
        ("recon_b", f"recon {db}"),
        ("cross_a", f"cross {da} from {db} (x_a_from_b)"),
        ("cross_b", f"cross {db} from {da} (x_b_from_a)"),
    ):
        v0, v1 = s0.errors[key], s1.errors[key]
        word, change = _trend(v0, v1)
        text = f"{word} ({change:+.0%})" if word != "n/a" else "n/a"
        alert = word != "falls"
        if key.startswith("cross"):
            text += ": cross falls" if word == "falls" else ": cross does not fall (the note's symptom)"
            base = s1.latent_only[f"mean_image_{key[-1]}"]
            if v1 >= base:
                text += (
                    f", yet no better than the target's mean image ({_num(base)}): nothing specific learnt"
                )
                alert = True
        out.append(Reading(label, _num(v0), _num(v1), text, alert))
    return out


def _gradients(report: DiagnosisReport) -> list[Reading]:
    g0, g1 = report.start.gradients, report.end.gradients
    terms = [t for t in TERMS if t in g1.present]
    quiet = [t for t in terms if g1.term_total(t) == 0]
    if quiet:
        text = "sends no gradient: " + ", ".join(f"{t} (weight {g1.weights[t]:g})" for t in quiet)
    else:
        text = "every loss term sends a gradient (weighted, as in the total)"
    if "adv" not in g1.present:
        text += "; adv off (no discriminator)"

    def fig(g: GradientNorms) -> str:
        return ", ".join(f"{t} {_num(g.term_total(t))}" for t in terms)

    out = [Reading("gradient per term (all modules)", fig(g0), fig(g1), text, bool(quiet))]
    for dec in ("decoder_a", "decoder_b"):
        r = g1.ratio(dec)
        said = f"cross gradient on {dec} is {_ratio(r)} recon's"
        alert = False
        if r is None:
            text, alert = "neither cross nor recon sends a gradient here", True
        elif math.isinf(r):
            text = (
                f"recon sends no gradient to {dec} (weight {g1.weights['recon']:g}): cross is its only signal"
            )
        elif r == 0:
            text, alert = f"cross sends no gradient to {dec} (weight {g1.weights['cross']:g})", True
        elif r < DROWNED_RATIO:
            text, alert = f"{said}: cross is drowned (Problem 2)", True
        elif r > DOMINANT_RATIO:
            text = f"{said}: cross dominates"
        else:
            text = f"{said}: comparable"
        cos = g1.cosine.get(dec)
        text += f" (unweighted {_ratio(g1.ratio(dec, weighted=False))}"
        text += f", cosine {cos:+.2f})" if cos is not None else ")"
        out.append(Reading(f"grad cross/recon on {dec}", _ratio(g0.ratio(dec)), _ratio(r), text, alert))
    return out


def _reliance(report: DiagnosisReport, dec: str) -> Reading:
    tc = report.config.trainer
    strategy = tc.cross_domain_strategy
    rel = report.end.reliance[strategy][dec]
    alert = False
    if not tc.same_domain_use_skip and strategy == "no_skip":
        text = f"{dec} never gets skips (same_domain_use_skip=false, no_skip): reliance is moot"
    elif not math.isfinite(rel):
        text, alert = f"{dec}'s same-domain output is all zeros", True
    elif rel > RELIANCE_HIGH:
        alert = True
        if strategy == "no_skip":
            text = (
                f"{dec} leans on its skips: without them (the cross path) its output changes {_pct(rel)} "
                "(Problem 1)"
            )
        else:
            text = (
                f"{dec} leans on its skips: with the other domain's (the cross path) its output changes "
                f"{_pct(rel)}: the source's skips steer the cross output"
            )
    elif rel < RELIANCE_LOW:
        text = f"{dec} barely uses its skips on the cross path ({strategy}: {_pct(rel)}): Problem 1 unlikely"
    else:
        text = f"{dec} partly relies on its skips ({strategy}: {_pct(rel)})"
    if not tc.same_domain_use_skip and strategy != "no_skip":
        text += " (same-domain recon runs without skips in training)"

    def fig(s: Snapshot) -> str:
        return " / ".join(f"{v} {_pct(s.reliance[v][dec])}" for v in VARIANTS)

    return Reading(f"skip reliance {dec}", fig(report.start), fig(report.end), text, alert)


def _capacity(report: DiagnosisReport, d: str) -> Reading:
    s0, s1 = report.start, report.end
    lo, lo0 = s1.latent_only, s0.latent_only
    cap = s1.capacity(d)
    trained = s1.errors[f"recon_{d}"]  # the same-domain path training optimises
    removes = f"the latent alone removes {_pct(cap)} of the mean image's error"
    alert = False
    if not math.isfinite(cap):
        text = "n/a (constant images)"
    elif trained >= lo[f"mean_image_{d}"]:
        text = (
            f"decoder_{d} does no better than the mean image even on its trained path ({_num(trained)}): "
            "too early to judge capacity (train longer)"
        )
    elif cap < 0:
        text = (
            f"from the latent alone decoder_{d} does worse than the mean image, on its trained path better: "
            "it cannot reconstruct from the latent (hypothesis 3)"
        )
        alert = True
    elif cap >= CAPACITY_GOOD:
        text = f"{removes}: it carries the image (hypothesis 3 unlikely)"
    elif cap >= CAPACITY_POOR:
        text = f"{removes}: it carries part of the image"
    else:
        text, alert = f"{removes}: decoder_{d} cannot reconstruct from it (hypothesis 3)", True
    start = f"{_num(lo0[f'latent_only_{d}'])} (skips {_num(lo0[f'with_skips_{d}'])})"
    end = (
        f"{_num(lo[f'latent_only_{d}'])} (skips {_num(lo[f'with_skips_{d}'])}, "
        f"mean image {_num(lo[f'mean_image_{d}'])})"
    )
    name = report.domains[0 if d == "a" else 1]
    return Reading(f"latent-only recon {name}", start, end, text, alert)


def _data(report: DiagnosisReport) -> Reading:
    data = report.data
    da, db = report.domains
    if not data.known:
        return Reading("data: same content?", "", "unknown", "unknown: the data has no clean images")
    res, dif = data.residual, data.differing
    figure = (
        f"{db} from {da}: {_pct(res['b_from_a'])} residual, {_pct(dif['b_from_a'])} px; "
        f"{da} from {db}: {_pct(res['a_from_b'])}, {_pct(dif['a_from_b'])} px"
    )
    b_ok, a_ok = data.explained("b_from_a"), data.explained("a_from_b")
    if b_ok and a_ok:
        text = "same anatomy up to an intensity mapping: 'same content' holds (hypothesis 2 unlikely)"
    elif b_ok or a_ok:
        (src, tgt, cross) = (da, db, "x_a_from_b") if b_ok else (db, da, "x_b_from_a")
        text = (
            f"{tgt} is a function of {src}'s intensities but not the reverse: {tgt} merges what {src} tells "
            f"apart, so {cross} must infer it (hypothesis 2 in part)"
        )
    else:
        text = (
            "no intensity mapping explains either domain from the other: the clean images differ pixel "
            "by pixel beyond contrast (tissues one contrast merges, structures in one only): hypothesis 2"
        )
    alert = not (b_ok and a_ok)
    return Reading(f"data: same content? ({data.pairs} clean pairs)", "", figure, text, alert)


# ------------------------------------------------------------------------------------------ diagnose


def _snapshot_steps(steps: int, every: int | None) -> set[int]:
    marks = {0, steps}
    if every:
        marks |= set(range(every, steps, every))
    return marks


def diagnose(
    config: RunConfig,
    steps: int = 10,
    *,
    every: int | None = None,
    source: PairedSource | None = None,
    on_step: Callable[[int, int], None] | None = None,
    eval_pairs: int = 64,
    probe_pairs: int = 128,
    data_pairs: int = 64,
) -> DiagnosisReport:
    """Train ``config`` for ``steps`` steps and measure every diagnostic at the start and the end.

    Training is the trainer's own step (same losses, optimiser, discriminator step); the skip weight is
    the schedule's first-epoch value throughout.

    Args:
        config: the run to diagnose.
        steps: training steps (>= 1).
        every: also measure every ``every`` steps.
        source: data to use instead of opening ``config.data``.
        on_step: called as ``on_step(step, steps)`` after each update.
        eval_pairs: held-out pairs measured (see :func:`measure`).
        probe_pairs: pairs for the domain probe (see :func:`measure`).
        data_pairs: pairs whose clean images are compared (hypothesis 2).

    Returns:
        :class:`DiagnosisReport`; when a loss turns NaN/Inf, training stops there with status
        ``diverged`` and the last snapshot is the last one taken before.

    Raises:
        ValueError: ``steps`` < 1 or ``every`` < 1.
        model.data.DataError: the data cannot be opened.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"every must be a whole number >= 1, got {every!r}")
    t0 = time.perf_counter()
    # one update per train_epoch call, so that the diagnosis can look between any two steps
    one_step = config.model_copy(update={"trainer": config.trainer.model_copy(update={"steps_per_epoch": 1})})
    trainer = Trainer(one_step, source)
    sw = skip_weight_at(config.trainer, 1)
    k = min(data_pairs, trainer.source.n)
    pairs = trainer.source.read(np.arange(k))
    data = data_content(pairs.clean_a, pairs.clean_b)
    marks = _snapshot_steps(steps, every)

    def snap(step: int) -> Snapshot:
        return measure(trainer, step=step, skip_weight=sw, eval_pairs=eval_pairs, probe_pairs=probe_pairs)

    snapshots = [snap(0)]
    train_losses: list[dict[str, float]] = []
    status, reason, done = "finished", None, 0
    for step in range(1, steps + 1):
        try:
            losses = trainer.train_epoch(1)
        except NonFiniteLossError as exc:
            status, reason, done = "diverged", f"non-finite {exc.term} loss at step {step}", step
            break
        done = step
        train_losses.append({"step": step} | {k.removeprefix("train_"): v for k, v in losses.items()})
        if on_step is not None:
            on_step(step, steps)
        if step in marks:
            snapshots.append(snap(step))
    domains = tuple(getattr(trainer.source, "domains", ("a", "b")))[:2]
    return DiagnosisReport(
        config=config,
        steps=steps,
        steps_done=done,
        every=every,
        status=status,
        reason=reason,
        seconds=time.perf_counter() - t0,
        snapshots=snapshots,
        train_losses=train_losses,
        data=data,
        domains=(str(domains[0]), str(domains[1])),
    )


# ------------------------------------------------------------------------------------------- figures


def plot_report(report: DiagnosisReport) -> dict[str, Figure]:
    """Figures of a diagnosis, drawn on matplotlib's Agg canvas (no pyplot state).

    Returns:
        ``gradients`` (weighted norm per term and module, start and end), ``latents`` (pooled z_a vs
        z_b on their two main axes, paired vs unpaired distances), ``skip_reliance``, ``curves``
        (training-batch losses per step, held-out errors per snapshot) and, when clean images are
        known, ``data`` (an example clean pair, its best intensity mappings and residuals). Save one
        with ``fig.savefig(path)``.
    """
    figs = {
        "gradients": _plot_gradients(report),
        "latents": _plot_latents(report),
        "skip_reliance": _plot_reliance(report),
        "curves": _plot_curves(report),
    }
    if report.data.known and report.data.example:
        figs["data"] = _plot_data(report)
    return figs


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _plot_gradients(report: DiagnosisReport) -> Figure:
    fig = _figure(11, 4)
    axes = fig.subplots(1, 2, sharey=True)
    present = [t for t in TERMS if t in report.end.gradients.present]
    mods = [m for m in MODULES if m != "discriminator" or "adv" in present]
    x, width = np.arange(len(mods)), 0.8 / max(len(present), 1)
    for ax, snap in zip(axes, (report.start, report.end), strict=True):
        g = snap.gradients
        for i, term in enumerate(present):
            heights = [g.weighted[term][m] or np.nan for m in mods]  # a zero bar cannot sit on a log axis
            offset = (i - (len(present) - 1) / 2) * width
            ax.bar(x + offset, heights, width, label=f"{term} (w={g.weights[term]:g})")
        ax.set_xticks(x, mods)
        ax.set_yscale("log")
        ax.set_title(f"step {snap.step}")
    axes[0].set_ylabel("gradient norm of weight * term")
    axes[1].legend(fontsize="small")
    fig.suptitle("gradient each weighted loss term sends to each module (no bar = 0)")
    return fig


def _plot_latents(report: DiagnosisReport) -> Figure:
    fig = _figure(11, 4.5)
    ax0, ax1 = fig.subplots(1, 2)
    s1 = report.end
    za, zb = s1.arrays.get("z_a"), s1.arrays.get("z_b")  # (B, 2L) pooled
    if za is not None and len(za) > 1:
        both = np.concatenate([za, zb])
        centred = both - both.mean(0)
        axes = np.linalg.svd(centred, full_matrices=False)[2][:2]  # (<=2, 2L) main directions
        proj = np.pad(centred @ axes.T, ((0, 0), (0, 2 - len(axes))))  # (2B, 2)
        pa, pb = proj[: len(za)], proj[len(za) :]
        for p, q in zip(pa, pb, strict=True):
            ax0.plot([p[0], q[0]], [p[1], q[1]], color="0.8", lw=0.5)
        ax0.scatter(pa[:, 0], pa[:, 1], s=12, label=f"z_a ({report.domains[0]})")
        ax0.scatter(pb[:, 0], pb[:, 1], s=12, label=f"z_b ({report.domains[1]})")
        ax0.legend(fontsize="small")
        table = np.abs(za[:, None] - zb[None]).mean(2)  # (B, B) mean |z_a[i] - z_b[j]|
        paired, unpaired = np.diag(table), table[~np.eye(len(za), dtype=bool)]
        bins = np.linspace(0, 1.05 * table.max() + 1e-12, 30)
        ax1.hist(unpaired, bins=bins, alpha=0.6, density=True, label="unpaired (i != j)")
        ax1.hist(paired, bins=bins, alpha=0.6, density=True, label="paired (i = j)")
        ax1.legend(fontsize="small")
    ax0.set_title(f"pooled latents on their two main axes; probe accuracy {_pct(s1.probe.accuracy)}")
    ax1.set_title("mean |z_a[i] - z_b[j]| of pooled latents")
    fig.suptitle(f"latents at step {s1.step}")
    return fig


def _plot_reliance(report: DiagnosisReport) -> Figure:
    fig = _figure(8, 4)
    ax = fig.subplots()
    cells = [(dec, v) for dec in ("decoder_a", "decoder_b") for v in VARIANTS]
    x = np.arange(len(cells))
    for i, snap in enumerate((report.start, report.end)):
        ax.bar(
            x + (i - 0.5) * 0.38, [snap.reliance[v][dec] for dec, v in cells], 0.38, label=f"step {snap.step}"
        )
    ax.set_xticks(x, [f"{dec}\n{v}" for dec, v in cells])
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
    ax.set_ylabel("relative L1 change of the same-domain output")
    ax.set_title(f"skip reliance (the cross path: {report.config.trainer.cross_domain_strategy})")
    ax.legend(fontsize="small")
    return fig


def _plot_curves(report: DiagnosisReport) -> Figure:
    fig = _figure(11, 4)
    ax0, ax1 = fig.subplots(1, 2)
    rows = report.train_losses
    for term in ("content", "recon", "cross"):
        ax0.plot([r["step"] for r in rows], [r.get(term, np.nan) for r in rows], marker=".", label=term)
    ax0.set_title("training-batch losses")
    steps = [s.step for s in report.snapshots]
    da, db = report.domains
    for key, label, style in (
        ("recon_a", f"recon {da}", "-"),
        ("recon_b", f"recon {db}", "-"),
        ("cross_a", "cross x_a_from_b", "-"),
        ("cross_b", "cross x_b_from_a", "-"),
        ("latent_only_a", f"latent-only {da}", "--"),
        ("latent_only_b", f"latent-only {db}", "--"),
    ):
        values = [s.errors.get(key, s.latent_only.get(key)) for s in report.snapshots]
        ax1.plot(steps, values, ls=style, marker="o", label=label)
    ax1.set_title("held-out errors (L1)")
    for ax in (ax0, ax1):
        ax.set_xlabel("step")
        ax.legend(fontsize="small")
    return fig


def _plot_data(report: DiagnosisReport) -> Figure:
    ex = report.data.example
    da, db = report.domains
    fig = _figure(12, 6)
    for row, (src, tgt, key, title) in zip(
        fig.subplots(2, 4),
        (
            ("clean_a", "clean_b", "b_from_a", f"{db} from {da}"),
            ("clean_b", "clean_a", "a_from_b", f"{da} from {db}"),
        ),
        strict=True,
    ):
        images = (ex[src], ex[tgt], ex[f"{key}_mapped"])
        vmax = float(max(ex[src].max(), ex[tgt].max(), 1e-6))
        for ax, img, name in zip(row[:3], images, ("source", "target", "best mapping"), strict=True):
            ax.imshow(img, cmap="gray", vmin=0, vmax=vmax)
            ax.set_title(f"{title}: {name}", fontsize="small")
        resid = ex[f"{key}_residual"]
        lim = float(np.abs(resid).max()) or 1.0
        row[3].imshow(resid, cmap="coolwarm", vmin=-lim, vmax=lim)
        row[3].set_title("residual: what no intensity mapping explains", fontsize="small")
        for ax in row:
            ax.set_axis_off()
    fig.suptitle("a clean pair after the best per-pixel intensity mapping (hypothesis 2)")
    return fig
