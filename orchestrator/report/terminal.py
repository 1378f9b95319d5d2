"""The verdicts in a terminal: the summary that fits its width, and every column (``--wide``).

Rich renderables over ``CellVerdict`` objects, laid out when printed to the console's width (a terminal's,
or ``COLUMNS`` piped; :mod:`~orchestrator.report.layout`), with the texts of
:mod:`~orchestrator.report.render`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from orchestrator.report.layout import Blocks, Fitted
from orchestrator.report.render import (
    UNDECIDED_NOTE,
    axis_text,
    change_text,
    end_text,
    headline,
    ranked,
    seen_text,
    split_axes,
    text_rows,
    verdict_text,
    vs_text,
)
from orchestrator.verdict import CellVerdict, Verdict

__all__ = ["render_summary", "render_table", "render_wide"]

_STYLES: dict[Verdict, str] = {
    Verdict.FALLS: "green",
    Verdict.FLAT: "yellow",
    Verdict.RISES: "red",
    Verdict.DIVERGED: "bold red",
    Verdict.INCONCLUSIVE: "dim",
}


def render_summary(
    verdicts: Sequence[CellVerdict], *, title: str = "Verdicts", context: Mapping[str, str] | None = None
) -> Group:
    """The verdicts as a terminal reads them: one short row per cell, then the answer, why, and the context.

    The table has the cell, where it ends against the constant prediction, the verdict with its state,
    the change over the window with its interval, the end level and expected → seen; cells are ranked by
    :func:`ranked`. Where that does not fit the width (80 columns), the end level goes first, then ``vs
    const``, the verdict's state, then the interval (each is in the cell's reason too): the cell's full
    name, its verdict, its change and ✓/✗ always stay. Under the table, the answer (:func:`headline`),
    each cell's axis values (only those that differ between cells; the others are said once) and its
    one-line reason, then ``context`` (the data, the budget, the commit...), wrapped to the console's width
    rather than cut. The full table is :func:`render_wide` (``orch report --wide``).
    """
    verdicts = ranked(verdicts)
    differ, same = split_axes(verdicts)
    has_baseline = any(v.vs_baseline is not None for v in verdicts)
    narrower = (  # what each narrower layout leaves out, until the last, which folds
        {},
        {"end": False},
        {"end": False, "vs": False},
        {"end": False, "vs": False, "state": False},
        {"end": False, "vs": False, "state": False, "interval": False, "fold": True},
    )
    table = Fitted(
        *(lambda kw=kw: _summary_table(verdicts, title, **{"vs": has_baseline, **kw}) for kw in narrower)
    )
    why: list[Any] = [Text("")]
    for v in verdicts:
        head = Text(v.cell, style="bold")
        shown = "  ".join(f"{a}={axis_text(v.axes[a])}" for a in differ if a in v.axes)
        head.append(f"  {shown}" if shown else "", style="dim")
        why += [_para(head, 2), _para(Text(v.reason), 6)]
    foot = [f"{label}: {value}" for label, value in (context or {}).items()]
    if same:
        foot.append("every cell: " + ", ".join(f"{a}={axis_text(x)}" for a, x in same.items()))
    if verdicts and verdicts[0].window and not context:
        first, last = verdicts[0].window
        foot.append(f"change: over the window, epochs {first}-{last} (after the warm-up)")
    if has_baseline:
        foot.append("vs const: where the cell ends against predicting the target domain's mean image")
    if any(v.undecided for v in verdicts):
        foot.append(UNDECIDED_NOTE)
    answer = [_para(Text(line, style="bold"), 2) for line in headline(verdicts)]
    foot_lines = [_para(Text(f, style="dim"), 2) for f in foot]
    return Group(table, *answer, *why, Text(""), *foot_lines)


def _summary_table(
    verdicts: Sequence[CellVerdict],
    title: str,
    *,
    vs: bool,
    end: bool = True,
    state: bool = True,
    interval: bool = True,
    fold: bool = False,
) -> Table:
    """The summary's table with the columns asked for (``fold``: values fold to fit, for the narrowest)."""
    conf = f"{verdicts[0].confidence:.0%}" if verdicts else "95%"
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    overflow = "fold" if fold else "ellipsis"  # only the last layout is ever narrower than its content
    table.add_column("cell", overflow="fold", no_wrap=not fold)
    if vs:
        table.add_column("vs const", justify="right", overflow=overflow)
    table.add_column("verdict", overflow=overflow)
    table.add_column(f"change [{conf} CI]" if interval else "change", justify="right", overflow=overflow)
    if end:
        table.add_column("end", justify="right", overflow=overflow)
    table.add_column("expected→seen", overflow=overflow)
    for v in verdicts:
        row: list[str | Text] = [v.cell]
        if vs:
            row.append(vs_text(v))
        row.append(Text(verdict_text(v, state=state), style=_STYLES[v.verdict]))
        row.append(change_text(v, interval=interval).replace(", ", ","))
        if end:
            row.append(end_text(v))
        style = {True: "green", False: "bold red"}.get(v.agrees, "")
        row.append(Text(seen_text(v), style=style))
        table.add_row(*row)
    return table


def _para(text: Text, indent: int) -> Padding:
    """``text`` indented, wrapped at words to the width, never cut (even on a console that soft-wraps)."""
    text.no_wrap, text.overflow = False, "fold"
    return Padding(text, (0, 0, 0, indent))


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
    fields, rows = text_rows(verdicts)
    table = Table(title=title, title_justify="left", show_lines=False)
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


def render_wide(verdicts: Sequence[CellVerdict], *, title: str = "Verdicts") -> Fitted:
    """Every column (:func:`render_table`) where the table fits the console's width; else one block per
    cell, ``column value`` pairs packed to the width (``orch report --wide`` in a narrow terminal or
    piped with ``COLUMNS``)."""
    verdicts = ranked(verdicts)

    def blocks() -> Blocks:
        fields, rows = text_rows(verdicts)
        items = [
            (v.cell, "bold", [(f.header or "", c) for f, c in zip(fields[1:], row[1:], strict=True)])
            for v, row in zip(verdicts, rows, strict=True)
        ]
        return Blocks(items, title=title)

    return Fitted(lambda: render_table(verdicts, title=title), blocks)
