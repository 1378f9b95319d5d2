"""The errors orch says to its user in one message.

Every library error that means "this input cannot be used" (a matrix, a store, a queue, a search, a report)
derives from :class:`UserError`; the command line turns each one into that message and exit 2 in one place
(:class:`orchestrator.cli.common.OrchTyper`). The model library knows nothing of orch: its input errors
are named in :data:`MODEL_ERRORS` instead. A :class:`Fault` is the machine's, not the input's (a full
disk, a folder turned read-only, a store another program holds locked or that was deleted): the work in
flight stops as on SIGTERM, and the command line says what happened and what to do, with exit 1.

This module imports nothing, so that the command line can map errors before any heavy library is loaded.
"""

from __future__ import annotations

import sys

__all__ = ["MODEL_ERRORS", "Fault", "UserError", "is_user_error"]


class UserError(Exception):
    """Input orch refuses; the message names what and why (nothing was started)."""


class Fault(Exception):
    """The machine stopped the work (a full disk, a read-only folder, a locked or vanished store); the
    message names the cause and what to do. What was recorded before it is kept.

    Attributes:
        sweep_started: a sweep's parent run was written before it (False: the store was not changed).
    """

    sweep_started = False


#: The model library's input errors, as (defining module, class name).
MODEL_ERRORS = (
    ("model.config", "ConfigError"),
    ("model.data.base", "DataError"),
    ("model.checkpoint", "CheckpointError"),
)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an input error to say in one message: a :class:`UserError`, or one of
    :data:`MODEL_ERRORS` (looked up among the modules already imported: an error of a module never imported
    cannot have been raised, and looking it up imports nothing)."""
    if isinstance(exc, UserError):
        return True
    for module, name in MODEL_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return True
    return False
