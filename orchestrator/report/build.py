"""`orch report`: verdicts for a matrix or an experiment, rendered, with figures logged to the sweep."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.table import Table

from orchestrator.matrix import RunSpec
from orchestrator.report.collect import ReportError, collect_cells, judge_cells
from orchestrator.report.plots import plot_curves, plot_images
from orchestrator.report.render import render_table, to_csv, to_html, to_json, to_markdown
from orchestrator.tracking import Tracker
from orchestrator.verdict import CellVerdict, VerdictSettings

__all__ = ["FORMATS", "Report", "ReportError", "build_report"]

FORMATS = ("table", "markdown", "csv", "json", "html")


@dataclass
class Report:
    experiment: str
    settings: VerdictSettings
    verdicts: list[CellVerdict]
    figures: dict[str, Path]
    out_dir: Path

    @property
    def title(self) -> str:
        return f"{self.experiment}: does {self.settings.metric} fall after the warm-up?"

    def table(self) -> Table:
        return render_table(self.verdicts, title=self.title)

    def render(self, fmt: str) -> str:
        if fmt == "markdown":
            return to_markdown(self.verdicts, title=self.title)
        if fmt == "csv":
            return to_csv(self.verdicts)
        if fmt == "json":
            return to_json(self.verdicts)
        if fmt == "html":
            return to_html(self.verdicts, self.figures, title=self.title)
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def build_report(
    tracking_uri: str,
    experiment: str,
    settings: VerdictSettings,
    *,
    specs: Sequence[RunSpec] | None = None,
    parent_run_id: str | None = None,
    out_dir: Path | None = None,
) -> Report:
    """Judge every cell of ``experiment`` and draw its figures.

    Figures (the metric's curves per cell with a band over seeds; the last epoch's ``x_a_from_b`` per
    cell) are written to ``out_dir`` (default ``runs/reports/<experiment>``) and logged to the sweep's
    parent run (``parent_run_id``, else the experiment's latest sweep).

    Raises:
        ReportError: unknown experiment, no runs, or the metric was never logged.
    """
    tracker = Tracker(tracking_uri)
    cells = collect_cells(tracker, experiment, settings.metric, specs=specs)
    verdicts = judge_cells(cells, settings)
    out = out_dir or Path("runs") / "reports" / experiment.replace("/", "_")
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}
    curves = {c.name: c.curves for c in cells if c.curves}
    if curves:
        floors = {v.cell: v.floor for v in verdicts if v.floor is not None and np.isfinite(v.floor)}
        figures["curves"] = out / f"{settings.metric}_curves.png"
        warmups = {v.warmup for v in verdicts}
        plot_curves(
            curves,
            settings.metric,
            figures["curves"],
            floor_by_cell=floors,
            warmup=warmups.pop() if len(warmups) == 1 else None,
            title=f"{experiment}: {settings.metric} per epoch (mean, band over seeds)",
        )
    images = {}
    for cell in cells:
        if cell.run_ids:
            grid = tracker.images(cell.run_ids[0], "x_a_from_b")
            if grid is not None:
                images[cell.name] = grid
    if images:
        figures["x_a_from_b"] = out / "x_a_from_b_last_epoch.png"
        plot_images(images, figures["x_a_from_b"])
    parent = parent_run_id or tracker.latest_sweep(experiment)
    if parent:
        for path in figures.values():
            tracker.log_artifact(parent, path, "report")
        tracker.log_text(parent, to_json(verdicts), "report/verdicts.json")
    return Report(experiment, settings, verdicts, figures, out)
