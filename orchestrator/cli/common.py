"""What every command shares: the consoles, the tracking store's URI, and turning an error into an exit.

Exit codes: :data:`EXIT_CODES`. Input errors become one message and exit 2 in one place, the commands'
app (:class:`OrchTyper`); a command only maps what it says differently.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

import typer
from rich.console import Console
from rich.live import Live
from typer.core import TyperCommand, TyperGroup, TyperOption

from orchestrator.cli.output import Stream
from orchestrator.errors import Fault, is_user_error

__all__ = [
    "DEFAULT_TRACKING_URI",
    "Device",
    "EXIT_CODES",
    "LiveDisplay",
    "OrchTyper",
    "TrackingUri",
    "check_exists",
    "console",
    "err_console",
    "fail",
    "paths",
    "set_tracking_uri",
    "tracking_uri",
]


def _width(tty: bool) -> int | None:
    """A terminal's own width; piped or logged, ``COLUMNS`` or 100 (rich's default is 80)."""
    if tty:
        return None
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 100


#: Spaces at the end of a line (before any closing colour codes).
_TRAILING = re.compile(r" +((?:\x1b\[[0-9;]*m)*)\n")


class _Console(Console):
    """A console that, piped or logged, ends no line with spaces: rich pads table cells and paragraphs to
    the width, which a terminal does not show but a file keeps (on a terminal nothing changes: a live view
    overwrites its last frame with those spaces)."""

    def _render_buffer(self, buffer: Iterable) -> str:
        text = super()._render_buffer(buffer)
        return text if self.is_terminal else _TRAILING.sub(r"\1\n", text)


# messages are never broken inside a path or a value (soft wrap); tables and the verdict summary are laid
# out to the width; every line reaches any stream in its encoding, and a stream that went away stops
# nothing (:mod:`~orchestrator.cli.output`)
console = _Console(file=Stream("stdout"), width=_width(sys.stdout.isatty()), soft_wrap=True)
err_console = _Console(file=Stream("stderr"), width=_width(sys.stderr.isatty()), soft_wrap=True)

DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"

#: Settings of every Typer app of the CLI: help when called bare, errors as one message (no traceback).
_TYPER = {
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": "markdown",  # a docstring paragraph reflows to the terminal
}

#: What every command's exit code means (shown in --help).
EXIT_CODES = (
    "Exit codes: 0 done; 1 some runs crashed or were interrupted (the others still ran); 2 invalid input "
    "(one message, nothing started, nothing written); 130 interrupted (Ctrl-C or SIGTERM: run the same "
    "command to finish the rest)."
)

#: ``--tracking-uri`` after a command (``orch report M --tracking-uri U``), where users of ``mlflow ui``
#: put it; the one before the command is the app's own option.
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow store (default: MLFLOW_TRACKING_URI or sqlite:///runs/mlflow.db)",
        callback=lambda value: set_tracking_uri(value) if value else None,
        expose_value=False,
    ),
]

_tracking_uri: list[str | None] = [None]

#: ``--device``: auto (CUDA when present), cpu, cuda (the first GPU) or one GPU of eight by index.
Device = StrEnum("Device", {v: v for v in ("auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(8)))})


def set_tracking_uri(uri: str | None) -> None:
    """The global ``--tracking-uri`` option."""
    _tracking_uri[0] = uri


def tracking_uri() -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the local store under ``runs/``."""
    return _tracking_uri[0] or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def paths(files: Iterable[Path | str]) -> str:
    """Files as a user reads them: relative to the working folder when under it, else absolute."""
    here = Path.cwd()
    shown = []
    for f in files:
        p = Path(f)
        try:
            shown.append(str(p.resolve().relative_to(here)) if p.is_absolute() else str(p))
        except ValueError:
            shown.append(str(p))
    return ", ".join(shown)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` on stderr and return the exit to raise; an input error (exit 2) inside a command
    ends with the hint Click's own usage errors give (``Try 'orch report --help' for help.``)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    command = _command_path()
    if code == 2 and command:
        err_console.print(f"Try '{command} --help' for help.", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _command_path() -> str | None:
    """The command being run (``orch report``), or None outside one."""
    try:
        from typer._click.globals import get_current_context  # Typer 0.2x carries its own Click
    except ImportError:  # pragma: no cover - older Typer runs on Click itself
        from click import get_current_context
    ctx = get_current_context(silent=True)
    return ctx.command_path if ctx is not None else None


def check_exists(path: Path | None, what: str = "matrix") -> None:
    """Exit 2 at once when the ``what`` file ``path`` is missing, before the libraries that read it load
    (a usage error costs what ``orch --version`` does); the reader checks everything else, with the same
    words (:func:`model.input_files.read_text`)."""
    if path is not None and not path.exists() and not path.is_symlink():
        raise fail(f"{path}: no such {what} file")


class _Flag(TyperOption):
    """A flag in help without a type (``--dry-run``, not ``--dry-run <bool>``)."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        return None


def _untyped_flags(params: list[Any]) -> list[Any]:
    for param in params:
        if type(param) is TyperOption and param.is_flag and not param.count:
            param.__class__ = _Flag
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: typer.Context) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


class OrchTyper(typer.Typer):
    """A Typer app of the CLI (help when called bare, no traceback, flags shown without a type) whose
    commands exit 2 with one message on an input error (:func:`orchestrator.errors.is_user_error`), whatever
    library function raised it, and 1 on a fault of the machine (:class:`orchestrator.errors.Fault`: a full
    disk, a locked store)."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**{"cls": _Group, **_TYPER, **settings})

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        register = super().command(*args, **{"cls": _Command, **kwargs})

        def decorator(command: Callable[..., Any]) -> Callable[..., Any]:
            register(_exits_on_input_errors(command))
            return command

        return decorator


def _exits_on_input_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)  # Typer reads the command's signature and help through the wrapper
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Fault as exc:  # the machine's (a full disk, a locked store): what was done is kept
            raise fail(str(exc), code=1) from None
        except Exception as exc:
            if is_user_error(exc):
                raise fail(str(exc)) from None
            raise

    return run


class LiveDisplay:
    """A view rich redraws four times a second on a terminal (it renders itself: ``__rich__``); elsewhere
    (piped, logged) it prints plain lines itself and nothing is redrawn."""

    console: Console

    @contextmanager
    def live(self) -> Iterator[Self]:
        if not self.console.is_terminal:
            yield self
            return
        with Live(self, console=self.console, refresh_per_second=4, transient=True):
            yield self
