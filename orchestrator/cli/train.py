"""``orch train CONFIG`` (or ``--config CONFIG``): one run, one row per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import Device, TrackingUri, console, fail, tracking_uri

__all__ = ["train"]


def train(
    config: Annotated[
        Path | None, typer.Argument(help="run config (JSON or YAML), e.g. configs/no_skip_everywhere.json")
    ] = None,
    config_opt: Annotated[
        Path | None, typer.Option("--config", "-c", help="the run config, as an option (same as CONFIG)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="override trainer.epochs")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a field: key=value (repeatable)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="run directory (default: runs/train/CONFIG-TIME)")] = None,
    device: Annotated[Device | None, typer.Option(help="overrides trainer.device")] = None,
    track: Annotated[
        bool, typer.Option("--track/--no-track", help="also log the run to the MLflow store")
    ] = True,
    _uri: TrackingUri = None,
) -> None:
    """Train one config and print one row per epoch (epoch 0 = before any update)."""
    from model.config import ConfigError, load_config
    from model.data import DataError
    from orchestrator.cli.epochs import EpochPrinter
    from orchestrator.execute.single import default_out_dir, train_single
    from orchestrator.tracking import RunStatus, TrackingError

    if (config is None) == (config_opt is None):
        raise fail("give the run config once: orch train CONFIG (or --config CONFIG)")
    config = config or config_opt
    assert config is not None
    overrides = list(set_ or [])
    if epochs is not None:
        overrides.append(f"trainer.epochs={epochs}")
    if device is not None:
        overrides.append(f"trainer.device={device.value}")
    printer = EpochPrinter(console)
    uri = tracking_uri() if track else None
    try:
        cfg = load_config(config, overrides)
        with printer.live():
            outcome = train_single(
                cfg,
                out or default_out_dir(config),
                tracking_uri=uri,
                name=config.stem,
                on_epoch=printer.on_epoch,
                on_step=printer.on_step,
            )
    except (ConfigError, DataError, TrackingError) as exc:
        raise fail(str(exc)) from None
    console.print(f"outputs: {outcome.out_dir}  (config.json, metrics.csv, images/, checkpoint.pt)")
    if outcome.tracking_run_id:
        console.print(f"tracked: run {outcome.tracking_run_id} in {uri}  (mlflow ui --backend-store-uri ...)")
    if outcome.status is not RunStatus.FINISHED:
        raise fail(f"run {outcome.status}: {outcome.reason}", code=1)
