"""Verdict renderers: the field table and texts every format shares, the answer in words, markdown, CSV
and JSON.

Pure functions over ``CellVerdict`` objects (see :mod:`orchestrator.verdict`); nothing here reads a
tracking store. Every flat format comes from one field table, :data:`FIELDS`: each field has its CSV name
and value, and the fields shown in the table, markdown and HTML also have a header and a display text. The
JSON format is :meth:`CellVerdict.to_dict`, the verdict JSON contract. The terminal's views are in
:mod:`~orchestrator.report.terminal`, the HTML page in :mod:`~orchestrator.report.html`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.verdict import CellVerdict, GuardResult, Verdict

__all__ = [
    "FIELDS",
    "FIELD_BY_HEADER",
    "UNDECIDED",
    "UNDECIDED_NOTE",
    "axis_text",
    "change_text",
    "end_text",
    "seen_text",
    "split_axes",
    "text_rows",
    "verdict_text",
    "vs_text",
    "why_text",
    "REPORTED_FINALS",
    "VERDICT_SYMBOLS",
    "Field",
    "headline",
    "ranked",
    "to_csv",
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

#: Marks a level or change that a cell measured but has too few seeds or epochs to decide on.
UNDECIDED = "*"
UNDECIDED_NOTE = f"{UNDECIDED} measured, but too few seeds or epochs to decide (the verdict: inconclusive)"

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


def _mark(v: CellVerdict) -> str:
    return UNDECIDED if v.undecided else ""


def change_text(v: CellVerdict, *, interval: bool = True) -> str:
    """The change over the window, with its interval (in %) unless ``interval`` is False; an undecided
    cell's measured change is marked :data:`UNDECIDED` (it has no interval)."""
    if v.rel_change is None or (v.ci is None and not v.undecided):
        return "–"
    if v.ci is None or not interval:
        return f"{v.rel_change:+.1%}{_mark(v)}"
    return f"{v.rel_change:+.1%} [{100 * v.ci[0]:+.1f}, {100 * v.ci[1]:+.1f}]"


def vs_text(v: CellVerdict) -> str:
    """Where the cell ends against the constant prediction (``-56%``: 56% below it)."""
    return "–" if v.vs_baseline is None else f"{v.vs_baseline:+.0%}{_mark(v)}"


def end_text(v: CellVerdict) -> str:
    return "–" if v.end is None else f"{v.end:.3g}{_mark(v)}"


def verdict_text(v: CellVerdict, *, state: bool = True) -> str:
    return f"{VERDICT_SYMBOLS[v.verdict]} {v.verdict.value}" + (f" ({v.state})" if v.state and state else "")


def seen_text(v: CellVerdict, arrow: str = "→") -> str:
    """Expected → observed, with ✓ or ✗ when the cell has an expectation and it can tell."""
    mark = {True: " ✓", False: " ✗"}.get(v.agrees, "") if v.expected else ""
    return f"{v.expected or '–'}{arrow}{v.observed or '?'}{mark}"


def why_text(v: CellVerdict) -> str:
    """The cell's reason, after its verdict word unless the reason starts with it (``flat: ...``,
    ``falls -12% ...``): the verdict is never said twice."""
    word = v.verdict.value
    return v.reason if v.reason.startswith(word) else f"{word}: {v.reason}"


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
    Field("start_mean", lambda v: v.start, "start", lambda v: _pm(v.start, v.start_sd, _mark(v)), True),
    Field("start_sd", lambda v: v.start_sd),
    Field("end_mean", lambda v: v.end, "end", lambda v: _pm(v.end, v.end_sd, _mark(v)), True),
    Field("end_sd", lambda v: v.end_sd),
    Field("rel_change", lambda v: v.rel_change, "change [CI]", change_text, numeric=True),
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
        vs_text,
        numeric=True,
    ),
    Field("beats_baseline", lambda v: v.beats_baseline),
    Field("state", lambda v: v.state),
    Field("undecided", lambda v: v.undecided),
    Field("verdict", lambda v: v.verdict.value, "verdict", verdict_text),
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

