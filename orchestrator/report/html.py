"""The HTML report: one self-contained page that opens with the answer and the sweep's context.

It reads top to bottom as a researcher asks: what is the answer
(:func:`~orchestrator.report.render.headline`), on what (the sweep, the code, the budget, the thresholds,
where the runs are), per cell (the short table, each cell's reason under its row), the figures (captions
in words, image columns labelled), and last every column.
The figures are embedded as base64, so the page is one file that can be mailed or archived.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

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
from orchestrator.verdict import CellVerdict

__all__ = ["FIGURE_CAPTIONS", "to_html"]

#: What each figure of a report shows, in words (keys are :func:`~orchestrator.report.build.build_report`'s).
FIGURE_CAPTIONS = {
    "curves": "The judged metric per epoch: mean over seeds, band from the lowest to the highest seed; the "
    "warm-up is shaded; dashed: the floor (clean target against noisy target); dotted: the constant "
    "prediction (the target domain's mean image).",
    "x_a_from_b": "x_a_from_b at the last epoch of each cell's first seed: one validation pair a row; "
    "columns: the source image (domain b), the cross output, the noisy target (domain a) and, where known, "
    "the clean target.",
}

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1300px}"
    ".scroll{overflow-x:auto;max-width:100%;margin:1em 0}"  # a wide table scrolls, the page does not
    "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em;"
    "text-align:left;vertical-align:top}th{background:#f3f3f3}"
    "td.num,th.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}"
    "table.verdicts td{white-space:nowrap}"  # a verdict or "pass → fail ✗" on one line; the box scrolls
    "tr.why td{border-top:none;color:#444;font-size:.9em;white-space:normal}"
    ".falls{color:#17803d}.flat{color:#a36a00}.rises{color:#b3261e}.diverged{color:#b3261e;"
    "font-weight:bold}.inconclusive{color:#777}.agree-false{color:#b3261e;font-weight:bold}"
    ".agree-true{color:#17803d}.answer{font-size:1.1em;line-height:1.5}dl{display:grid;"
    "grid-template-columns:max-content auto;gap:.2em 1em}dt{color:#555}dd{margin:0}"
    "figure{margin:1.5em 0}img{max-width:100%}figcaption{color:#444;max-width:60em}"
    "details{margin-top:2em}"
)


def to_html(
    verdicts: Sequence[CellVerdict],
    figures: Mapping[str, Path] | None = None,
    *,
    title: str = "Verdicts",
    context: Mapping[str, str] | None = None,
) -> str:
    """A self-contained HTML page of the verdicts.

    Args:
        verdicts: Cell verdicts (shown ranked, as the terminal shows them).
        figures: Key -> PNG path (keys of :data:`FIGURE_CAPTIONS` get their caption in words).
        title: Page title and heading.
        context: Label -> value lines of the sweep's context (sweep, commit, date, budget...), shown
            under the answer; values that are URLs become links.

    Returns:
        HTML text.
    """
    esc = html.escape
    verdicts = ranked(verdicts)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
        '<div class="answer">' + "".join(f"<p>{esc(line)}</p>" for line in headline(verdicts)) + "</div>",
    ]
    if context:
        parts.append("<dl>")
        for label, value in context.items():
            shown = f'<a href="{esc(value)}">{esc(value)}</a>' if value.startswith("http") else esc(value)
            parts.append(f"<dt>{esc(label)}</dt><dd>{shown}</dd>")
        parts.append("</dl>")
    parts += _summary_table(verdicts)
    for key, path in (figures or {}).items():
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        caption = FIGURE_CAPTIONS.get(key, key)
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>"
        )
    parts += _full_table(verdicts)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _summary_table(verdicts: Sequence[CellVerdict]) -> list[str]:
    """The short table, with each cell's axis values and reason in a row under its own."""
    esc = html.escape
    differ, same = split_axes(verdicts)
    conf = f"{verdicts[0].confidence:.0%}" if verdicts else "95%"
    has_baseline = any(v.vs_baseline is not None for v in verdicts)
    heads = ["cell", *(["vs constant"] if has_baseline else []), "verdict", f"change [{conf} CI]", "end"]
    heads.append("expected → seen")
    numeric = ("vs constant", f"change [{conf} CI]", "end")
    out = [
        '<div class="scroll"><table class="verdicts">',
        "<thead><tr>"
        + "".join(f'<th class="num">{h}</th>' if h in numeric else f"<th>{h}</th>" for h in heads)
        + "</tr></thead>",
    ]
    out.append("<tbody>")
    for v in verdicts:
        cells = [f"<td><b>{esc(v.cell)}</b></td>"]
        if has_baseline:
            cells.append(f'<td class="num">{esc(vs_text(v))}</td>')
        cells.append(f'<td class="{v.verdict.value}">{esc(verdict_text(v))}</td>')
        cells.append(f'<td class="num">{esc(change_text(v))}</td>')
        cells.append(f'<td class="num">{esc(end_text(v))}</td>')
        cells.append(f'<td class="agree-{str(v.agrees).lower()}">{esc(seen_text(v, " → "))}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
        axes = "  ".join(f"{a}={axis_text(v.axes[a])}" for a in differ if a in v.axes)
        notes = "".join(f"<br><small>{esc(n)}</small>" for n in v.notes)
        why = (f"<small>{esc(axes)}</small><br>" if axes else "") + esc(v.reason) + notes
        out.append(f'<tr class="why"><td colspan="{len(heads)}">{why}</td></tr>')
    out.append("</tbody></table></div>")
    if same:
        out.append("<p><small>Every cell: " + esc(", ".join(f"{a}={axis_text(x)}" for a, x in same.items())))
        out.append("</small></p>")
    if any(v.undecided for v in verdicts):
        out.append(f"<p><small>{esc(UNDECIDED_NOTE)}</small></p>")
    return out


def _full_table(verdicts: Sequence[CellVerdict]) -> list[str]:
    """Every column, folded away under a summary line."""
    esc = html.escape
    fields, rows = text_rows(verdicts)
    num = [' class="num"' if f.numeric else "" for f in fields]
    out = ["<details><summary>All columns</summary>", '<div class="scroll"><table class="columns">']
    heads = "".join(f"<th{n}>{esc(f.header or '')}</th>" for f, n in zip(fields, num, strict=True))
    out.append(f"<thead><tr>{heads}</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td{n}>{esc(c)}</td>" for c, n in zip(row, num, strict=True)) + "</tr>")
    out.append("</tbody></table></div></details>")
    return out
