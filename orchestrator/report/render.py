"""Verdict renderers: a rich table, markdown, CSV, JSON and a self-contained HTML page.

Pure functions over ``CellVerdict`` objects (see :mod:`orchestrator.verdict`); nothing here reads a
tracking store. Every flat format comes from one field table, :data:`FIELDS`: each field has its CSV name
and value, and the fields shown in the table, markdown and HTML also have a header and a display text. The
JSON format is :meth:`CellVerdict.to_dict`, the verdict JSON contract.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from orchestrator.verdict import CellVerdict, GuardResult, Verdict

__all__ = [
    "FIELDS",
    "REPORTED_FINALS",
    "VERDICT_SYMBOLS",
    "Field",
    "ranked",
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
# The field table


@dataclass(frozen=True)
class Field:
    """One column of the flat formats.

    Attributes:
        csv: CSV column name (None: not in the CSV).
        value: The machine value written to CSV.
        header: Column header in the table, markdown and HTML (None: CSV only).
        text: Display text (default: ``value`` formatted).
        numeric: Right-aligned in the table.
    """

    csv: str | None
    value: Callable[[CellVerdict], Any]
    header: str | None = None
    text: Callable[[CellVerdict], str] | None = None
    numeric: bool = False


def _window(i: int) -> Callable[[CellVerdict], Any]:
    return lambda v: v.window[i] if v.window else ""


def _ci(i: int) -> Callable[[CellVerdict], Any]:
    return lambda v: v.ci[i] if v.ci else None


def _change_text(v: CellVerdict) -> str:
    if v.rel_change is None or v.ci is None:
        return "–"
    return f"{v.rel_change:+.1%} [{100 * v.ci[0]:+.1f}, {100 * v.ci[1]:+.1f}]"


def _verdict_text(v: CellVerdict) -> str:
    return f"{VERDICT_SYMBOLS[v.verdict]} {v.verdict.value}" + (f" ({v.state})" if v.state else "")


#: Every field of the flat formats, in CSV order; axis and final-metric columns are added around them
#: (:func:`_columns`). The display order of the table is :data:`_DISPLAY_ORDER`.
FIELDS: tuple[Field, ...] = (
    Field("metric", lambda v: v.metric),
    Field(
        "seeds",
        lambda v: " ".join(str(s) for s in v.seeds),
        "seeds",
        lambda v: f"{len(v.seeds)} ok" + (f", {v.seeds_failed} failed" if v.seeds_failed else ""),
    ),
    Field("seeds_failed", lambda v: v.seeds_failed),
    Field("epochs", lambda v: v.epochs),
    Field("window_first", _window(0)),
    Field("window_last", _window(1)),
    Field("start_mean", lambda v: v.start, "start", lambda v: _pm(v.start, v.start_sd), numeric=True),
    Field("start_sd", lambda v: v.start_sd),
    Field("end_mean", lambda v: v.end, "end", lambda v: _pm(v.end, v.end_sd), numeric=True),
    Field("end_sd", lambda v: v.end_sd),
    Field("rel_change", lambda v: v.rel_change, "change [CI]", _change_text, numeric=True),
    Field("ci_low", _ci(0)),
    Field("ci_high", _ci(1)),
    Field("confidence", lambda v: v.confidence),
    Field(
        "p_value",
        lambda v: v.p_value,
        "p",
        lambda v: "–" if v.p_value is None else f"{v.p_value:.2g}",
        numeric=True,
    ),
    Field("tau", lambda v: v.tau),
    Field("theil_sen", lambda v: v.theil_sen),
    Field("seed_agreement", lambda v: v.seed_agreement),
    Field("whole_run_change", lambda v: v.whole_run_change),
    Field("floor", lambda v: v.floor),
    Field("progress", lambda v: v.progress),
    Field("at_floor", lambda v: v.at_floor),
    Field("baseline", lambda v: v.baseline),
    Field(
        "vs_baseline",
        lambda v: v.vs_baseline,
        "vs constant",
        lambda v: "–" if v.vs_baseline is None else f"{v.vs_baseline:+.0%}",
        numeric=True,
    ),
    Field("beats_baseline", lambda v: v.beats_baseline),
    Field("state", lambda v: v.state),
    Field("verdict", lambda v: v.verdict.value, "verdict", _verdict_text),
    Field(
        "expected",
        lambda v: v.expected,
        "expected → seen",
        lambda v: f"{v.expected or '–'} → {v.observed or '?'}",
    ),
    Field("observed", lambda v: v.observed),
    Field("agrees", lambda v: v.agrees, "agrees", lambda v: {True: "✓", False: "✗"}.get(v.agrees, "–")),
    Field(
        "guards_failed",
        lambda v: " ".join(_guard_label(g) for g in v.failed_guards),
        "guards failed",
        lambda v: ", ".join(_guard_label(g) for g in v.failed_guards) or "–",
    ),
    Field("reason", lambda v: v.reason),
)

_BY_HEADER = {f.header: f for f in FIELDS if f.header}
#: Table columns after the cell and its axis values; the final metrics go before "guards failed".
_DISPLAY_ORDER = ("seeds", "start", "end", "change [CI]", "p", "verdict", "expected → seen", "agrees")


def _columns(verdicts: Sequence[CellVerdict]) -> list[Field]:
    """The table's fields for these verdicts: cell, axes, :data:`_DISPLAY_ORDER`, finals, failed guards."""
    axes = _axis_names(verdicts)
    finals = [k for k in REPORTED_FINALS if any(v.finals.get(k) is not None for v in verdicts)]
    return [
        Field("cell", lambda v: v.cell, "cell"),
        *([_BY_HEADER["vs constant"]] if any(v.vs_baseline is not None for v in verdicts) else []),
        *(
            Field(f"axis.{a}", lambda v, a=a: v.axes.get(a), a, lambda v, a=a: _fmt_axis(v.axes.get(a)))
            for a in axes
        ),
        *(_BY_HEADER[h] for h in _DISPLAY_ORDER),
        *(
            Field(f"final.{k}", lambda v, k=k: v.finals.get(k), k, lambda v, k=k: _num(v.finals.get(k)), True)
            for k in finals
        ),
        _BY_HEADER["guards failed"],
    ]


