"""The `orch` command line: thin Typer wrappers over library functions.

Exit codes: 0 done; 1 some runs crashed or diverged (others still ran); 2 invalid input (nothing
was started).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from model.config import ConfigError, load_config
from model.data import DataError

__all__ = ["app"]

app = typer.Typer(
    name="orch",
    help="Experiment-matrix orchestrator for the cross-domain autoencoder ablations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"


class _State:
    tracking_uri: str | None = None


def tracking_uri() -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the local store under ``runs/``."""
    return _State.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` on stderr and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.callback()
def main(
    tracking_uri_opt: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite:///runs/mlflow.db)"
        ),
    ] = None,
) -> None:
    _State.tracking_uri = tracking_uri_opt


@app.command()
def train(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="run config (JSON or YAML), e.g. the note's")
    ],
    epochs: Annotated[int | None, typer.Option(help="override trainer.epochs")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a field: key=value (repeatable)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="run directory (default: runs/train/<config>-<time>)")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda (overrides trainer.device)")] = None,
    track: Annotated[
        bool, typer.Option("--track/--no-track", help="also log the run to the MLflow store")
    ] = True,
) -> None:
    """Train one config and print one row per epoch (epoch 0 = before any update)."""
    from orchestrator.console import EpochPrinter
    from orchestrator.single import default_out_dir, train_single

    overrides = list(set_ or [])
    if epochs is not None:
        overrides.append(f"trainer.epochs={epochs}")
    if device is not None:
        overrides.append(f"trainer.device={device}")
    try:
        cfg = load_config(config, overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    out_dir = out or default_out_dir(config)
    if out_dir.exists():
        raise fail(f"{out_dir} already exists; choose another --out")
    tracker = None
    printer = EpochPrinter(console)
    try:
        if track:
            from orchestrator.tracking import open_single_run

            tracker = open_single_run(tracking_uri(), cfg, name=config.stem)
        with printer.live():
            outcome = train_single(
                cfg, out_dir, on_epoch=printer.on_epoch, on_step=printer.on_step, tracker=tracker
            )
    except (ConfigError, DataError) as exc:
        if tracker is not None:
            tracker.finish("crashed", str(exc))
        raise fail(str(exc)) from None
    console.print(f"outputs: {outcome.out_dir}  (config.json, metrics.csv, images/, checkpoint.pt)")
    if outcome.tracking_run_id:
        console.print(
            f"tracked: run {outcome.tracking_run_id} in {tracking_uri()}  (mlflow ui --backend-store-uri ...)"
        )
    if outcome.status != "finished":
        raise fail(f"run {outcome.status}: {outcome.reason}", code=1)


def run() -> None:  # pragma: no cover - console entry for `python -m orchestrator.cli`
    app(prog_name="orch")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
