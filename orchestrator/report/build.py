"""`orch report`: verdicts for a matrix or an experiment, rendered, with figures logged to the sweep."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from orchestrator.matrix import RunSpec
from orchestrator.names import folder_name
from orchestrator.report.collect import CellData, ReportError, Selection, collect_cells, judge_cells
from orchestrator.report.context import report_context
from orchestrator.report.html import to_html
from orchestrator.report.layout import Fitted
from orchestrator.report.render import to_csv, to_json, to_markdown
from orchestrator.report.terminal import render_summary, render_wide
from orchestrator.report.views import Comparison, compare, group_cells, select_cells
from orchestrator.tracking import Tracker
from orchestrator.tracking.errors import os_reason
from orchestrator.tracking.images import image_columns
from orchestrator.tracking.store import follow_move, sqlite_path
from orchestrator.tracking.vocabulary import TAG_VERDICT, TAG_VERDICT_CHANGE, cell_metric
from orchestrator.verdict import CellVerdict, VerdictSettings

FORMATS = ("table", "markdown", "csv", "json", "html")


@dataclass
class Report:
    experiment: str
    settings: VerdictSettings
    verdicts: list[CellVerdict]
    figures: dict[str, Path]
    out_dir: Path
    context: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.experiment}: does {self.settings.metric} fall after the warm-up?"

    def table(self, *, wide: bool = False) -> Table | Group | Fitted:
        """The terminal view: the summary that fits the width, or with ``wide`` every column (one block a
        cell where the table does not fit)."""
        if wide:
            return render_wide(self.verdicts, title=self.title)
        return render_summary(self.verdicts, title=self.title, context=self.context)

    def render(self, fmt: str) -> str:
        if fmt == "markdown":
            return to_markdown(self.verdicts, title=self.title, context=self.context)
        if fmt == "csv":
            return to_csv(self.verdicts)
        if fmt == "json":
            return to_json(self.verdicts, title=self.title, context=self.context)
        if fmt == "html":
            return to_html(self.verdicts, self.figures, title=self.title, context=self.context)
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
    publish: bool = True,
) -> Report:
    """Judge every cell of ``experiment`` and draw its figures.

    Figures (the metric's curves per cell with a band over seeds, their floors and constant-prediction
    baselines; the last epoch's ``x_a_from_b`` per cell) are written to ``out_dir`` (default
    ``reports/<experiment>`` beside an SQLite store, wherever it is, else ``runs/reports/<experiment>``; in
    a subfolder named for the settings and selection, :func:`report_label`, when they are not the sweep's
    own report). A figure that cannot be drawn this time (no run logged images) leaves no older one in its
    place. A store moved or copied as a folder is followed first
    (:func:`~orchestrator.tracking.store.follow_move`): its images are read, and what is logged is
    written, in its folder now, never in the old one.

    With ``record`` (the sweep's own report), the verdicts and the settings that produced them are logged
    to the sweep's parent run under ``report/`` (also as a table), the report in markdown becomes its
    description and each cell's results its metrics (:data:`CELL_METRICS`), and each judged run gets its
    cell's verdict as tags (``orch.verdict``, ``orch.verdict_change``) so that ``mlflow ui`` can filter by
    it; the runs of an experiment with no sweep parent run (logged by another tool) get them from any report.
    Without, they go to the parent run (``parent_run_id``, else the experiment's latest sweep) under
    ``reports/<label>/``, a label of the settings and selection: another report never overwrites the
    sweep's record, nor one made with other settings.

    ``select`` picks the runs and the cells: its ``cells`` and ``where`` (axis -> value) keep some cells; its
    ``group_by`` judges one pseudo-cell per value of that axis, every seed of every cell with the value
    pooled (the axis's marginal effect over the others, :func:`~orchestrator.report.views.group_cells`).

    Without ``publish`` (``--format csv|json``) nothing is written anywhere: no figure, nothing logged to
    MLflow, no tag set; only the verdicts and their context are returned.

    Raises:
        ReportError: unknown experiment, no runs, the metric was never logged, every run failed, a
            selection that names no cell or axis, or the figures cannot be written (nothing is logged).
        orchestrator.tracking.TrackingError: the store's server cannot be reached.
    """
    tracker = Tracker(follow_move(tracking_uri) if publish else tracking_uri)
    data, verdicts = _judge(tracker, experiment, settings, specs, select)
    label = report_label(settings, select)
    out = out_dir or reports_root(tracker.uri) / folder_name(experiment) / ("" if record else label)
    parent = parent_run_id or tracker.latest_sweep(experiment)
    context = report_context(tracker, experiment, parent, settings, verdicts, select, data)
    report = Report(experiment, settings, verdicts, {}, out, context)
    if not publish:
        return report
    try:
        report.figures = _figures(tracker, experiment, settings, data, verdicts, out)
    except OSError as exc:  # a read-only runs/, a file in the way, a full disk
        raise ReportError(f"cannot write figures to {out}: {os_reason(exc)}") from None
    if parent:
        folder = "report" if record else f"reports/{label}"
        for path in report.figures.values():
            tracker.log_artifact(parent, path, folder)
        tracker.log_text(parent, report.render("json"), f"{folder}/verdicts.json")
        tracker.log_text(
            parent, json.dumps(_provenance(settings, select), indent=2), f"{folder}/settings.json"
        )
    if record and parent:
        _answer_in_mlflow(tracker, parent, report)
        tracker.log_table(parent, _table(verdicts), "report/verdicts_table.json")
    if record or parent is None:  # the sweep's own report, or runs no orch sweep records (another tool's)
        for cell, verdict in zip(data, verdicts, strict=True):
            change = "" if verdict.rel_change is None else f"{verdict.rel_change:+.1%}"
            tags = {TAG_VERDICT: verdict.verdict.value, TAG_VERDICT_CHANGE: change}
            for run_id in cell.run_ids:
                tracker.set_tags(run_id, tags)
    return report


def build_comparison(
    tracking_uri: str,
    experiment: str,
    settings: VerdictSettings,
    *,
    before: Selection,
    after: Selection = Selection(),  # noqa: B008 - frozen
    specs: Sequence[RunSpec] | None = None,
) -> list[Comparison]:
    """The same cells judged on two selections of their runs (two code versions, two sweeps), side by side
    (each selection shows its own cells: give both the same).

    Nothing is written. A cell judged on one side only is listed as changed.

    Raises:
        ReportError: as :func:`build_report`, for either side (the message says which).
    """
    tracker = Tracker(tracking_uri)
    sides = []
    for select in (before, after):
        try:
            sides.append(_judge(tracker, experiment, settings, specs, select)[1])
        except ReportError as exc:
            raise ReportError(f"{select.describe()}: {exc}") from None
    return compare(*sides)


def reports_root(uri: str) -> Path:
    """Where reports go by default: ``reports/`` beside an SQLite store (so a report never writes outside
    the store it reads, whatever the working folder), else ``runs/reports``."""
    db = sqlite_path(uri)
    return (db.parent if db is not None else Path("runs")) / "reports"


def _judge(
    tracker: Tracker,
    experiment: str,
    settings: VerdictSettings,
    specs: Sequence[RunSpec] | None,
    select: Selection,
) -> tuple[list[CellData], list[CellVerdict]]:
    """The selected cells' data and their verdicts."""
    data = collect_cells(tracker, experiment, settings.metric, specs=specs, select=select)
    if select.cells or select.where:
        data = select_cells(data, names=select.cells, where=dict(select.where or {}))
    if select.group_by:
        data = group_cells(data, select.group_by)
    return data, judge_cells(data, settings)


def report_label(settings: VerdictSettings, select: Selection) -> str:
    """A folder name a user reads, for the settings, selection and view of a report: the metric, every
    verdict setting that is not the default, then the selection (``cross-warmup8-min_change0.1``,
    ``cross-cells-a+b-by-lr-code-3f2a``). Equal inputs give equal labels and different ones different
    labels; a label longer than :data:`_LABEL_MAX`, or with characters a folder name should not have (they
    become ``_``), keeps its start and ends in a hash of the whole."""
    defaults = VerdictSettings().model_dump(mode="json")
    parts = [settings.metric]
    for name, value in settings.model_dump(mode="json").items():
        if name == "metric" or value == defaults[name]:
            continue
        if name == "guards":
            parts += [f"guard-{_guard_label(g)}" for g in value] or ["no-guards"]
            continue
        parts.append(f"{name}{_label_value(value)}")
    if select.cells:
        parts.append("cells-" + "+".join(select.cells))
    for axis, value in sorted((select.where or {}).items()):
        parts.append(f"where-{axis}={value}")
    if select.group_by:
        parts.append(f"by-{select.group_by}")
    if select.code:
        parts.append(f"code-{select.code}")
    if select.sweep:
        parts.append(f"sweep-{select.sweep}")
    spelled = "-".join(parts)
    label = re.sub(r"[^A-Za-z0-9._=+-]+", "_", spelled)
    if len(label) > _LABEL_MAX or label != spelled:  # a hash keeps apart what the short form would not
        whole = json.dumps(
            {**_provenance(settings, select), **select.view()},
            sort_keys=True,
        )
        label = f"{label[: _LABEL_MAX - 9]}-{hashlib.sha256(whole.encode()).hexdigest()[:8]}"
    return label


#: Longest :func:`report_label` spelled out in full.
_LABEL_MAX = 80


def _label_value(value: Any) -> str:
    if isinstance(value, bool):
        return "" if value else "-off"
    if value is None:
        return "-none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _guard_label(guard: dict[str, Any]) -> str:
    bounds = [f"{side}{_label_value(guard[side])}" for side in ("min", "max") if guard.get(side) is not None]
    return "-".join([guard["metric"], *bounds])


def _provenance(settings: VerdictSettings, select: Selection) -> dict[str, Any]:
    return {"verdict": settings.model_dump(mode="json"), "runs": select.describe()}


#: What the sweep's parent run logs of each cell as a metric, ``cell.<cell>.<name>`` (README "MLflow"):
#: name -> the verdict's field (where the metric ends, its relative change over the window, and where it
#: ends against the constant prediction).
CELL_METRICS = {"end": "end", "change": "rel_change", "vs_const": "vs_baseline"}


def _answer_in_mlflow(tracker: Tracker, parent: str, report: Report) -> None:
    """The answer where `mlflow ui` shows a run first: the report in markdown as the parent run's
    description (the answer, the table, the context), and each cell's results as its metrics."""
    cut = "*Cut at MLflow's limit: the whole report is `report/verdicts.json`, or run `orch report`.*"
    tracker.describe_run(parent, report.render("markdown"), cut=cut)
    values = {
        cell_metric(v.cell, name): value
        for v in report.verdicts
        for name, field in CELL_METRICS.items()
        if (value := getattr(v, field)) is not None and math.isfinite(value)
    }
    if values:
        tracker.log_values(parent, values)


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
    _forget(out / f"{settings.metric}_curves.png", keep=bool(curves))
    if curves:
        figures["curves"] = out / f"{settings.metric}_curves.png"
        warmups = {v.warmup for v in verdicts}
        args = dict(
            floor_by_cell={v.cell: v.floor for v in verdicts if v.floor is not None},
            baseline_by_cell={v.cell: v.baseline for v in verdicts if v.baseline is not None},
            warmup=warmups.pop() if len(warmups) == 1 else None,
            title=f"{experiment}: {settings.metric} per epoch (mean, band over seeds)",
        )
        digest = _digest([{k: [c.tolist() for c in v] for k, v in curves.items()}, settings.metric, args])
        if not _unchanged(figures["curves"], digest):  # the same curves draw the same figure
            from orchestrator.report.plots import plot_curves  # matplotlib: only to draw

            plot_curves(curves, settings.metric, figures["curves"], **args)
            _remember(figures["curves"], digest)
    shown = [c for c in cells if c.run_ids]
    png = out / "x_a_from_b_last_epoch.png"
    clean = {v.cell: v.floor is not None for v in verdicts}
    labels = {c.name: image_columns("x_a_from_b", clean=bool(clean.get(c.name))) for c in shown}
    captions = {c.name: f"seed {c.seeds[0]}, last epoch" for c in shown}
    digest = _digest([[c.name, c.run_ids[0]] for c in shown])  # ended runs' images do not change
    if shown and _unchanged(png, digest):
        figures["x_a_from_b"] = png
        return figures
    images = {c.name: grid for c in shown if (grid := tracker.images(c.run_ids[0], "x_a_from_b")) is not None}
    _forget(png, keep=bool(images))  # an older report's grid is not left beside this report's figures
    if images:
        figures["x_a_from_b"] = png
        from orchestrator.report.plots import plot_images

        plot_images(images, png, column_labels=labels, captions=captions)
        _remember(png, digest)
    return figures


def _forget(png: Path, *, keep: bool) -> None:
    """Unless ``keep``, remove the figure ``png`` of an older report and its digest (not redrawn now)."""
    if not keep:
        png.unlink(missing_ok=True)
        png.with_suffix(".digest").unlink(missing_ok=True)


def _digest(data: Any) -> str:
    """The digest of a figure's inputs and of the code that draws it (a new drawing redraws it)."""
    text = json.dumps([data, _drawing_code()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def _drawing_code() -> str:
    """The digest of the drawing code's file, read without importing it (and matplotlib)."""
    spec = importlib.util.find_spec("orchestrator.report.plots")
    assert spec is not None and spec.origin is not None
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()


def _unchanged(png: Path, digest: str) -> bool:
    """The figure at ``png`` was drawn from the inputs whose digest is ``digest`` (its sidecar says so)."""
    try:
        return png.exists() and png.with_suffix(".digest").read_text() == digest
    except OSError:
        return False


def _remember(png: Path, digest: str) -> None:
    png.with_suffix(".digest").write_text(digest)
