"""``orch diagnose CONFIG [STEPS]``: the note's diagnostics in one command.

A thin wrapper over :func:`model.diagnose.diagnose`: validate the input (exit 2, one message, nothing
written), train STEPS steps while measuring, print a table with one reading per item (or ``--json``),
write the figures to ``--out`` and, with tracking on, log figures, JSON and per-step figures to a run in
the MLflow experiment ``orch-diagnose``. Registered by ``orchestrator.cli`` as ``app.command()(diagnose)``.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.common import TrackingUri

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from model.config import RunConfig
    from model.diagnose import DiagnosisReport

__all__ = ["EXPERIMENT", "diagnose", "parse_steps", "render_tables"]

EXPERIMENT = "orch-diagnose"
"""MLflow experiment of the diagnosis runs."""


def parse_steps(text: str) -> int:
    """STEPS as a whole number >= 1.

    Raises:
        ValueError: with the message the user sees.
    """
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"STEPS must be a whole number of training steps >= 1, got {text!r}") from None
    if value < 1:
        raise ValueError(f"STEPS must be >= 1 (training steps to diagnose), got {value}")
    return value


def _fmt(x: float | None, digits: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return format(x, digits)


def render_tables(report: DiagnosisReport, title: str) -> list[Table]:
    """The readings table, the gradient table at the end and, with ``every``, the per-step table."""
    from rich.table import Table
    from rich.text import Text

    from model.diagnose import MODULES, TERMS

    main = Table(title=title, title_justify="left", show_lines=False)
    main.add_column("item", style="bold", no_wrap=True)
    main.add_column(f"step {report.start.step}", justify="right", max_width=30)
    main.add_column(f"step {report.end.step}", justify="right", max_width=30)
    main.add_column("", no_wrap=True)
    main.add_column("reading", overflow="fold")
    for r in report.readings:
        flag = Text("!", style="bold yellow") if r.alert else Text("")
        main.add_row(r.item, r.start, r.end, flag, Text(r.reading, style="yellow" if r.alert else ""))

    g = report.end.gradients
    mods = [m for m in MODULES if m != "discriminator" or "adv" in g.present]
    grad = Table(
        title=f"gradient norms at step {report.end.step}: weighted / unweighted",
        title_justify="left",
    )
    grad.add_column("term", style="bold")
    grad.add_column("weight", justify="right")
    for m in mods:
        grad.add_column(m, justify="right")
    for term in TERMS:
        if term not in g.present:
            grad.add_row(term, "off", *["-" for _ in mods])
            continue
        cells = [f"{_fmt(g.weighted[term][m])} / {_fmt(g.unweighted[term][m])}" for m in mods]
        grad.add_row(term, f"{g.weights[term]:g}", *cells)
    grad.add_row("total", "", *[_fmt(g.total[m]) for m in mods])
    ratios = [
        f"{dec} {_fmt(g.ratio(dec), '.2g')}x ({_fmt(g.ratio(dec, weighted=False), '.2g')}x)"
        for dec in ("decoder_a", "decoder_b")
    ]
    grad.caption = "weighted: of weight * term, as it enters the total\ncross/recon: " + ", ".join(ratios)
    grad.caption_justify = "left"
    tables = [main, grad]

    if report.every:
        strategy = report.config.trainer.cross_domain_strategy
        per = Table(title=f"per step (skip reliance: {strategy})", title_justify="left")
        cols = ("step", "content", "probe", "recon_a", "recon_b", "cross_a", "cross_b", "grad x/r a",
                "grad x/r b", "reliance a", "reliance b", "latent-only a", "latent-only b")  # fmt: skip
        for c in cols:
            per.add_column(c, justify="right")
        for s in report.snapshots:
            per.add_row(
                str(s.step),
                _fmt(s.errors["content"]),
                f"{100 * s.probe.accuracy:.0f}%",
                *[_fmt(s.errors[k]) for k in ("recon_a", "recon_b", "cross_a", "cross_b")],
                *[_fmt(s.gradients.ratio(d), ".2g") for d in ("decoder_a", "decoder_b")],
                *[_fmt(s.reliance[strategy][d], ".0%") for d in ("decoder_a", "decoder_b")],
                *[_fmt(s.latent_only[f"latent_only_{d}"]) for d in "ab"],
            )
        tables.append(per)
    return tables


def _step_metrics(report: DiagnosisReport) -> dict[int, dict[str, float]]:
    """Per training step, the figures to log as metrics (snapshots and training-batch losses)."""
    steps: dict[int, dict[str, float]] = {}
    for s in report.snapshots:
        steps.setdefault(s.step, {}).update(s.flat())
    for row in report.train_losses:
        step = int(row["step"])
        values = {f"train.{k}": float(v) for k, v in row.items() if k != "step" and math.isfinite(float(v))}
        steps.setdefault(step, {}).update(values)
    return steps


def _write_figures(report: DiagnosisReport, directory: Path) -> list[Path]:
    from model.diagnose import plot_report

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in plot_report(report).items():
        path = directory / f"{name}.png"
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def _track(
    report: DiagnosisReport, uri: str, name: str, figures: list[Path], document: dict[str, Any]
) -> str:
    """Log the diagnosis to a new run in :data:`EXPERIMENT`; returns its run id."""
    from model.trainer import EpochResult
    from orchestrator.tracking import RunKind, RunStatus, Tracker, run_tags

    tracker = Tracker(uri)
    run_id = tracker.start_run(
        EXPERIMENT, report.config, name=name, tags=run_tags(RunKind.DIAGNOSE, steps=report.steps)
    )
    try:
        for step, metrics in sorted(_step_metrics(report).items()):
            tracker.log_epoch(run_id, EpochResult(step, metrics))
        tracker.log_text(run_id, json.dumps(document, indent=2), "diagnosis.json")
        lines = [f"{r.item}: {r.start} -> {r.end}: {r.reading}" for r in report.readings]
        tracker.log_text(run_id, "\n".join(lines) + "\n", "readings.txt")
        for path in figures:
            tracker.log_artifact(run_id, path, "figures")
    except BaseException as exc:
        tracker.finish(run_id, RunStatus.CRASHED, repr(exc))
        raise
    tracker.finish(run_id, RunStatus(report.status), report.reason)
    return run_id


def diagnose(
    config: Annotated[
        Path, typer.Argument(metavar="CONFIG", help="run config (JSON or YAML), e.g. configs/original.json")
    ],
    steps: Annotated[
        str,
        typer.Argument(metavar="STEPS", help="training steps to diagnose (default 10)", show_default=False),
    ] = "10",
    every: Annotated[
        int | None, typer.Option(help="also measure every N steps (default: start and end only)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print only the JSON diagnosis on stdout")] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a field: key=value (repeatable)")
    ] = None,
    track: Annotated[
        bool,
        typer.Option("--track/--no-track", help="log figures and JSON to MLflow (experiment orch-diagnose)"),
    ] = True,
    out: Annotated[Path | None, typer.Option(help="write the figures (PNG) and diagnosis.json here")] = None,
    _uri: TrackingUri = None,
) -> None:
    """The note's diagnostics: train CONFIG for STEPS steps; latents, errors, gradients per loss term,
    skip reliance, latent-only capacity and data, each with a one-line reading."""
    from orchestrator.cli.common import console, err_console, fail

    n_steps, cfg, source, uri = _prepare(config, steps, every, list(set_ or []), out, track)
    report = _run(cfg, n_steps, every, source, None if json_out else console)
    document, problem = _save(report, out, uri, config.stem)
    if json_out:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        for table in render_tables(report, _title(config, report)):
            console.print(table)
    notes = err_console if json_out else console
    if "outputs" in document:
        notes.print(f"figures: {', '.join(document['outputs']['figures'])}", highlight=False)
    if "tracking" in document:
        notes.print(
            f"tracked: run {document['tracking']['run_id']} in experiment {EXPERIMENT} ({uri})",
            highlight=False,
        )
    if problem:
        raise fail(f"the diagnosis ran but could not be tracked: {problem}", code=1)
    if report.status != "finished":
        raise fail(f"training {report.status}: {report.reason}", code=1)


def _prepare(
    config: Path, steps: str, every: int | None, overrides: list[str], out: Path | None, track: bool
) -> tuple[int, RunConfig, Any, str | None]:
    """Validate everything before any work: STEPS, ``--every``, the config, ``--out``, the data and the
    tracking store. Returns (steps, config, data source, store URI or None).

    Raises:
        typer.Exit: code 2 after one message on stderr; nothing has been written.
        model.config.ConfigError, model.data.DataError, orchestrator.tracking.TrackingError: as the app
            says them (exit 2); nothing has been written.
    """
    from model.config import load_config
    from model.data import open_source
    from orchestrator.cli.common import fail, tracking_uri

    try:
        n_steps = parse_steps(steps)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if every is not None and every < 1:
        raise fail(f"--every must be >= 1, got {every}")
    cfg = load_config(config, overrides)
    if out is not None and out.exists() and not out.is_dir():
        raise fail(f"--out {out} exists and is not a directory")
    source = open_source(cfg.data)
    if not track:
        return n_steps, cfg, source, None
    from orchestrator.tracking import prepare_store

    return n_steps, cfg, source, prepare_store(tracking_uri())


def _run(
    cfg: RunConfig, steps: int, every: int | None, source: Any, console: Console | None
) -> DiagnosisReport:
    """The diagnosis, with a progress bar on ``console`` (none when None)."""
    from model.diagnose import diagnose as run_diagnosis

    if console is None:
        return run_diagnosis(cfg, steps, every=every, source=source)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]diagnosing"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"))
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("steps", total=steps)

        def on_step(step: int, total: int) -> None:
            progress.update(task, completed=step)

        return run_diagnosis(cfg, steps, every=every, source=source, on_step=on_step)


def _save(
    report: DiagnosisReport, out: Path | None, uri: str | None, name: str
) -> tuple[dict[str, Any], str | None]:
    """Write figures and JSON to ``out`` and log them to ``uri``; returns the JSON document (with
    ``outputs`` / ``tracking`` where they happened) and the tracking failure, if any."""
    document = report.to_dict()
    figures: list[Path] = []
    if out is not None:
        figures = _write_figures(report, out)
        (out / "diagnosis.json").write_text(json.dumps(document, indent=2) + "\n")
    problem = None
    if uri is not None:
        try:
            with tempfile.TemporaryDirectory() as tmp:
                run_id = _track(report, uri, name, figures or _write_figures(report, Path(tmp)), document)
            tracking = {"uri": uri, "experiment": EXPERIMENT, "run_id": run_id}
        except Exception as exc:  # the diagnosis stands; say why it is not in the store
            problem = str(exc) or type(exc).__name__
    if figures:
        document["outputs"] = {"directory": str(out), "figures": [str(p) for p in figures]}
    if uri is not None and problem is None:
        document["tracking"] = tracking
    return document, problem


def _title(config: Path, report: DiagnosisReport) -> str:
    cfg = report.config
    weights = ", ".join(f"{k} {v:g}" for k, v in cfg.trainer.loss_weights.model_dump().items())
    return (
        f"diagnosis of {config} after {report.steps_done}/{report.steps} steps ({report.seconds:.1f}s; "
        f"up_mode={cfg.model.up_mode}, cross={cfg.trainer.cross_domain_strategy}, "
        f"same_domain_use_skip={str(cfg.trainer.same_domain_use_skip).lower()}, weights {weights})"
    )