FIELD_BY_HEADER = {f.header: f for f in FIELDS if f.header}
#: Table columns after the cell and its axis values; the final metrics go before "guards failed".
_DISPLAY_ORDER = ("seeds", "start", "end", "change [CI]", "p", "verdict", "expected → seen", "agrees")


def _columns(verdicts: Sequence[CellVerdict]) -> list[Field]:
    """The table's fields for these verdicts: cell, axes, :data:`_DISPLAY_ORDER`, finals, failed guards."""
    axes = _axis_names(verdicts)
    finals = [k for k in REPORTED_FINALS if any(v.finals.get(k) is not None for v in verdicts)]
    return [
        Field("cell", lambda v: v.cell, "cell"),
        *([FIELD_BY_HEADER["vs constant"]] if any(v.vs_baseline is not None for v in verdicts) else []),
        *(
            Field(f"axis.{a}", lambda v, a=a: v.axes.get(a), a, lambda v, a=a: axis_text(v.axes.get(a)))
            for a in axes
        ),
        *(FIELD_BY_HEADER[h] for h in _DISPLAY_ORDER),
        *(
            Field(f"final.{k}", lambda v, k=k: v.finals.get(k), k, lambda v, k=k: _num(v.finals.get(k)), True)
            for k in finals
        ),
        FIELD_BY_HEADER["guards failed"],
    ]


def ranked(verdicts: Sequence[CellVerdict]) -> list[CellVerdict]:
    """The cells in the order the displayed formats show them: lowest end level against the
    constant-prediction baseline first (the answer to "which one learns"), then the undecided cells' measured
    levels (:attr:`CellVerdict.undecided`) likewise, unknown ones last in the matrix's order."""
    return sorted(verdicts, key=lambda v: (v.vs_baseline is None, v.undecided, v.vs_baseline or 0.0))


def text_rows(verdicts: Sequence[CellVerdict]) -> tuple[list[Field], list[list[str]]]:
    """The displayed fields and their texts, shared by the table, markdown and HTML renderers (rows in
    the order of :func:`ranked`; the renderers take ``verdicts`` in that order)."""
    fields = _columns(verdicts)
    rows = [[(f.text or (lambda v, f=f: str(f.value(v))))(v) for f in fields] for v in verdicts]
    return fields, rows


# ---------------------------------------------------------------------------------------------------------
# Renderers


def headline(verdicts: Sequence[CellVerdict]) -> list[str]:
    """The answer in words, one sentence a line: which cells learn more than a constant, what the trend
    does after the warm-up, and how many cells agree with their expectation."""
    if not verdicts:
        return ["No cell to judge."]
    n = len(verdicts)
    lines = []
    known = [v for v in ranked(verdicts) if v.vs_baseline is not None and not v.undecided]
    if known:
        beats = [v for v in known if v.beats_baseline]
        best = known[0]
        level = f"{best.vs_baseline:+.0%} ({best.end:.3g} vs {best.baseline:.3g})"
        if beats:
            names = ", ".join(v.cell for v in beats)
            lines.append(
                f"{len(beats)} of {n} cells end below what predicting the target domain's mean image scores "
                f"({names}); the lowest, {best.cell}, at {level}."
            )
        else:
            lines.append(
                f"No cell ends below what predicting the target domain's mean image scores; the lowest, "
                f"{best.cell}, ends at {level}."
            )
    by: dict[str, list[str]] = {}
    for v in verdicts:
        by.setdefault(verdict_text(v).split(" ", 1)[1], []).append(v.cell)
    trend = "; ".join(f"{word}: {', '.join(cells)}" for word, cells in by.items())
    lines.append(f"After the warm-up, {verdicts[0].metric} reads {trend}.")
    expected = [v for v in verdicts if v.expected]
    if expected:
        agree = sum(v.agrees is True for v in expected)
        undecided = sum(v.agrees is None for v in expected)
        more = f" ({undecided} cannot tell yet)" if undecided else ""
        lines.append(f"{agree} of {len(expected)} cells agree with their expectation{more}.")
    undecided = [v.cell for v in verdicts if v.undecided]
    if undecided:
        lines.append(
            f"{len(undecided)} of {n} cells have too few seeds or epochs to decide ({', '.join(undecided)}): "
            f"what they measured is shown, marked {UNDECIDED}."
        )
    return lines


