"""Synthetic knee phantoms: paired PD / PDFS slices with known clean images and Rician noise.

Each pair is one random 2-D coronal knee-like anatomy (subcutaneous fat, muscle, femur and tibia with
cortical bone and fatty marrow, articular cartilage, menisci, joint fluid), rendered twice with the
spin-echo signal equation summed over a water and a fat compartment:

    S = PD * [(1 - ff) * (1 - exp(-TR/T1w)) * exp(-TE/T2w) + ff * k * (1 - exp(-TR/T1f)) * exp(-TE/T2f)]

with ``k = 1`` for PD and ``k = 1 - fat_suppression`` (optionally varying smoothly in space) for PDFS.
Tissue values and their sources are in ``docs/data.md``. Complex Gaussian noise is added per domain and
the magnitude taken (Rician). Everything is vectorised over the pairs with numpy.

Knobs (see :func:`generate_pairs`): ``noise`` (1/SNR per domain), ``structural_difference``
(structures present in one contrast only), ``misregistration`` (small rigid motion between the pair),
``fat_suppression`` and its spatial variation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.data.shapes import col, draw_waves, ellipse, smooth_field, smoothstep, superellipse

__all__ = [
    "TE_MS",
    "TISSUES",
    "TR_MS",
    "PhantomPairs",
    "Tissue",
    "generate_pairs",
    "tissue_signals",
]

TR_MS = 2800.0
"""Repetition time (ms): PD-weighted fast spin echo, within the fastMRI knee protocol's range."""
TE_MS = 30.0
"""Echo time (ms)."""


@dataclass(frozen=True)
class Tissue:
    """MR properties of one tissue at 3 T (times in ms; ``pd`` relative to pure water)."""

    name: str
    pd: float
    t1_water: float
    t2_water: float
    fat_fraction: float
    t1_fat: float = 382.0
    t2_fat: float = 68.0


# Index = label value in PhantomPairs.labels_*; 0 is air. Sources: docs/data.md.
TISSUES: tuple[Tissue, ...] = (
    Tissue("background", 0.0, 1000.0, 1.0, 0.0),
    Tissue("subcutaneous_fat", 0.90, 1000.0, 40.0, 0.90, t1_fat=382.0, t2_fat=68.0),
    Tissue("muscle", 0.80, 1420.0, 31.7, 0.03),
    Tissue("cortical_bone", 0.15, 220.0, 0.4, 0.0),
    Tissue("marrow", 0.90, 1000.0, 40.0, 0.85, t1_fat=371.0, t2_fat=133.0),
    Tissue("cartilage", 0.75, 1240.0, 36.9, 0.0),
    Tissue("meniscus", 0.70, 1000.0, 10.0, 0.0),
    Tissue("fluid", 1.00, 3620.0, 767.0, 0.0),
)

_FAT, _MUSCLE, _CORTEX, _MARROW, _CARTILAGE, _MENISCUS, _FLUID = range(1, 8)


def tissue_signals(tr: float = TR_MS, te: float = TE_MS) -> tuple[np.ndarray, np.ndarray]:
    """Spin-echo water and fat signal of every tissue in :data:`TISSUES`.

    Returns:
        (water, fat): float64 arrays of shape (T,), the unscaled signal of each compartment.
    """
    water = np.array(
        [
            t.pd * (1 - t.fat_fraction) * (1 - math.exp(-tr / t.t1_water)) * math.exp(-te / t.t2_water)
            for t in TISSUES
        ]
    )
    fat = np.array(
        [t.pd * t.fat_fraction * (1 - math.exp(-tr / t.t1_fat)) * math.exp(-te / t.t2_fat) for t in TISSUES]
    )
    water[0] = fat[0] = 0.0
    return water, fat


