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
- :mod:`~orchestrator.report.selection`: which runs and cells a report judges (:class:`Selection`).

Names are imported on first use: building a :class:`Selection` loads neither MLflow nor matplotlib.
"""

from __future__ import annotations

from orchestrator.lazy import lazy_attributes

__all__, __getattr__ = lazy_attributes(
    __name__,
    {
        "build": ("FORMATS", "Report", "build_comparison", "build_report"),
        "collect": ("CellData", "ReportError", "collect_cells", "judge_cells"),
        "selection": ("Selection",),
        "html": ("to_html",),
        "plots": ("curves_figure", "images_figure", "plot_curves", "plot_images"),
        "render": ("headline", "to_csv", "to_json", "to_markdown"),
        "terminal": ("render_summary", "render_table", "render_wide"),
    },
)
