"""The `orch` command line: thin Typer wrappers over library functions, one file per command.

Exit codes: :data:`orchestrator.cli.common.EXIT_CODES` (shown in ``orch --help``).
"""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from orchestrator.cli.ablate import ablate
from orchestrator.cli.common import EXIT_CODES, OrchTyper, set_tracking_uri
from orchestrator.cli.data import data_app
from orchestrator.cli.diagnose import diagnose
from orchestrator.cli.report import report
from orchestrator.cli.search import search
from orchestrator.cli.status import status
from orchestrator.cli.sweep import sweep, worker
from orchestrator.cli.train import train

__all__ = ["app"]

app = OrchTyper(
    name="orch",
    help="Experiment-matrix orchestrator for the cross-domain autoencoder ablations.",
    epilog=EXIT_CODES,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"orch {metadata.version('orch')}")
        raise typer.Exit()


@app.callback()
def main(
    tracking_uri_opt: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite:///runs/mlflow.db)"
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="print orch's version and exit"),
    ] = False,
) -> None:
    set_tracking_uri(tracking_uri_opt)


for _command in (train, sweep, worker, status, search, report, ablate, diagnose):
    app.command()(_command)
app.add_typer(data_app, name="data", help="synthesise and inspect paired HDF5 data")


def run() -> None:  # pragma: no cover - console entry for `python -m orchestrator.cli`
    app(prog_name="orch")
