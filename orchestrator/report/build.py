"""`orch report`: verdicts for a matrix or an experiment, rendered, with figures logged to the sweep."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from orchestrator.matrix import RunSpec
from orchestrator.report.collect import ReportError, Selection, collect_cells, judge_cells
from orchestrator.report.plots import plot_curves, plot_images
from orchestrator.report.render import render_table, to_csv, to_html, to_json, to_markdown
from orchestrator.tracking import Tracker
from orchestrator.tracking.errors import os_reason
from orchestrator.tracking.vocabulary import TAG_VERDICT, TAG_VERDICT_CHANGE
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
    select: Selection = Selection(),  # noqa: B008 - frozen
    record: bool = False,
) -> Report:
    """Judge every cell of ``experiment`` and draw its figures.

    Figures (the metric's curves per cell with a band over seeds, their floors and constant-prediction
    baselines; the last epoch's ``x_a_from_b`` per cell) are written to ``out_dir`` (default
    ``runs/reports/<experiment>``, in a subfolder named for the settings when they are not the sweep's).

    With ``record`` (the sweep's own report), the verdicts and the settings that produced them are logged
    to the sweep's parent run under ``report/`` (also as a table), and each judged run gets its cell's
    verdict as tags (``orch.verdict``, ``orch.verdict_change``) so that ``mlflow ui`` can filter by it.
    Without, they go to the parent run (``parent_run_id``, else the experiment's latest sweep) under
    ``reports/<label>/``, a label of the settings and selection: another report never overwrites the
    sweep's record, nor one made with other settings.

    Raises:
        ReportError: unknown experiment, no runs, the metric was never logged, every run failed, or the
            figures cannot be written (nothing is logged then).
        orchestrator.tracking.TrackingError: the store's server cannot be reached.
    """
    tracker = Tracker(tracking_uri)
    cells = collect_cells(tracker, experiment, settings.metric, specs=specs, select=select)
    verdicts = judge_cells(cells, settings)
    label = _label(settings, select)
    out = out_dir or Path("runs") / "reports" / experiment.replace("/", "_") / ("" if record else label)
    try:
        figures = _figures(tracker, experiment, settings, cells, verdicts, out)
    except OSError as exc:  # a read-only runs/, a file in the way, a full disk
        raise ReportError(f"cannot write figures to {out}: {os_reason(exc)}") from None
    parent = parent_run_id or tracker.latest_sweep(experiment)
    if parent:
        folder = "report" if record else f"reports/{label}"
        for path in figures.values():
            tracker.log_artifact(parent, path, folder)
        tracker.log_text(parent, to_json(verdicts), f"{folder}/verdicts.json")
        tracker.log_text(
            parent, json.dumps(_provenance(settings, select), indent=2), f"{folder}/settings.json"
        )
    if record and parent:
        tracker.log_table(parent, _table(verdicts), "report/verdicts_table.json")
        for cell, verdict in zip(cells, verdicts, strict=True):
            change = "" if verdict.rel_change is None else f"{verdict.rel_change:+.1%}"
            tags = {TAG_VERDICT: verdict.verdict.value, TAG_VERDICT_CHANGE: change}
            for run_id in cell.run_ids:
                tracker.set_tags(run_id, tags)
    return Report(experiment, settings, verdicts, figures, out)


def _label(settings: VerdictSettings, select: Selection) -> str:
    """A short name for the settings and selection of a report (equal inputs, equal label)."""
    text = json.dumps(_provenance(settings, select), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _provenance(settings: VerdictSettings, select: Selection) -> dict[str, Any]:
    return {"verdict": settings.model_dump(mode="json"), "runs": select.describe()}


def _table(verdicts: Sequence[CellVerdict]) -> dict[str, list[Any]]:
    """The verdicts as columns, for MLflow's table view of the parent run."""
    return {
        "cell": [v.cell for v in verdicts],
        "verdict": [v.verdict.value for v in verdicts],
        "state": [v.state or "" for v in verdicts],
        "rel_change": [v.rel_change for v in verdicts],
        "end": [v.end for v in verdicts],
        "vs_baseline": [v.vs_baseline for v in verdicts],
        "expected": [v.expected or "" for v in verdicts],
        "observed": [v.observed or "" for v in verdicts],
        "reason": [v.reason for v in verdicts],
    }


def _figures(
    tracker: Tracker,
    experiment: str,
    settings: VerdictSettings,
    cells: Sequence[Any],
    verdicts: Sequence[CellVerdict],
    out: Path,
) -> dict[str, Path]:
    """The curve figure and the last image grids, written to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}
    curves = {c.name: c.curves for c in cells if c.curves}
    if curves:
        figures["curves"] = out / f"{settings.metric}_curves.png"
        warmups = {v.warmup for v in verdicts}
        plot_curves(
            curves,
            settings.metric,
            figures["curves"],
            floor_by_cell={v.cell: v.floor for v in verdicts if v.floor is not None},
            baseline_by_cell={v.cell: v.baseline for v in verdicts if v.baseline is not None},
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
    return figures