@dataclass(frozen=True)
class PhantomPairs:
    """Paired phantom slices.

    Attributes:
        a: noisy PD images, float32 (N, H, W).
        b: noisy PDFS images, float32 (N, H, W).
        clean_a: noise-free PD images, float32 (N, H, W).
        clean_b: noise-free PDFS images, float32 (N, H, W).
        params: every generator parameter and derived constant (JSON-ready).
        labels_a: dominant tissue index per pixel of domain a (into :data:`TISSUES`), uint8 (N, H, W).
        labels_b: the same for domain b (differs from ``labels_a`` only with structural difference or
            misregistration).
    """

    a: np.ndarray
    b: np.ndarray
    clean_a: np.ndarray
    clean_b: np.ndarray
    params: dict[str, Any]
    labels_a: np.ndarray | None = field(default=None, repr=False)
    labels_b: np.ndarray | None = field(default=None, repr=False)


# ------------------------------------------------------------------------------------------ rendering


class _Canvas:
    """Water / fat signal and dominant label of N images, painted layer by layer with soft edges."""

    def __init__(self, shape: tuple[int, int, int], size: int, water: np.ndarray, fat: np.ndarray) -> None:
        self.water = np.zeros(shape, np.float32)  # (N, H, W)
        self.fat = np.zeros(shape, np.float32)  # (N, H, W)
        self.label = np.zeros(shape, np.uint8)  # (N, H, W)
        self._half_px = size / 2.0  # normalised units -> pixels
        self._w = water.astype(np.float32)  # (N, T): per-pair tissue water signal
        self._f = fat.astype(np.float32)  # (N, T)

    def copy(self) -> _Canvas:
        out = object.__new__(_Canvas)
        out.water, out.fat, out.label = self.water.copy(), self.fat.copy(), self.label.copy()
        out._half_px, out._w, out._f = self._half_px, self._w, self._f
        return out

    def paint(self, dist: np.ndarray, tissue: int, idx: np.ndarray | None = None) -> None:
        """Paint ``tissue`` where the signed distance ``dist`` (normalised units, < 0 inside) is negative.

        ``dist`` is (N, H, W), or (len(idx), H, W) when painting only the pairs ``idx``.
        """
        alpha = np.clip(0.5 - dist * self._half_px, 0.0, 1.0)  # ~1 px anti-aliased edge
        sl = slice(None) if idx is None else idx
        w = self._w[sl, tissue][:, None, None]
        f = self._f[sl, tissue][:, None, None]
        if idx is None:
            self.water += alpha * (w - self.water)
            self.fat += alpha * (f - self.fat)
            self.label[alpha >= 0.5] = tissue
        else:
            self.water[idx] += alpha * (w - self.water[idx])
            self.fat[idx] += alpha * (f - self.fat[idx])
            lab = self.label[idx]
            lab[alpha >= 0.5] = tissue
            self.label[idx] = lab


