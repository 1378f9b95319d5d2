"""SIGTERM as Ctrl-C: a coordinator stopped by Slurm's preemption or ``timeout`` takes the same path as one
stopped at the keyboard (its parent run ends KILLED "interrupted", its workers are told to stop, exit 130).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Preempted", "sigterm_interrupts"]


class Preempted(KeyboardInterrupt):
    """The process received SIGTERM (a scheduler's preemption, ``timeout``, ``kill``)."""


def _raise_preempted(signum: int, frame: FrameType | None) -> None:
    raise Preempted(f"received signal {signal.Signals(signum).name}")


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Preempted` (a ``KeyboardInterrupt``) in the main thread.

    Outside the main thread (where Python cannot install a handler) the block runs unchanged. The previous
    handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_preempted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
