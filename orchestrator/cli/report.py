"""``orch report [MATRIX] [OVERRIDES] [--experiment NAME]``: the verdict table, its views, in any format."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.common import TrackingUri, check_exists, console, fail, paths, tracking_uri
from orchestrator.errors import Fault, is_user_error

if TYPE_CHECKING:
    from orchestrator.matrix import RunSpec
    from orchestrator.report import Selection
    from orchestrator.report.grouping import Grouping
    from orchestrator.verdict import VerdictSettings

__all__ = ["ReportFormat", "report"]


class ReportFormat(StrEnum):
    """What ``orch report`` prints or writes."""

    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    html = "html"


#: Formats that are data only: nothing is drawn, logged or tagged for them.
_DATA_ONLY = (ReportFormat.csv, ReportFormat.json)


def report(
    matrix: Annotated[Path | None, typer.Argument(help="matrix YAML (judges that matrix's runs)")] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="the sweep's matrix overrides, key=value, to judge the runs they made"),
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option(help="an MLflow experiment with orch.cell/orch.seed tags (with MATRIX: its settings)"),
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="metric to judge (default: the matrix's, else cross)")
    ] = None,
    fmt: Annotated[
        ReportFormat, typer.Option("--format", help="what to print or write")
    ] = ReportFormat.table,
    out: Annotated[
        Path | None,
        typer.Option(help="write the report here, one file (default: print; html: reports/ by the store)"),
    ] = None,
    wide: Annotated[
        bool,
        typer.Option("--wide", help="every column (a block a cell where they do not fit; default: summary)"),
    ] = False,
    cells: Annotated[
        list[str] | None, typer.Option("--cells", help="only these cells: a,b or repeated")
    ] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", help="only cells with axis=value (a=1,b=2 or repeated)")
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option("--group-by", help="one row per value of this axis, pooled over the others"),
    ] = None,
    code: Annotated[
        str | None,
        typer.Option(help="judge the runs of this code fingerprint (tag orch.code; a prefix will do)"),
    ] = None,
    sweep_id: Annotated[
        str | None, typer.Option("--sweep", help="judge the runs of this sweep (tag orch.sweep; a prefix)")
    ] = None,
    against_code: Annotated[
        str | None,
        typer.Option("--against-code", help="compare with the runs of this code fingerprint, side by side"),
    ] = None,
    against_sweep: Annotated[
        str | None, typer.Option("--against-sweep", help="compare with the runs of this sweep, side by side")
    ] = None,
    cell_by: Annotated[
        list[str] | None,
        typer.Option(
            "--cell-by",
            help="--experiment: one cell per value of these params or tags, e.g. params.lr,params.width",
        ),
    ] = None,
    seed_by: Annotated[
        str | None,
        typer.Option("--seed-by", help="with --cell-by: the param or tag holding a run's seed (params.seed)"),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="a verdict setting, verdict.KEY=VALUE (repeatable): verdict.warmup=8"),
    ] = None,
    _uri: TrackingUri = None,
) -> None:
    """The verdict table: per cell, does the metric really fall after the warm-up, and how far?

    By default the runs of the code and data installed now are judged; --code and --sweep judge earlier
    ones (made before an edit, or by one sweep); --against-code / --against-sweep put those beside
    today's and mark the cells whose verdict changed. --format csv|json write nothing but the output.

    --experiment NAME judges every run tagged orch.cell and orch.seed, whoever logged it, with the verdict
    settings of the matrix its newest sweep recorded (else the defaults); --cell-by and --seed-by group the
    runs of any MLflow experiment into cells and seeds by their params or tags instead."""
    check_exists(matrix)
    from orchestrator.matrix import parse_where
    from orchestrator.report import Selection

    name, specs, settings = _subject(matrix, overrides or [], experiment)
    grouping = _grouping(cell_by or [], seed_by, specs)
    view = {"cells": cells or (), "where": parse_where(where or []), "group_by": group_by}
    uri = _existing_store()
    settings = _settings(uri, name, settings if matrix is not None else None, metric, sets or [], fmt)
    select = Selection(code, sweep_id, **view, grouping=grouping)
    from orchestrator.tracking.store import shared_searches

    try:
        with shared_searches():  # the verdicts and the budget view read the runs once
            if against_code or against_sweep:
                against = Selection(against_code, against_sweep, **view)
                _comparison(uri, name, settings, specs, against, select, fmt)
                return
            _verdicts(uri, name, settings, specs, select, fmt, out, wide)
            if matrix is not None and specs is not None and fmt is ReportFormat.table and not group_by:
                _budgets(uri, matrix, overrides or [], settings, select, view)
    except Exception as exc:  # an unreachable or broken store, whatever MLflow raises
        from orchestrator.tracking.errors import first_line, from_the_store
        from orchestrator.tracking.reach import redact_url

        if isinstance(exc, typer.Exit | Fault) or is_user_error(exc) or not from_the_store(exc):
            raise  # said already (an unwritable --out), a fault (a locked store), or not the store's
        raise fail(f"cannot read the tracking store {redact_url(uri)}: {first_line(exc)}") from None


def _subject(
    matrix: Path | None, overrides: list[str], experiment: str | None
) -> tuple[str, list[RunSpec] | None, VerdictSettings]:
    """The experiment to judge, the runs the matrix asks for (None: every run) and the matrix's verdict
    settings (the defaults without a matrix)."""
    from orchestrator.matrix import load_matrix
    from orchestrator.verdict import VerdictSettings

    if matrix is None and experiment is None:
        raise fail("give a matrix YAML or --experiment NAME")
    if matrix is None and overrides:
        raise fail(f"overrides ({overrides[0]}) need the matrix YAML they change (verdict settings: --set)")
    specs, settings, name = None, VerdictSettings(), experiment or ""
    if matrix is not None:
        mx, specs = load_matrix(matrix, overrides=overrides)
        settings = mx.verdict
        if experiment is None or experiment == mx.name:
            name = mx.name
        else:  # the matrix's verdict settings over another experiment's runs, whatever their configs
            name, specs = experiment, None
    return name, specs, settings


def _grouping(cell_by: list[str], seed_by: str | None, specs: list[RunSpec] | None) -> Grouping | None:
    """``--cell-by`` / ``--seed-by``: how an experiment judged by name is made into cells and seeds."""
    from orchestrator.report.grouping import Grouping

    if not cell_by and seed_by is None:
        return None
    if specs is not None:
        raise fail("--cell-by and --seed-by group an experiment's runs judged by name: give --experiment")
    if not cell_by:
        raise fail("--seed-by needs --cell-by (which params or tags make a cell)")
    return Grouping.parse(cell_by, seed_by)


def _settings(
    uri: str,
    name: str,
    settings: VerdictSettings | None,
    metric: str | None,
    sets: list[str],
    fmt: ReportFormat,
) -> VerdictSettings:
    """The verdict settings: the matrix's (``settings``), else those its newest sweep recorded (said on a
    table), then ``--metric`` and ``--set``."""
    from orchestrator.matrix import verdict_settings

    if settings is None:
        from orchestrator.report.recorded import recorded_settings

        settings, source = recorded_settings(uri, name)
        if fmt is ReportFormat.table:
            console.print(f"verdict settings: {source}", highlight=False)
    if metric:
        settings = settings.model_copy(update={"metric": metric})
    if sets:
        settings = verdict_settings({"verdict": settings.model_dump()}, sets, "--set")
    return settings


def _existing_store() -> str:
    """The tracking URI; a local store that does not exist yet exits 2 (a report never creates one)."""
    from orchestrator.tracking.uri import sqlite_path

    uri = tracking_uri()
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise fail(f"no tracking store at {uri}: run `orch sweep` first or pass --tracking-uri")
    return uri


def _verdicts(
    uri: str,
    name: str,
    settings: VerdictSettings,
    specs: list[RunSpec] | None,
    select: Selection,
    fmt: ReportFormat,
    out: Path | None,
    wide: bool,
) -> None:
    from orchestrator.report import build_report

    rep = build_report(uri, name, settings, specs=specs, select=select, publish=fmt not in _DATA_ONLY)
    if fmt is ReportFormat.table:
        console.print(rep.table(wide=wide), soft_wrap=False)  # laid out to the width (COLUMNS when piped)
        if rep.figures:
            console.print(f"figures: {paths(rep.figures.values())}", highlight=False)
        if out:
            _write(out, rep.render("markdown"))
        return
    text = rep.render(fmt.value)
    if out is None and fmt is ReportFormat.html:
        out = rep.out_dir / "report.html"
    if out is None:
        console.file.write(text)
        return
    _write(out, text)
    console.print(f"wrote {out}")


def _budgets(
    uri: str, matrix: Path, overrides: list[str], settings: VerdictSettings, select: Selection, view: dict
) -> None:
    """A matrix swept at several budgets (``budget.scale``): its verdicts at each, side by side."""
    from orchestrator.matrix import MatrixError, read_matrix
    from orchestrator.report.budgets import budgets_table, build_budgets

    try:
        mx, root = read_matrix(matrix, overrides)
        scales, rows = build_budgets(
            uri, mx, settings, root=root, select=select, cells=view["cells"], where=view["where"]
        )
    except MatrixError:  # read once already: a scale-1 expansion the matrix cannot make has no budgets
        return
    if len(scales) < 2:
        return
    changed = sum(r.changed for r in rows)
    console.print(budgets_table(rows, scales, title=f"{mx.name}: the verdict at each budget (budget.scale)"))
    console.print(
        f"{changed} of {len(rows)} cells change verdict with the budget" + (" (marked ≠)" if changed else "")
    )


def _comparison(
    uri: str,
    name: str,
    settings: VerdictSettings,
    specs: list[RunSpec] | None,
    before: Selection,
    after: Selection,
    fmt: ReportFormat,
) -> None:
    """``--against-code`` / ``--against-sweep``: both selections' verdicts side by side."""
    import json

    from orchestrator.report import build_comparison
    from orchestrator.report.views import comparison_json, comparison_table

    if fmt not in (ReportFormat.table, ReportFormat.json):
        raise fail(f"a comparison prints as --format table or json, not {fmt.value}")
    rows = build_comparison(uri, name, settings, before=before, after=after, specs=specs)
    labels = (before.describe(), after.describe())
    if fmt is ReportFormat.json:
        console.file.write(json.dumps(comparison_json(rows, labels), indent=2) + "\n")
        return
    changed = sum(r.changed for r in rows)
    console.print(comparison_table(rows, title=f"{name}: {labels[0]} vs {labels[1]}", labels=labels))
    console.print(f"{changed} of {len(rows)} cells changed verdict" + (" (marked ≠)" if changed else ""))


def _write(out: Path, text: str) -> None:
    """Write the rendered report to ``out`` (exit 2 saying why it cannot be written)."""
    from orchestrator.tracking.errors import os_reason

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write the report to {out}: {os_reason(exc)}") from None
