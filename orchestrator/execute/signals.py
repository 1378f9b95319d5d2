"""Signals, taken one way everywhere: :func:`handle_signals`, the one context manager that installs handlers.

- A coordinator takes SIGTERM (Slurm's preemption, ``timeout``) and SIGHUP (the terminal or the ssh
  connection closed) as Ctrl-C: :class:`Preempted` is a ``KeyboardInterrupt``, so a sweep stopped any of
  these ways ends its parent run KILLED "interrupted", tells its workers to stop and exits 130.
- A shutdown is started once: ``timeout``, Slurm and a closing terminal signal a process and then its
  group, and an impatient user presses Ctrl-C twice, so a second signal arrives while the first one's
  shutdown runs. It is noted, never raised again: a second exception abandoned that shutdown half-way,
  leaving runs RUNNING without their checkpoints.
- A signal ignored when the process started stays ignored: ``nohup`` ignores SIGHUP, and a shell starts
  a background job (``cmd &`` in a script) with SIGINT ignored (POSIX).
- ``orch train`` and a worker process note SIGTERM (and Ctrl-C) and stop training at the next step.
- A Slurm task stops on SIGUSR2 (:class:`~orchestrator.execute.slurm.TaskStopped`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["STOP_SIGNALS", "Preempted", "deferred", "handle_signals"]

#: The signals that stop a coordinator or a run: a scheduler's or ``kill``'s, Ctrl-C, a closed terminal.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

#: The signal this process raised as an exception: one shutdown at a time, whatever the nesting.
_raised: list[str] = []
_depth = [0]
#: While :func:`deferred` blocks run: the signals to raise at their next safe point, with how.
_deferring = [0]
_pending: list[tuple[str, Callable[[str], BaseException]]] = []


class Preempted(KeyboardInterrupt):
    """The process received SIGTERM, SIGHUP or SIGINT (a scheduler's preemption, ``timeout``, ``kill``, a
    closed terminal, Ctrl-C)."""

    @classmethod
    def by(cls, signal_name: str) -> Preempted:
        return cls(f"received signal {signal_name}")


@contextmanager
def handle_signals(
    signals: Iterable[int], raise_as: Callable[[str], BaseException] | None = None
) -> Iterator[list[str]]:
    """Within the block, each of ``signals`` that arrives is noted: its name is appended to the yielded list
    (for work that stops at its next step), and ``raise_as(name)`` is raised in the main thread when given,
    for the first signal of the process only (blocks nested or not): later ones are only noted.

    Only the main thread installs handlers: elsewhere the block runs with the process's own and the list
    stays empty. A signal the process ignores (``nohup``'s SIGHUP, a background job's SIGINT) stays
    ignored. The previous handlers are restored on exit; the outermost block forgets the shutdown.
    """
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        received.append(name)
        if raise_as is None:
            return
        if _raised:  # a shutdown runs already: let it finish
            return
        if _deferring[0]:
            _pending.append((name, raise_as))
            return
        _raised.append(name)
        raise raise_as(name)

    previous = {s: signal.getsignal(s) for s in signals}
    for s, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, handle)
    _depth[0] += 1
    try:
        yield received
    finally:
        _depth[0] -= 1
        for s, handler in previous.items():
            if handler is not signal.SIG_IGN:
                signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        if _depth[0] == 0:
            _raised.clear()
            _pending.clear()


@contextmanager
def deferred() -> Iterator[Callable[[], None]]:
    """Within the block, a signal that an enclosing :func:`handle_signals` would raise is held, and raised by
    the yielded function where the caller calls it (a safe point: between two messages of a pipe, never
    with one read and not yet handled, nor half-way through a write to the store); a block that ends with
    one held raises it on exit."""

    def check() -> None:
        if _pending and not _raised:
            name, raise_as = _pending[0]
            _raised.append(name)
            raise raise_as(name)

    _deferring[0] += 1
    try:
        yield check
    except BaseException:
        _deferring[0] -= 1
        raise
    _deferring[0] -= 1
    check()