def ranked(verdicts: Sequence[CellVerdict]) -> list[CellVerdict]:
    """The cells in the order the displayed formats show them: lowest end level against the
    constant-prediction baseline first (the answer to "which one learns"), unknown ones last in the
    matrix's order."""
    return sorted(verdicts, key=lambda v: (v.vs_baseline is None, v.vs_baseline or 0.0))


def _text_rows(verdicts: Sequence[CellVerdict]) -> tuple[list[Field], list[list[str]]]:
    """The displayed fields and their texts, shared by the table, markdown and HTML renderers (rows in
    the order of :func:`ranked`; the renderers take ``verdicts`` in that order)."""
    fields = _columns(verdicts)
    rows = [[(f.text or (lambda v, f=f: str(f.value(v))))(v) for f in fields] for v in verdicts]
    return fields, rows


# ---------------------------------------------------------------------------------------------------------
# Renderers


def render_table(verdicts: Sequence[CellVerdict], *, title: str = "Verdicts") -> Table:
    """A rich table with one row per cell, ranked by where each ends against the constant prediction.

    Columns: cell, its end level against the constant-prediction baseline (when known), its axis values, seeds
    finished/failed, the metric at the window's start and end (mean ± spread over seeds), the relative change
    over the window with its interval (in %), the trend p-value, the verdict (symbol, word and, where the
    floor is known, converged / stalled / approaching), expected → observed outcome, whether they agree,
    ``cross_psnr_clean`` / ``noise_leak`` at the end when present, and failed guards. Long cells fold rather
    than truncate.

    Args:
        verdicts: Cell verdicts, in display order.
        title: Table title.

    Returns:
        The table (print it with a rich console).
    """
    verdicts = ranked(verdicts)
    fields, rows = _text_rows(verdicts)
    table = Table(title=title, show_lines=False)
    keep_whole = ("cell", "start", "end", "verdict", "expected → seen")  # never folded below their content
    for i, f in enumerate(fields):
        widest = max((len(r[i]) for r in rows), default=0) if f.header in keep_whole else None
        table.add_column(
            f.header,
            justify="right" if f.numeric else "left",
            overflow="fold",
            min_width=min(widest, 32) if widest else None,
        )
    vi = [f.header for f in fields].index("verdict")
    ai = [f.header for f in fields].index("agrees")
    for v, row in zip(verdicts, rows, strict=True):
        cells: list[str | Text] = list(row)
        cells[vi] = Text(row[vi], style=_STYLES[v.verdict])
        cells[ai] = Text(row[ai], style={True: "green", False: "bold red"}.get(v.agrees, "dim"))
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
    verdicts = ranked(verdicts)
    fields, rows = _text_rows(verdicts)
    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(_md(f.header) for f in fields) + " |")
    lines.append("|" + "|".join("---" for _ in fields) + "|")
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
        CSV text with a header row: ``cell``, the axes, every :data:`FIELDS` entry but ``reason``, the
        final metrics, then ``reason``.
    """
    axes = _axis_names(verdicts)
    finals = sorted({k for v in verdicts for k in v.finals})
    fields = [
        Field("cell", lambda v: v.cell),
        *(Field(f"axis.{a}", lambda v, a=a: v.axes.get(a)) for a in axes),
        *(f for f in FIELDS if f.csv != "reason"),
        *(Field(f"final.{k}", lambda v, k=k: v.finals.get(k)) for k in finals),
        *(f for f in FIELDS if f.csv == "reason"),
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([f.csv for f in fields])
    for v in verdicts:
        writer.writerow([_csv_value(f.value(v)) for f in fields])
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
    verdicts = ranked(verdicts)
    fields, rows = _text_rows(verdicts)
    headers = [f.header for f in fields]
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
        "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>",
        "<tbody>",
    ]
    vi, ai = headers.index("verdict"), headers.index("agrees")
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
# Private helpers


def _axis_names(verdicts: Sequence[CellVerdict]) -> list[str]:
    names: list[str] = []
    for v in verdicts:
        names += [k for k in v.axes if k not in names]
    return names


def _guard_label(g: GuardResult) -> str:
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
