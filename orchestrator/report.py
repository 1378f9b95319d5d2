"""Verdict renderers and plots: a rich table, markdown, CSV, JSON, self-contained HTML, curve and image PNGs.

Pure functions over ``CellVerdict`` objects (see ``orchestrator.verdict``) and plain arrays; nothing here
reads a tracking store. Figures are drawn on matplotlib's Agg canvas without pyplot's global state, so they
are safe to call from worker threads and headless machines.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.table import Table
from rich.text import Text

from orchestrator.verdict import CellVerdict, Verdict, default_warmup

__all__ = [
    "REPORTED_FINALS",
    "VERDICT_SYMBOLS",
    "plot_curves",
    "plot_images",
    "render_table",
    "to_csv",
    "to_html",
    "to_json",
    "to_markdown",
]

#: Final-epoch metrics shown as their own columns when a verdict carries them.
REPORTED_FINALS: tuple[str, ...] = ("cross_psnr_clean", "noise_leak")

#: Symbol shown before each verdict.
VERDICT_SYMBOLS: dict[Verdict, str] = {
    Verdict.FALLS: "↘",
    Verdict.FLAT: "→",
    Verdict.RISES: "↗",
    Verdict.DIVERGED: "✗",
    Verdict.INCONCLUSIVE: "?",
}

_STYLES: dict[Verdict, str] = {
    Verdict.FALLS: "green",
    Verdict.FLAT: "yellow",
    Verdict.RISES: "red",
    Verdict.DIVERGED: "bold red",
    Verdict.INCONCLUSIVE: "dim",
}


# ---------------------------------------------------------------------------------------------------------
# Tables


def render_table(verdicts: Sequence[CellVerdict], *, title: str = "Verdicts") -> Table:
    """A rich table with one row per cell.

    Columns: cell, its axis values, seeds finished/failed, the metric at the window's start and end
    (mean ± spread over seeds), the relative change over the window with its interval (in %), the trend
    p-value, the verdict (symbol, word and, where the floor is known, converged / stalled / approaching),
    expected → observed outcome, whether they agree, ``cross_psnr_clean`` / ``noise_leak`` at the end when
    present, and failed guards. Long cells fold rather than truncate.

    Args:
        verdicts: Cell verdicts, in display order.
        title: Table title.

    Returns:
        The table (print it with a rich console).
    """
    header, rows = _text_rows(verdicts)
    table = Table(title=title, show_lines=False)
    keep_whole = ("cell", "start", "end", "verdict", "expected → seen")  # never folded below their content
    for i, name in enumerate(header):
        numeric = name in ("start", "end", "change [CI]", "p", *REPORTED_FINALS)
        widest = max((len(r[i]) for r in rows), default=0) if name in keep_whole else None
        table.add_column(
            name,
            justify="right" if numeric else "left",
            overflow="fold",
            min_width=min(widest, 32) if widest else None,
        )
    for v, row in zip(verdicts, rows, strict=True):
        cells: list[str | Text] = list(row)
        i = header.index("verdict")
        cells[i] = Text(row[i], style=_STYLES[v.verdict])
        j = header.index("agrees")
        cells[j] = Text(row[j], style={True: "green", False: "bold red"}.get(v.agrees, "dim"))
        table.add_row(*cells)
    return table


def to_markdown(verdicts: Sequence[CellVerdict], *, title: str | None = None) -> str:
    """A markdown table (same columns as ``render_table``) followed by one line of reasoning per cell.

    Args:
        verdicts: Cell verdicts, in display order.
        title: Optional heading.

    Returns:
        Markdown text ending in a newline.
    """
    header, rows = _text_rows(verdicts)
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(_md(h) for h in header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    lines.append("")
    for v in verdicts:
        lines.append(f"- **{_md(v.cell)}** ({v.verdict.value}): {_md(v.reason)}")
        lines += [f"  - note: {_md(n)}" for n in v.notes]
    return "\n".join(lines) + "\n"


def to_csv(verdicts: Sequence[CellVerdict]) -> str:
    """Machine-readable CSV, one row per cell; axis columns are ``axis.<name>``, finals ``final.<name>``.

    Args:
        verdicts: Cell verdicts.

    Returns:
        CSV text with a header row.
    """
    axes = _axis_names(verdicts)
    finals = sorted({k for v in verdicts for k in v.finals})
    fields = [
        "cell",
        *(f"axis.{a}" for a in axes),
        "metric",
        "seeds",
        "seeds_failed",
        "epochs",
        "window_first",
        "window_last",
        "start_mean",
        "start_sd",
        "end_mean",
        "end_sd",
        "rel_change",
        "ci_low",
        "ci_high",
        "confidence",
        "p_value",
        "tau",
        "theil_sen",
        "seed_agreement",
        "whole_run_change",
        "floor",
        "progress",
        "at_floor",
        "state",
        "verdict",
        "expected",
        "observed",
        "agrees",
        "guards_failed",
        *(f"final.{k}" for k in finals),
        "reason",
    ]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for v in verdicts:
        row: dict[str, Any] = {
            "cell": v.cell,
            "metric": v.metric,
            "seeds": " ".join(str(s) for s in v.seeds),
            "seeds_failed": v.seeds_failed,
            "epochs": v.epochs,
            "window_first": v.window[0] if v.window else "",
            "window_last": v.window[1] if v.window else "",
            "start_mean": v.start,
            "start_sd": v.start_sd,
            "end_mean": v.end,
            "end_sd": v.end_sd,
            "rel_change": v.rel_change,
            "ci_low": v.ci[0] if v.ci else None,
            "ci_high": v.ci[1] if v.ci else None,
            "confidence": v.confidence,
            "p_value": v.p_value,
            "tau": v.tau,
            "theil_sen": v.theil_sen,
            "seed_agreement": v.seed_agreement,
            "whole_run_change": v.whole_run_change,
            "floor": v.floor,
            "progress": v.progress,
            "at_floor": v.at_floor,
            "state": v.state,
            "verdict": v.verdict.value,
            "expected": v.expected,
            "observed": v.observed,
            "agrees": v.agrees,
            "guards_failed": " ".join(_guard_label(g) for g in v.failed_guards),
            "reason": v.reason,
        }
        row.update({f"axis.{a}": v.axes.get(a) for a in axes})
        row.update({f"final.{k}": v.finals.get(k) for k in finals})
        writer.writerow({k: _csv_value(x) for k, x in row.items()})
    return buf.getvalue()


def to_json(verdicts: Sequence[CellVerdict], *, indent: int | None = 2) -> str:
    """The Verdict JSON contract: a list of ``CellVerdict.to_dict()`` objects (strict JSON, no NaN).

    Args:
        verdicts: Cell verdicts.
        indent: JSON indentation (None for one line).

    Returns:
        JSON text that ``json.loads`` reads back.
    """
    return json.dumps([v.to_dict() for v in verdicts], indent=indent, allow_nan=False, ensure_ascii=False)


def to_html(
    verdicts: Sequence[CellVerdict], figures: Mapping[str, Path] | None = None, *, title: str = "Verdicts"
) -> str:
    """A self-contained HTML page: the verdict table, one line of reasoning per cell, embedded PNG figures.

    Args:
        verdicts: Cell verdicts, in display order.
        figures: Caption -> PNG path; each is embedded as a base64 ``<img>`` (no external files).
        title: Page title and heading.

    Returns:
        HTML text.
    """
    header, rows = _text_rows(verdicts)
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left}th{background:#f3f3f3}"
        ".falls{color:#17803d}.flat{color:#a36a00}.rises{color:#b3261e}.diverged{color:#b3261e;"
        "font-weight:bold}.inconclusive{color:#777}.agree-false{color:#b3261e;font-weight:bold}"
        "figure{display:inline-block;margin:1em}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
        '<table class="verdicts">',
        "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>",
        "<tbody>",
    ]
    vi, ai = header.index("verdict"), header.index("agrees")
    for v, row in zip(verdicts, rows, strict=True):
        tds = []
        for i, c in enumerate(row):
            cls = v.verdict.value if i == vi else (f"agree-{str(v.agrees).lower()}" if i == ai else "")
            tds.append(f'<td class="{cls}">{esc(c)}</td>' if cls else f"<td>{esc(c)}</td>")
        parts.append("<tr>" + "".join(tds) + "</tr>")
    parts += ["</tbody></table>", "<ul>"]
    for v in verdicts:
        notes = "".join(f"<br><small>{esc(n)}</small>" for n in v.notes)
        parts.append(f"<li><b>{esc(v.cell)}</b> ({esc(v.verdict.value)}): {esc(v.reason)}{notes}</li>")
    parts.append("</ul>")
    for caption, path in (figures or {}).items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Figures


def plot_curves(
    curves_by_cell: Mapping[str, Sequence[np.ndarray]],
    metric: str,
    out_png: Path | str,
    floor_by_cell: Mapping[str, float | None] | None = None,
    *,
    warmup: int | None = None,
    title: str | None = None,
) -> Path:
    """Mean curve per cell with a min-max band over seeds; the warm-up epochs are shaded.

    Args:
        curves_by_cell: Cell -> one curve per seed (index = epoch, epoch 0 included; lengths may differ,
            non-finite values are left out).
        metric: Metric name for the axis label.
        out_png: Output path (parents are created).
        floor_by_cell: Cell -> attainable floor, drawn as a dashed line in the cell's colour.
        warmup: Warm-up length to shade; None = ``default_warmup`` of the longest curve.
        title: Figure title.

    Returns:
        The PNG path.
    """
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    longest = 0
    for k, (cell, curves) in enumerate(curves_by_cell.items()):
        y = _pad([np.asarray(c, dtype=float).ravel() for c in curves])  # (S, E) NaN-padded
        if y.size == 0:
            continue
        longest = max(longest, y.shape[1])
        color = f"C{k % 10}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)  # epochs where every seed is NaN
            mean, lo, hi = np.nanmean(y, axis=0), np.nanmin(y, axis=0), np.nanmax(y, axis=0)
        epochs = np.arange(y.shape[1])
        ax.plot(epochs, mean, color=color, lw=1.8, label=f"{cell} (n={y.shape[0]})")
        ax.fill_between(epochs, lo, hi, color=color, alpha=0.2, lw=0)
        floor = (floor_by_cell or {}).get(cell)
        if floor is not None and math.isfinite(floor):
            ax.axhline(floor, color=color, ls="--", lw=1.0, alpha=0.8)
    if longest:
        w = warmup if warmup is not None else default_warmup(longest)
        ax.axvspan(-0.5, w - 0.5, color="0.85", alpha=0.6, lw=0, label=f"warm-up (epochs < {w})")
        ax.set_xlim(-0.5, longest - 0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} per epoch (mean, min-max over seeds; dashed: floor)")
    ax.grid(alpha=0.3)
    if curves_by_cell:
        ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out


def plot_images(images_by_cell: Mapping[str, np.ndarray], out_png: Path | str, *, ncols: int = 4) -> Path:
    """Image grids (e.g. the last epoch's ``x_a_from_b``) of several cells side by side.

    Args:
        images_by_cell: Cell -> image: ``(H, W)``, ``(H, W, C)`` with C in 1/3/4, ``(C, H, W)`` with C in 1/3,
            or a stack ``(N, H, W)`` / ``(N, C, H, W)`` tiled in a row. Floats are shown over their own range
            (grey) or clipped to [0, 1] (colour; 0-255 values are scaled).
        out_png: Output path (parents are created).
        ncols: Panels per row.

    Returns:
        The PNG path.
    """
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = max(1, len(images_by_cell))
    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.2 * cols, 3.4 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for k, (cell, img) in enumerate(images_by_cell.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        arr = _as_image(np.asarray(img))
        if arr.ndim == 2:
            ax.imshow(arr, cmap="gray", interpolation="nearest")
        else:
            ax.imshow(arr, interpolation="nearest")
        ax.set_title(cell, fontsize="small")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out


# ---------------------------------------------------------------------------------------------------------
# Private helpers


def _axis_names(verdicts: Sequence[CellVerdict]) -> list[str]:
    names: list[str] = []
    for v in verdicts:
        names += [k for k in v.axes if k not in names]
    return names


def _text_rows(verdicts: Sequence[CellVerdict]) -> tuple[list[str], list[list[str]]]:
    """Header and display strings shared by the table, markdown and HTML renderers."""
    axes = _axis_names(verdicts)
    finals = [k for k in REPORTED_FINALS if any(v.finals.get(k) is not None for v in verdicts)]
    header = [
        "cell",
        *axes,
        "seeds",
        "start",
        "end",
        "change [CI]",
        "p",
        "verdict",
        "expected → seen",
        "agrees",
        *finals,
        "guards failed",
    ]
    rows = []
    for v in verdicts:
        change = "–"
        if v.rel_change is not None and v.ci is not None:
            change = f"{v.rel_change:+.1%} [{100 * v.ci[0]:+.1f}, {100 * v.ci[1]:+.1f}]"
        seeds = f"{len(v.seeds)} ok" + (f", {v.seeds_failed} failed" if v.seeds_failed else "")
        word = f"{VERDICT_SYMBOLS[v.verdict]} {v.verdict.value}" + (f" ({v.state})" if v.state else "")
        rows.append(
            [
                v.cell,
                *(_fmt_axis(v.axes.get(a)) for a in axes),
                seeds,
                _pm(v.start, v.start_sd),
                _pm(v.end, v.end_sd),
                change,
                "–" if v.p_value is None else f"{v.p_value:.2g}",
                word,
                f"{v.expected or '–'} → {v.observed or '?'}",
                {True: "✓", False: "✗"}.get(v.agrees, "–") if v.agrees is not None else "–",
                *(_num(v.finals.get(k)) for k in finals),
                ", ".join(_guard_label(g) for g in v.failed_guards) or "–",
            ]
        )
    return header, rows


def _guard_label(g: Any) -> str:
    bound = []
    if g.min is not None:
        bound.append(f">={g.min:g}")
    if g.max is not None:
        bound.append(f"<={g.max:g}")
    value = "n/a" if g.value is None else f"{g.value:.4g}"
    return f"{g.metric}={value} (needs {' '.join(bound)})"


def _pm(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.3g}" + (f"±{sd:.1g}" if sd is not None else "")


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _fmt_axis(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def _md(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _csv_value(x: Any) -> Any:
    if x is None:
        return ""
    if isinstance(x, float) and not math.isfinite(x):
        return ""
    return x


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
