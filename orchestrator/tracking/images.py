"""The per-epoch image grids as MLflow shows them: each column named in a band above the grid.

A grid from :meth:`model.trainer.Trainer.sample_images` is one validation pair a row and, a column each,
the source image, the cross output, the target and (with clean images) the clean target; nothing in the
pixels says so. :func:`label_grid` scales a grid up by a whole factor (nearest neighbour, every pixel kept)
until each column's name fits over it, and writes the names in a white band on top; the run's
``orch.image_layout`` tag records the band's height and the factor, so :func:`unlabel` gives the grid back
exactly (the report draws its own figures from it). Imports no MLflow.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["image_columns", "label_grid", "label_grids", "layout_tag", "read_layout", "unlabel"]

#: The columns of each grid ``model.trainer.Trainer.sample_images`` logs, without and with clean images.
_COLUMNS = {
    "x_a_from_b": ("source (b)", "a from b", "noisy target (a)", "clean target (a)"),
    "x_b_from_a": ("source (a)", "b from a", "noisy target (b)", "clean target (b)"),
}

#: Largest factor a grid is scaled up by so that its column names fit (a 16-pixel column becomes 112).
_MAX_SCALE = 16
_FONT_SIZE = 12


def image_columns(key: str, *, clean: bool) -> list[str] | None:
    """The names of the columns of the grid ``key`` (None: a grid orch does not know)."""
    names = _COLUMNS.get(key)
    return None if names is None else list(names[: 4 if clean else 3])


@functools.lru_cache(maxsize=1)
def _font() -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=_FONT_SIZE)  # Pillow's bundled TrueType font (needs FreeType)
    except (OSError, TypeError, ImportError):  # no FreeType: the bitmap font
        return ImageFont.load_default()


def label_grid(grid: np.ndarray, columns: Sequence[str] | None) -> tuple[np.ndarray, dict[str, int] | None]:
    """The grid as 8-bit greyscale with ``columns`` named in a band above it, and its layout.

    Args:
        grid: (H, W) floats in [0, 1], ``len(columns)`` image columns side by side.
        columns: The columns' names; None, or a grid that is not 2-D or not ``len(columns)`` equal
            columns wide, is returned unlabelled (layout None).

    Returns:
        (H', W') uint8, and ``{"header": rows of the band, "scale": factor}`` (what :func:`unlabel` takes).
    """
    from PIL import Image, ImageDraw

    img = (np.clip(np.nan_to_num(grid), 0, 1) * 255).astype(np.uint8)  # (H, W)
    if not columns or img.ndim != 2 or img.shape[1] % len(columns):
        return img, None
    font = _font()
    col = img.shape[1] // len(columns)
    widest = max(font.getlength(c) for c in columns)
    scale = max(1, min(_MAX_SCALE, math.ceil((widest + 8) / col)))
    left, top, right, bottom = font.getbbox("Ag(b)")
    header = int(bottom - top) + 8
    canvas = Image.new("L", (img.shape[1] * scale, header + img.shape[0] * scale), 255)
    canvas.paste(Image.fromarray(np.kron(img, np.ones((scale, scale), dtype=np.uint8))), (0, header))
    draw = ImageDraw.Draw(canvas)
    for i, name in enumerate(columns):
        centre = (i + 0.5) * col * scale
        draw.text((centre, header / 2), name, fill=0, font=font, anchor="mm")
    return np.asarray(canvas), {"header": header, "scale": scale}


def unlabel(img: np.ndarray, layout: Mapping[str, int] | None) -> np.ndarray:
    """The grid :func:`label_grid` labelled, as it was (``layout`` None: ``img`` as it is)."""
    if not layout:
        return img
    scale = int(layout["scale"])
    return img[int(layout["header"]) :: scale, ::scale]


def layout_tag(layouts: Mapping[str, Mapping[str, int]]) -> str:
    """The ``orch.image_layout`` tag's value: image key -> layout."""
    return json.dumps(dict(layouts), sort_keys=True)


def read_layout(tag: str | None, key: str) -> dict[str, int] | None:
    """The layout of the grid ``key`` from the ``orch.image_layout`` tag (None: unlabelled, or unreadable)."""
    try:
        layout = json.loads(tag or "{}").get(key)
        return {"header": int(layout["header"]), "scale": int(layout["scale"])} if layout else None
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def label_grids(grids: Mapping[str, np.ndarray], *, clean: bool) -> tuple[dict[str, np.ndarray], str | None]:
    """Each of an epoch's grids with its columns named (:func:`label_grid`), and the value of the
    ``orch.image_layout`` tag that lets :func:`unlabel` take the names off again (None: nothing labelled).

    Args:
        clean: the grids have a clean-target column (the data has clean images).
    """
    images, layouts = {}, {}
    for name, grid in grids.items():
        images[name], layout = label_grid(grid, image_columns(name, clean=clean))
        if layout:
            layouts[name] = layout
    return images, (layout_tag(layouts) if layouts else None)
