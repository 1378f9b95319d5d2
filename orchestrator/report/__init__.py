"""`orch report`: from the tracking store to verdicts, rendered.

- :mod:`~orchestrator.report.collect`: the store's runs -> each cell's curves over its seeds -> verdicts.
- :mod:`~orchestrator.report.build`: :func:`build_report`, the verdicts with their figures, logged to the
  sweep.
- :mod:`~orchestrator.report.render`: the answer in words, markdown, CSV and JSON, from one field table.
- :mod:`~orchestrator.report.terminal`: the terminal's views, laid out to its width
  (:mod:`~orchestrator.report.layout`, which `orch sweep --dry-run`'s plan view uses too).
- :mod:`~orchestrator.report.context`: what a report is about (data, budget, commit...), in every format.
- :mod:`~orchestrator.report.html`: the HTML page (the answer, the context, the table, the figures).
- :mod:`~orchestrator.report.plots`: the curve and image figures.
"""

from orchestrator.report.build import FORMATS, Report, build_comparison, build_report
from orchestrator.report.collect import CellData, ReportError, Selection, collect_cells, judge_cells
from orchestrator.report.html import to_html
from orchestrator.report.plots import curves_figure, images_figure, plot_curves, plot_images
from orchestrator.report.render import headline, to_csv, to_json, to_markdown
from orchestrator.report.terminal import render_summary, render_table, render_wide

__all__ = [
    "FORMATS",
    "CellData",
    "Report",
    "ReportError",
    "Selection",
    "build_comparison",
    "build_report",
    "collect_cells",
    "curves_figure",
    "images_figure",
    "judge_cells",
    "plot_curves",
    "headline",
    "plot_images",
    "render_summary",
    "render_table",
    "render_wide",
    "to_csv",
    "to_html",
    "to_json",
    "to_markdown",
]
