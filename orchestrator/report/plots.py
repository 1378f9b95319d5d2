"""Report figures: each cell's curve with a band over seeds, and the cells' last image grids side by side.

Drawn on matplotlib's Agg canvas without pyplot's global state, so they are safe from worker threads and
headless machines.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from orchestrator.verdict import default_warmup

__all__ = ["PALETTE", "curves_figure", "images_figure", "plot_curves", "plot_images"]

#: Okabe and Ito's colour-blind-safe palette (blue, vermillion, bluish green, reddish purple, orange, sky
#: blue, black, yellow): eight cells each their own colour; from the ninth, colours repeat with dashes.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
_STYLES = ("-", (0, (5, 2)), (0, (1, 1.5)))


def plot_curves(
    curves_by_cell: Mapping[str, Sequence[np.ndarray]],
    metric: str,
    out_png: Path | str,
    floor_by_cell: Mapping[str, float | None] | None = None,
    *,
    baseline_by_cell: Mapping[str, float | None] | None = None,
    warmup: int | None = None,
    title: str | None = None,
) -> Path:
    """:func:`curves_figure` written to ``out_png`` (parents are created); returns the path."""
    fig = curves_figure(
        curves_by_cell, metric, floor_by_cell, baseline_by_cell=baseline_by_cell, warmup=warmup, title=title
    )
    return _save(fig, out_png)


def curves_figure(
    curves_by_cell: Mapping[str, Sequence[np.ndarray]],
    metric: str,
    floor_by_cell: Mapping[str, float | None] | None = None,
    *,
    baseline_by_cell: Mapping[str, float | None] | None = None,
    warmup: int | None = None,
    title: str | None = None,
) -> Figure:
    """Mean curve per cell with a min-max band over seeds; the warm-up epochs are shaded.

    Each cell has its colour from :data:`PALETTE`; the legend (cells, the warm-up, what dashed and dotted
    lines are) sits outside the axes, right of them, so that it covers no curve and no band; the title is
    inside the canvas (constrained layout).

    Args:
        curves_by_cell: Cell -> one curve per seed (index = epoch, epoch 0 included; lengths may differ,
            non-finite values are left out).
        metric: Metric name for the axis label.
        floor_by_cell: Cell -> attainable floor, drawn as a dashed line in the cell's colour.
        baseline_by_cell: Cell -> constant-prediction baseline, drawn as a dotted line in its colour.
        warmup: Warm-up length to shade; None = ``default_warmup`` of the longest curve.
        title: Figure title.

    Returns:
        The figure (on an Agg canvas).
    """
    fig = Figure(figsize=(9, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    longest = 0
    levels_drawn = {"--": False, ":": False}
    for k, (cell, curves) in enumerate(curves_by_cell.items()):
        y = _pad([np.asarray(c, dtype=float).ravel() for c in curves])  # (S, E) NaN-padded
        if y.size == 0:
            continue
        longest = max(longest, y.shape[1])
        color, style = PALETTE[k % len(PALETTE)], _STYLES[(k // len(PALETTE)) % len(_STYLES)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)  # epochs where every seed is NaN
            mean, lo, hi = np.nanmean(y, axis=0), np.nanmin(y, axis=0), np.nanmax(y, axis=0)
        epochs = np.arange(y.shape[1])
        ax.plot(epochs, mean, color=color, ls=style, lw=1.8, label=f"{cell} (n={y.shape[0]})")
        ax.fill_between(epochs, lo, hi, color=color, alpha=0.18, lw=0)
        for level, ls in (((floor_by_cell or {}).get(cell), "--"), ((baseline_by_cell or {}).get(cell), ":")):
            if level is not None and math.isfinite(level):
                ax.axhline(level, color=color, ls=ls, lw=1.0, alpha=0.8)
                levels_drawn[ls] = True
    if longest:
        w = warmup if warmup is not None else default_warmup(longest)
        ax.axvspan(-0.5, w - 0.5, color="0.85", alpha=0.6, lw=0, label=f"warm-up (epochs < {w})")
        ax.set_xlim(-0.5, longest - 0.5)
    for ls, label in (("--", "floor (dashed)"), (":", "constant prediction (dotted)")):
        if levels_drawn[ls]:
            ax.plot([], [], color="0.3", ls=ls, lw=1.0, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    fig.suptitle(title or f"{metric} per epoch (mean, min-max over seeds)", fontsize="medium")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        fig.legend(loc="outside right upper", fontsize="small", frameon=False)
    return fig


def plot_images(
    images_by_cell: Mapping[str, np.ndarray],
    out_png: Path | str,
    *,
    ncols: int = 4,
    column_labels: Mapping[str, Sequence[str]] | None = None,
    captions: Mapping[str, str] | None = None,
) -> Path:
    """:func:`images_figure` written to ``out_png`` (parents are created); returns the path."""
    fig = images_figure(images_by_cell, ncols=ncols, column_labels=column_labels, captions=captions)
    return _save(fig, out_png)


#: Inches a labelled image column gets: its name (in two lines at most) fits over it, whatever its pixels.
_COLUMN_INCHES = 0.95
_LABEL_CHARS = 12


def images_figure(
    images_by_cell: Mapping[str, np.ndarray],
    *,
    ncols: int = 4,
    column_labels: Mapping[str, Sequence[str]] | None = None,
    captions: Mapping[str, str] | None = None,
) -> Figure:
    """Image grids (e.g. the last epoch's ``x_a_from_b``) of several cells side by side.

    Each panel is as wide as its labelled columns need and as tall as its image's aspect then takes, so
    that the canvas is the images (a tall 128x96 grid gets a tall panel, not a narrow strip in a square);
    the title sits above the image and the column names under it, inside the canvas (constrained layout).

    Args:
        images_by_cell: Cell -> image: ``(H, W)``, ``(H, W, C)`` with C in 1/3/4, ``(C, H, W)`` with C in 1/3,
            or a stack ``(N, H, W)`` / ``(N, C, H, W)`` tiled in a row. Floats are shown over their own range
            (grey) or clipped to [0, 1] (colour; 0-255 values are scaled).
        ncols: Panels per row at most.
        column_labels: Cell -> the names of the image columns of its grid (e.g. source, output, target,
            clean target), written under them (a long name in two lines).
        captions: Cell -> a line written under its panel's title (e.g. which seed).

    Returns:
        The figure (on an Agg canvas).
    """
    arrays = {cell: _as_image(np.asarray(img)) for cell, img in images_by_cell.items()}
    n = max(1, len(arrays))
    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    widths, heights = [], []
    for cell, arr in arrays.items():
        labels = (column_labels or {}).get(cell, ())
        width = max(2.4, _COLUMN_INCHES * len(labels))
        widths.append(width)
        heights.append(width * arr.shape[0] / arr.shape[1])
    panel_w = max(widths, default=3.2)
    panel_h = min(max(heights, default=3.2), 3 * panel_w)
    fig = Figure(figsize=(panel_w * cols, (panel_h + 0.8) * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for k, (cell, arr) in enumerate(arrays.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        if arr.ndim == 2:
            ax.imshow(arr, cmap="gray", interpolation="nearest")
        else:
            ax.imshow(arr, interpolation="nearest")
        caption = (captions or {}).get(cell)
        ax.set_title(cell + (f"\n{caption}" if caption else ""), fontsize="small")
        labels = list((column_labels or {}).get(cell, ()))
        if labels:
            width = arr.shape[1] / len(labels)
            names = [textwrap.fill(label, _LABEL_CHARS) for label in labels]
            ax.set_xticks([width * (i + 0.5) for i in range(len(labels))], names, fontsize="x-small")
            ax.set_yticks([])
            ax.tick_params(length=0, pad=2)
            for side in ax.spines.values():
                side.set_visible(False)
        else:
            ax.set_axis_off()
    return fig


def _save(fig: Figure, out_png: Path | str) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _pad(curves: list[np.ndarray]) -> np.ndarray:
    if not curves:
        return np.empty((0, 0))
    n = max(c.size for c in curves)
    out = np.full((len(curves), n), np.nan)
    for i, c in enumerate(curves):
        out[i, : c.size] = np.where(np.isfinite(c), c, np.nan)
    return out


def _as_image(a: np.ndarray) -> np.ndarray:
    """Normalise an image or stack to ``(H, W)`` or ``(H, W, 3|4)`` for imshow."""
    if a.ndim == 4:  # (N, C, H, W) -> (C, H, N*W)
        a = np.concatenate(list(a), axis=-1)
    if a.ndim == 3:
        if a.shape[-1] in (1, 3, 4) and a.shape[0] not in (1, 3):
            a = a[..., 0] if a.shape[-1] == 1 else a
        elif a.shape[0] in (1, 3):  # (C, H, W)
            a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
        else:  # (N, H, W) stack -> side by side
            a = np.concatenate(list(a), axis=-1)
    if a.ndim not in (2, 3):
        raise ValueError(f"cannot show an image of shape {a.shape}")
    a = a.astype(float)
    if a.ndim == 3:
        if np.nanmax(a) > 1.0:
            a = a / 255.0
        a = np.clip(a, 0.0, 1.0)
    return a