def _anatomy(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Random geometry of n knees, each entry of shape (N,) in normalised units (image = [-1, 1]^2)."""
    g: dict[str, np.ndarray] = {}
    g["rot"] = rng.uniform(-8, 8, n) * np.pi / 180
    g["scale"] = rng.uniform(0.9, 1.1, n)
    g["tx"] = rng.uniform(-0.05, 0.05, n)
    g["ty"] = rng.uniform(-0.05, 0.05, n)
    g["limb_rx"] = rng.uniform(0.74, 0.9, n)
    g["limb_ry"] = rng.uniform(1.3, 1.7, n)
    g["fat_t"] = rng.uniform(0.05, 0.12, n)
    g["joint_y"] = rng.uniform(-0.05, 0.1, n)
    g["gap"] = rng.uniform(0.035, 0.055, n)  # half the distance between the bone ends
    inner = g["limb_rx"] - g["fat_t"]
    g["fem_w"] = inner * rng.uniform(0.68, 0.8, n)
    g["tib_w"] = g["fem_w"] * rng.uniform(0.95, 1.08, n)
    g["fem_x"] = rng.uniform(-0.04, 0.04, n)
    g["tib_x"] = g["fem_x"] + rng.uniform(-0.03, 0.03, n)
    g["cond_h"] = rng.uniform(0.18, 0.26, n)
    g["plat_h"] = rng.uniform(0.08, 0.14, n)
    g["shaft_f"] = g["fem_w"] * rng.uniform(0.55, 0.7, n)
    g["shaft_t"] = g["tib_w"] * rng.uniform(0.5, 0.65, n)
    g["notch_w"] = rng.uniform(0.07, 0.12, n)
    g["notch_h"] = rng.uniform(0.1, 0.17, n)
    g["cortex"] = rng.uniform(0.025, 0.045, n)
    g["cart_f"] = rng.uniform(0.03, 0.05, n)
    g["cart_t"] = rng.uniform(0.025, 0.045, n)
    g["fluid_h"] = g["gap"] + rng.uniform(0.01, 0.07, n)
    g["men_len"] = rng.uniform(0.14, 0.22, n)
    g["men_h"] = g["gap"] + rng.uniform(0.02, 0.04, n)
    g["pocket"] = (rng.random(n) < 0.6).astype(np.float64)
    g["pocket_side"] = rng.choice([-1.0, 1.0], n)
    g["pocket_y"] = rng.uniform(0.08, 0.3, n)
    g["pocket_rx"] = rng.uniform(0.03, 0.07, n)
    g["pocket_ry"] = rng.uniform(0.06, 0.14, n)
    g["warp_amp"] = rng.uniform(0.0, 0.04, n)
    return g


def _render(canvas: _Canvas, x: np.ndarray, y: np.ndarray, c: dict[str, np.ndarray]) -> None:
    """Paint the knees ``c`` (values (B, 1, 1)) at anatomical coordinates x, y (B, H, W; y points down)."""
    jy, gap = c["joint_y"], c["gap"]

    # limb: subcutaneous fat ring around muscle
    canvas.paint(ellipse(x, y, 0.0, 0.0, c["limb_rx"], c["limb_ry"]), _FAT)
    canvas.paint(ellipse(x, y, 0.0, 0.0, c["limb_rx"] - c["fat_t"], c["limb_ry"] - c["fat_t"]), _MUSCLE)

    # joint fluid (joint space + an optional recess beside the femur), menisci on top of it
    canvas.paint(ellipse(x, y, c["fem_x"], jy, c["fem_w"] * 1.02, c["fluid_h"]), _FLUID)
    px = c["fem_x"] + c["pocket_side"] * c["fem_w"] * 0.95
    pocket = ellipse(x, y, px, jy - c["pocket_y"], c["pocket_rx"], c["pocket_ry"])
    canvas.paint(np.where(c["pocket"] > 0, pocket, 1.0), _FLUID)
    for side in (-1.0, 1.0):
        u = side * (x - c["fem_x"]) - (c["fem_w"] - c["men_len"])  # 0 at the inner apex, growing outward
        wedge = np.maximum(np.abs(y - jy) - c["men_h"] * np.clip(u / c["men_len"], 0, 1.2), -u)
        canvas.paint(np.maximum(wedge, u - c["men_len"] - 0.05), _MENISCUS)

    # femur: flared shaft + condylar ellipse, minus the intercondylar notch
    yc = jy - gap - c["cond_h"]
    w_f = c["fem_w"] - (c["fem_w"] - c["shaft_f"]) * smoothstep((yc - y) / 0.5)
    shaft = np.maximum(np.abs(x - c["fem_x"]) - w_f, y - yc)
    femur = np.minimum(shaft, ellipse(x, y, c["fem_x"], yc, c["fem_w"], c["cond_h"]))
    femur = np.maximum(femur, -ellipse(x, y, c["fem_x"], jy - gap, c["notch_w"], c["notch_h"]))
    # tibia: box-like plateau + flared shaft, with the tibial spines as a small bump
    yt = jy + gap + c["plat_h"]
    w_t = c["tib_w"] - (c["tib_w"] - c["shaft_t"]) * smoothstep((y - yt) / 0.5)
    shaft = np.maximum(np.abs(x - c["tib_x"]) - w_t, yt - y)
    tibia = np.minimum(shaft, superellipse(x, y, c["tib_x"], yt, c["tib_w"], c["plat_h"]))
    tibia = np.minimum(tibia, ellipse(x, y, c["tib_x"], jy + gap + 0.01, 0.05, 0.04))

    # articular cartilage on the joint-facing surfaces, then the bones over it
    canvas.paint(np.maximum(femur - c["cart_f"], yc - 0.05 - y), _CARTILAGE)
    canvas.paint(np.maximum(tibia - c["cart_t"], y - yt - 0.05), _CARTILAGE)
    for bone in (femur, tibia):
        canvas.paint(bone, _CORTEX)
        canvas.paint(bone + c["cortex"], _MARROW)


_SLOTS = 4  # blobs per pair and domain that structural_difference can switch on
_EXTRA_TISSUES = np.array([_FLUID, _MENISCUS, _FAT])


def _draw_extra(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Candidate one-domain-only blobs: each entry (SLOTS, N); a blob shows when ``u < amount``."""
    return {
        "u": rng.random((_SLOTS, n)),
        "cx": rng.uniform(-0.55, 0.55, (_SLOTS, n)),
        "cy": rng.uniform(-0.75, 0.75, (_SLOTS, n)),
        "r": rng.random((_SLOTS, n)),
        "aspect": rng.uniform(0.6, 1.6, (_SLOTS, n)),
        "tissue": _EXTRA_TISSUES[rng.integers(0, len(_EXTRA_TISSUES), (_SLOTS, n))],
    }


def _paint_extra(
    canvas: _Canvas, x: np.ndarray, y: np.ndarray, e: dict[str, np.ndarray], amount: float
) -> None:
    """Paint the blobs of ``e`` (entries (SLOTS, B)) switched on by ``amount``; larger as it grows."""
    for k in range(_SLOTS):
        rx = 0.03 + (0.02 + 0.08 * amount) * e["r"][k]
        ry = rx * e["aspect"][k]
        for t in _EXTRA_TISSUES:
            idx = np.nonzero((e["u"][k] < amount) & (e["tissue"][k] == t))[0]
            if idx.size:
                d = ellipse(
                    x[idx], y[idx], col(e["cx"][k, idx]), col(e["cy"][k, idx]), col(rx[idx]), col(ry[idx])
                )
                canvas.paint(d, int(t), idx)


def _coords(
    u: np.ndarray, v: np.ndarray, c: dict[str, np.ndarray], rot: np.ndarray, shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates u (1, 1, W), v (1, H, 1) -> anatomical x, y (B, H, W) under each pair's pose.

    ``rot`` (B, 1, 1) radians and ``shift`` (2, B, 1, 1) normalised units are an extra rigid motion of
    the scan (misregistration); the caller adds the smooth deformation afterwards.
    """
    th = c["rot"] + rot
    du = u - (c["tx"] + shift[0])
    dv = v - (c["ty"] + shift[1])
    cos, sin = np.cos(th), np.sin(th)
    x = (cos * du + sin * dv) / c["scale"]
    y = (-sin * du + cos * dv) / c["scale"]
    return x, y


def _rician(rng: np.random.Generator, clean: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the clean (real) signal plus complex Gaussian noise of std ``sigma`` per channel."""
    if sigma <= 0:
        return clean.copy()
    re = rng.standard_normal(clean.shape, np.float32)
    re *= np.float32(sigma)
    re += clean
    im = rng.standard_normal(clean.shape, np.float32)
    im *= np.float32(sigma)
    np.multiply(re, re, out=re)
    np.multiply(im, im, out=im)
    re += im
    return np.sqrt(re, out=re)


# ------------------------------------------------------------------------------------------------ API


def generate_pairs(
    n: int,
    size: int,
    *,
    noise: tuple[float, float] = (0.05, 0.05),
    structural_difference: float = 0.0,
    misregistration: float = 0.0,
    fat_suppression: float = 0.95,
    fat_suppression_variation: float = 0.0,
    seed: int = 0,
) -> PhantomPairs:
    """Generate ``n`` paired PD / PDFS knee phantoms of ``size`` x ``size`` pixels.

    Each knob draws from its own random stream, so with the same ``seed`` changing one knob leaves
    everything else (anatomy, other knobs' draws, noise) unchanged.

    Args:
        n: number of pairs (>= 1).
        size: image height and width in pixels (>= 8).
        noise: Rician noise sigma of domain a (PD) and b (PDFS), each relative to the mean clean
            foreground signal of that domain over the whole set (1/SNR). 0 gives noise-free images.
        structural_difference: 0 = both domains show the same anatomy; up to 1 = each domain also shows
            up to four blobs (fluid, fibrous or fat tissue) that the other does not, each present with
            this probability, larger as it grows.
        misregistration: 0 = the pair is aligned; 1 = domain b is moved by a random rigid motion of up to
            3 pixels along each axis and 3 degrees (uniform), as for pseudo-pairs from different scans.
        fat_suppression: fraction of the fat signal removed in PDFS (0 = none, 1 = complete).
        fat_suppression_variation: 0 = uniform suppression; 1 = the suppression fraction falls smoothly
            in space down to zero (as with B0 inhomogeneity): ``fs * (1 - v * g(x, y))``, g in [0, 1].
        seed: seed of every random choice; the same seed gives identical arrays.

    Returns:
        :class:`PhantomPairs` with float32 arrays of shape (n, size, size). Both domains of a pair are
        scaled by the same factor, chosen so that the clean PD image's 99th percentile is 1.

    Raises:
        ValueError: an argument is out of range.
    """
    noise_a, noise_b = (float(v) for v in noise)
    knobs = {
        "structural_difference": structural_difference,
        "misregistration": misregistration,
        "fat_suppression": fat_suppression,
        "fat_suppression_variation": fat_suppression_variation,
    }
    _check(n, size, noise_a, noise_b, knobs)
    draws = _Draws(n, size, misregistration, seed)
    clean_a, clean_b, labels_a, labels_b = _render_all(draws, size, knobs)

    p99 = np.percentile(clean_a.reshape(n, -1), 99, axis=1)
    scale = col(1.0 / np.maximum(p99, 1e-6))
    clean_a *= scale
    clean_b *= scale

    fg_a, fg_b = labels_a > 0, labels_b > 0
    mean_a = float(clean_a[fg_a].mean()) if fg_a.any() else 1.0
    mean_b = float(clean_b[fg_b].mean()) if fg_b.any() else 1.0
    sigma_a, sigma_b = noise_a * mean_a, noise_b * mean_b
    a = _rician(draws.rng_noise, clean_a, sigma_a)
    b = _rician(draws.rng_noise, clean_b, sigma_b)

    shown = [
        (e["u"] < structural_difference).sum() if structural_difference > 0 else 0
        for e in (draws.extra_a, draws.extra_b)
    ]
    params: dict[str, Any] = {
        "generator": "model.data.phantom.generate_pairs",
        "n": int(n),
        "size": int(size),
        "noise_a": noise_a,
        "noise_b": noise_b,
        **{k: float(v) for k, v in knobs.items()},
        "seed": int(seed),
        "tr_ms": TR_MS,
        "te_ms": TE_MS,
        "field_strength_t": 3.0,
        "sigma_a": sigma_a,
        "sigma_b": sigma_b,
        "mean_foreground_a": mean_a,
        "mean_foreground_b": mean_b,
        "scaling": "per pair: clean PD 99th percentile = 1, same factor for PDFS",
        "misregistration_max_px": draws.max_px,
        "misregistration_max_deg": draws.max_deg,
        "structures_only_in_a": int(shown[0]),
        "structures_only_in_b": int(shown[1]),
        "tissues": [t.name for t in TISSUES],
    }
    return PhantomPairs(a, b, clean_a, clean_b, params, labels_a, labels_b)


def _check(n: int, size: int, noise_a: float, noise_b: float, knobs: dict[str, float]) -> None:
    if n < 1 or size < 8:
        raise ValueError(f"need n >= 1 and size >= 8, got n={n}, size={size}")
    for name, val in knobs.items():
        if not 0.0 <= val <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {val}")
    if noise_a < 0 or noise_b < 0:
        raise ValueError(f"noise must be >= 0, got {(noise_a, noise_b)}")


class _Draws:
    """Every random choice of a set of pairs, each knob from its own stream (so that changing one knob
    leaves the others' draws as they were)."""

    def __init__(self, n: int, size: int, misregistration: float, seed: int) -> None:
        rng_anat, rng_motion, rng_struct, rng_fs, self.rng_noise = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
        )
        self.anatomy = _anatomy(rng_anat, n)
        jitter = rng_anat.uniform(0.95, 1.05, (n, len(TISSUES)))  # per-pair proton-density variation
        self.warp_x, self.warp_y, self.bias_w = (draw_waves(rng_anat, n) for _ in range(3))
        self.fs_w = draw_waves(rng_fs, n)
        self.max_px, self.max_deg = 3.0 * misregistration, 3.0 * misregistration
        self.rot_b = rng_motion.uniform(-1, 1, n) * self.max_deg * np.pi / 180
        self.shift_b = rng_motion.uniform(-1, 1, (2, n)) * self.max_px * (2.0 / size)
        self.extra_a, self.extra_b = _draw_extra(rng_struct, n), _draw_extra(rng_struct, n)
        water_sig, fat_sig = tissue_signals()
        self.water_sig, self.fat_sig = water_sig * jitter, fat_sig * jitter  # (N, T)


def _render_all(
    d: _Draws, size: int, knobs: dict[str, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clean PD and PDFS images and their tissue labels, (N, size, size) each, in cache-sized blocks."""
    n = d.water_sig.shape[0]
    misregistration, structural = knobs["misregistration"], knobs["structural_difference"]
    coords = (np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0
    u, v = coords[None, None, :], coords[None, :, None]  # (1, 1, W), (1, H, 1)
    clean_a = np.empty((n, size, size), np.float32)
    clean_b = np.empty((n, size, size), np.float32)
    labels_a = np.empty((n, size, size), np.uint8)
    labels_b = np.empty((n, size, size), np.uint8)
    block = max(1, 65536 // (size * size))  # keep temporaries cache-sized
    for lo in range(0, n, block):
        sl = slice(lo, min(n, lo + block))
        b = sl.stop - sl.start
        c = {k: col(val[sl]) for k, val in d.anatomy.items()}
        wx = c["warp_amp"] * smooth_field(d.warp_x[:, :, sl], u, v)  # (B, H, W) smooth deformation
        wy = c["warp_amp"] * smooth_field(d.warp_y[:, :, sl], u, v)
        no_rot, no_shift = np.zeros((b, 1, 1), np.float32), np.zeros((2, b, 1, 1), np.float32)
        xa, ya = _coords(u, v, c, no_rot, no_shift)
        xa += wx
        ya += wy
        can_a = _Canvas((b, size, size), size, d.water_sig[sl], d.fat_sig[sl])
        _render(can_a, xa, ya, c)
        if misregistration > 0:
            xb, yb = _coords(u, v, c, col(d.rot_b[sl]), d.shift_b[:, sl, None, None].astype(np.float32))
            xb += wx
            yb += wy
            can_b = _Canvas((b, size, size), size, d.water_sig[sl], d.fat_sig[sl])
            _render(can_b, xb, yb, c)
        else:
            xb, yb, can_b = xa, ya, can_a.copy()
        if structural > 0:
            _paint_extra(can_a, xa, ya, {k: e[:, sl] for k, e in d.extra_a.items()}, structural)
            _paint_extra(can_b, xb, yb, {k: e[:, sl] for k, e in d.extra_b.items()}, structural)

        bias = 1.0 + 0.1 * smooth_field(d.bias_w[:, :, sl], u, v)  # receive-coil shading, same for both
        fs = np.float32(knobs["fat_suppression"]) * (
            1.0
            - np.float32(knobs["fat_suppression_variation"])
            * (0.5 + 0.5 * smooth_field(d.fs_w[:, :, sl], u, v))
        )
        clean_a[sl] = (can_a.water + can_a.fat) * bias
        clean_b[sl] = (can_b.water + (1.0 - fs) * can_b.fat) * bias
        labels_a[sl], labels_b[sl] = can_a.label, can_b.label
    return clean_a, clean_b, labels_a, labels_b