def split_axes(verdicts: Sequence[CellVerdict]) -> tuple[list[str], dict[str, Any]]:
    """Axis names whose values differ between the cells, and the axes every cell has the same value of."""
    differ, same = [], {}
    for a in _axis_names(verdicts):
        values = {json.dumps(v.axes.get(a), sort_keys=True, default=str) for v in verdicts}
        if len(values) > 1 or len(verdicts) == 1:
            differ.append(a)
        else:
            same[a] = verdicts[0].axes.get(a)
    return differ, same


def to_markdown(
    verdicts: Sequence[CellVerdict],
    *,
    title: str | None = None,
    context: Mapping[str, str] | None = None,
) -> str:
    """The answer, the context, a markdown table (same columns as ``render_table``), then each cell's
    reason (after its verdict word unless it starts with it) and notes.

    Args:
        verdicts: Cell verdicts (shown ranked, as the terminal shows them).
        title: Optional heading.
        context: Label -> value lines of the report's context (data, budget, commit...).

    Returns:
        Markdown text ending in a newline.
    """
    verdicts = ranked(verdicts)
    fields, rows = text_rows(verdicts)
    lines = [f"## {title}", ""] if title else []
    for sentence in headline(verdicts):
        lines += [f"**{_md(sentence)}**", ""]
    if context:
        lines += [f"- {_md(label)}: {_md(value)}" for label, value in context.items()]
        lines.append("")
    lines.append("| " + " | ".join(_md(f.header) for f in fields) + " |")
    lines.append("|" + "|".join("---:" if f.numeric else "---" for f in fields) + "|")
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    lines.append("")
    for v in verdicts:
        lines.append(f"- **{_md(v.cell)}**: {_md(why_text(v))}")
        lines += [f"  - note: {_md(n)}" for n in v.notes]
    if any(v.undecided for v in verdicts):
        lines += ["", _md(UNDECIDED_NOTE)]
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


def to_json(
    verdicts: Sequence[CellVerdict],
    *,
    indent: int | None = 2,
    title: str | None = None,
    context: Mapping[str, str] | None = None,
) -> str:
    """The Verdict JSON contract: a list of ``CellVerdict.to_dict()`` objects (strict JSON, no NaN).

    With ``title`` or ``context`` each object also carries ``report``: the report's ``title``, its
    ``answer`` (:func:`headline`'s sentences) and its ``context`` (label -> text), the same in every
    object, so that the JSON says what the other formats say while staying a list of cells.

    Args:
        verdicts: Cell verdicts.
        indent: JSON indentation (None for one line).
        title: The report's title.
        context: Label -> value lines of the report's context.

    Returns:
        JSON text that ``json.loads`` reads back.
    """
    objects = [v.to_dict() for v in verdicts]
    if title is not None or context is not None:
        report = {"title": title, "answer": headline(verdicts), "context": dict(context or {})}
        objects = [{**o, "report": report} for o in objects]
    return json.dumps(objects, indent=indent, allow_nan=False, ensure_ascii=False)


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


def _pm(mean: float | None, sd: float | None, mark: str = "") -> str:
    if mean is None:
        return "–"
    return f"{mean:.3g}" + (f"±{sd:.1g}" if sd is not None else "") + mark


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def axis_text(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def _md(s: str) -> str:
    """Text as markdown shows it literally in a table cell or a line (``|`` and ``*`` escaped)."""
    return str(s).replace("|", "\\|").replace("*", "\\*").replace("\n", " ")


def _csv_value(x: Any) -> Any:
    if x is None:
        return ""
    if isinstance(x, float) and not math.isfinite(x):
        return ""
    return x
