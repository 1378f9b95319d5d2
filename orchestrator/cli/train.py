"""``orch train CONFIG`` (or ``--config CONFIG``): one run, one row per epoch; ``orch train --resume RUN_ID``
continues an interrupted one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import Device, TrackingUri, console, err_console, fail, tracking_uri

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
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="RUN_ID",
            help="continue this interrupted run from its checkpoint, logging into the same run",
        ),
    ] = None,
    _uri: TrackingUri = None,
) -> None:
    """Train one config and print one row per epoch (epoch 0 = before any update).

    SIGTERM or Ctrl-C stops at the next step, logs the last epoch's checkpoint and exits 130; `orch train
    --resume RUN_ID` continues the run to its configured epochs."""
    from model.config import load_config

    if resume is not None:
        if config or config_opt or set_ or epochs is not None or not track:
            raise fail(
                "--resume continues a run as configured: give no CONFIG, --set, --epochs or --no-track"
            )
        _resume(resume, out, device)
        return
    if (config is None) == (config_opt is None):
        raise fail("give the run config once: orch train CONFIG (or --config CONFIG)")
    config = config or config_opt
    assert config is not None
    overrides = list(set_ or [])
    if epochs is not None:
        overrides.append(f"trainer.epochs={epochs}")
    if device is not None:
        overrides.append(f"trainer.device={device.value}")
    uri = tracking_uri() if track else None
    cfg = load_config(config, overrides)  # the config first: a refusal comes before torch is imported

    from orchestrator.cli.epochs import EpochPrinter
    from orchestrator.execute.single import default_out_dir, train_single

    printer = EpochPrinter(console)
    with printer.live():
        outcome = train_single(
            cfg,
            out or default_out_dir(config),
            tracking_uri=uri,
            name=config.stem,
            on_epoch=printer.on_epoch,
            on_step=printer.on_step,
        )
    _report(outcome, uri)


def _resume(run_id: str, out: Path | None, device: Device | None) -> None:
    """`orch train --resume RUN_ID`."""
    from orchestrator.cli.epochs import EpochPrinter
    from orchestrator.execute.single import default_out_dir, resume_single

    printer = EpochPrinter(console)
    with printer.live():
        outcome = resume_single(
            run_id,
            out or default_out_dir(Path(f"resume-{run_id[:8]}")),
            tracking_uri=tracking_uri(),
            device=device.value if device else None,
            on_epoch=printer.on_epoch,
            on_step=printer.on_step,
        )
    _report(outcome, tracking_uri())


def _report(outcome: object, uri: str | None) -> None:
    """Where the outputs are; exit 130 for an interrupted run (with how to resume it), 1 for a failed one."""
    from orchestrator.tracking import RunStatus

    console.print(f"outputs: {outcome.out_dir}  (config.json, metrics.csv, images/, checkpoint.pt)")
    if outcome.tracking_run_id:
        console.print(f"tracked: run {outcome.tracking_run_id} in {uri}  (mlflow ui --backend-store-uri ...)")
    if outcome.status is RunStatus.KILLED:
        err_console.print(f"{outcome.reason}", highlight=False)
        raise typer.Exit(130)
    if outcome.status is not RunStatus.FINISHED:
        raise fail(f"run {outcome.status}: {outcome.reason}", code=1)
