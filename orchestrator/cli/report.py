"""``orch report [MATRIX | --experiment NAME]``: the verdict table, in any format."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import console, fail, tracking_uri

__all__ = ["report"]


def report(
    matrix: Annotated[Path | None, typer.Argument(help="matrix YAML (judges that matrix's runs)")] = None,
    experiment: Annotated[
        str | None, typer.Option(help="any MLflow experiment with orch.cell/orch.seed tags")
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="metric to judge (default: the matrix's, else cross)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | markdown | csv | json | html")] = "table",
    out: Annotated[
        Path | None, typer.Option(help="write the report here (default: print; html: runs/reports/)")
    ] = None,
    code: Annotated[
        str | None,
        typer.Option(help="judge the runs of this code fingerprint (tag orch.code; a prefix will do)"),
    ] = None,
    sweep_id: Annotated[
        str | None, typer.Option("--sweep", help="judge the runs of this sweep (tag orch.sweep; a prefix)")
    ] = None,
) -> None:
    """The verdict table: per cell, does the metric really fall after the warm-up, and how far?

    By default the runs of the code and data installed now are judged; --code and --sweep judge earlier
    ones (made before an edit, or by one sweep), to compare them with today's."""
    from orchestrator.matrix import MatrixError, load_matrix
    from orchestrator.report import FORMATS, ReportError, Selection, build_report
    from orchestrator.tracking import TrackingError
    from orchestrator.tracking.store import sqlite_path
    from orchestrator.verdict import VerdictSettings

    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if (matrix is None) == (experiment is None):
        raise fail("give a matrix YAML or --experiment NAME (one of them)")
    specs = None
    settings = VerdictSettings()
    name = experiment
    if matrix is not None:
        try:
            mx, specs = load_matrix(matrix)
        except MatrixError as exc:
            raise fail(str(exc)) from None
        settings, name = mx.verdict, mx.name
    if metric:
        settings = settings.model_copy(update={"metric": metric})
    uri = tracking_uri()
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise fail(f"no tracking store at {uri}: run `orch sweep` first or pass --tracking-uri")
    try:
        select = Selection(code=code, sweep=sweep_id)
        rep = build_report(
            uri, name, settings, specs=specs, out_dir=out.parent if out else None, select=select
        )
    except (ReportError, TrackingError) as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - an unreachable or broken store, whatever MLflow raises
        raise fail(
            f"cannot read the tracking store {uri}: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from None
    if fmt == "table":
        console.print(rep.table())
        console.print(f"figures: {', '.join(str(p) for p in rep.figures.values())}")
        if out:
            _write(out, rep.render("markdown"))
        return
    text = rep.render(fmt)
    if out is None and fmt == "html":
        out = rep.out_dir / "report.html"
    if out is None:
        sys.stdout.write(text)
        return
    _write(out, text)
    console.print(f"wrote {out}")


def _write(out: Path, text: str) -> None:
    """Write the rendered report to ``out`` (exit 2 saying why it cannot be written)."""
    from orchestrator.tracking.errors import os_reason

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    except OSError as exc:
        raise fail(f"cannot write the report to {out}: {os_reason(exc)}") from None
