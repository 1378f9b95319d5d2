"""Signals, taken one way everywhere: :func:`handle_signals`, the one context manager that installs handlers.

- A coordinator takes SIGTERM (Slurm's preemption, ``timeout``) as Ctrl-C: :class:`Preempted` is a
  ``KeyboardInterrupt``, so a sweep stopped either way ends its parent run KILLED "interrupted", tells its
  workers to stop and exits 130.
- ``orch train`` and a worker process note SIGTERM (and Ctrl-C) and stop training at the next step.
- A Slurm task stops on SIGUSR2 (:class:`~orchestrator.execute.slurm.TaskStopped`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Preempted", "handle_signals"]


class Preempted(KeyboardInterrupt):
    """The process received SIGTERM (a scheduler's preemption, ``timeout``, ``kill``)."""

    @classmethod
    def by(cls, signal_name: str) -> Preempted:
        return cls(f"received signal {signal_name}")


@contextmanager
def handle_signals(
    signals: Iterable[int], raise_as: Callable[[str], BaseException] | None = None
) -> Iterator[list[str]]:
    """Within the block, each of ``signals`` that arrives is noted: its name is appended to the yielded list
    (for work that stops at its next step), and ``raise_as(name)`` is raised in the main thread when given.

    Only the main thread installs handlers: elsewhere the block runs with the process's own and the list
    stays empty. The previous handlers are restored on exit.
    """
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        received.append(name)
        if raise_as is not None:
            raise raise_as(name)

    previous = {s: signal.signal(s, handle) for s in signals}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
