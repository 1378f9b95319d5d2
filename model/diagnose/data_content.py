"""Hypothesis 2 of docs/note.md, measured: are PD and PDFS really the same content in another contrast?

On data with clean images, :func:`data_content` maps one domain's clean image onto the other's with the
best per-pixel intensity mapping (:func:`best_intensity_mapping`, a piecewise-linear lookup table fitted
per pair) and measures what it leaves unexplained: a residual that is a small fraction of the signal, with
few pixels that differ, means the same anatomy in another contrast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DATA_DIFFERING",
    "DATA_RESIDUAL",
    "DIFFERING_LEVEL",
    "DataContent",
    "best_intensity_mapping",
    "data_content",
]

DATA_RESIDUAL = 0.05  # residual after the best intensity mapping below this fraction of the signal
DATA_DIFFERING = 0.05  # ... and fewer pixels than this differing: same content
DIFFERING_LEVEL = 0.1  # a pixel differs when its residual exceeds this fraction of the target's p99


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
