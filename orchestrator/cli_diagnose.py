"""`orch diagnose` (placeholder: being written)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def diagnose(
    config: Annotated[Path, typer.Argument(help="run config (JSON or YAML)")],
    steps: Annotated[int, typer.Argument(help="training steps")] = 10,
) -> None:
    """The note's diagnostics (not implemented yet)."""
    raise typer.Exit(2)
