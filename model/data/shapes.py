"""The phantom's drawing primitives, vectorised over pairs: signed distances to ellipses and box-like
superellipses, a smooth step, and smooth random fields made of plane waves."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["col", "draw_waves", "ellipse", "smooth_field", "smoothstep", "superellipse"]


def ellipse(x: np.ndarray, y: np.ndarray, cx: Any, cy: Any, rx: Any, ry: Any) -> np.ndarray:
    """Signed distance (first-order, exact on the boundary's normal) to an axis-aligned ellipse."""
    dx, dy = (x - cx) / rx, (y - cy) / ry
    f = np.sqrt(dx * dx + dy * dy)
    grad = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)  # = f * |grad f|
    return (f - 1.0) * f / np.maximum(grad, 1e-6)


def superellipse(x: np.ndarray, y: np.ndarray, cx: Any, cy: Any, rx: Any, ry: Any) -> np.ndarray:
    """Signed distance (first-order) to the box-like superellipse |x/rx|^4 + |y/ry|^4 = 1."""
    dx, dy = (x - cx) / rx, (y - cy) / ry
    dx3, dy3 = dx * dx * dx, dy * dy * dy
    f4 = dx3 * dx + dy3 * dy
    f = np.sqrt(np.sqrt(f4))
    grad = np.sqrt((dx3 / rx) ** 2 + (dy3 / ry) ** 2)  # = f^3 * |grad f|
    return (f - 1.0) * f * f * f / np.maximum(grad, 1e-6)


def smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def col(v: np.ndarray) -> np.ndarray:
    """Per-pair values (N,) as (N, 1, 1) float32 for broadcasting against (N, H, W)."""
    return np.asarray(v, np.float32)[:, None, None]


def draw_waves(rng: np.random.Generator, n: int, waves: int = 2) -> np.ndarray:
    """Parameters of a random smooth field per pair: (waves, 3, N) = wave vector x, y and phase."""
    freq = rng.uniform(0.5, 2.0, (waves, n))
    ang = rng.uniform(0, 2 * np.pi, (waves, n))
    phase = rng.uniform(0, 2 * np.pi, (waves, n))
    return np.stack([freq * np.cos(ang), freq * np.sin(ang), phase], axis=1)


def smooth_field(w: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A smooth field in [-1, 1]: the mean of the plane waves ``w`` (waves, 3, B), as (B, H, W)."""
    out = np.zeros((w.shape[2], v.shape[1], u.shape[2]), np.float32)
    for kx, ky, phase in w:
        out += np.cos(col(kx) * u + col(ky) * v + col(phase))
    return out / len(w)
