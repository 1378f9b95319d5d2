"""What orch prints, whatever it is printed to: the streams under the command line's consoles.

- **Any encoding.** A stream that cannot encode a character (``PYTHONIOENCODING=ascii``, a Latin-1
  terminal, a log file opened as ASCII) gets its ASCII look-alike (``>`` for an arrow, ``v`` and ``x``
  for the marks, ``#`` for "differs", ``~`` for plus-minus), else ``?``: never a
  ``UnicodeEncodeError``. Rich draws its boxes and bars in ASCII by itself once it knows the encoding,
  which :class:`Stream` reports.
- **A stream that goes away.** A terminal that was closed (``EIO``), a reader that exited
  (``orch sweep | head -5``: ``EPIPE``) or a closed descriptor (``EBADF``) does not stop the command: the
  stream's descriptor is pointed at ``/dev/null`` and the work goes on (the tracking store is the record,
  not the screen). A closed standard output is said once on standard error.
- **Never a loop.** Under a live view rich points ``sys.stdout`` at its proxy, which prints through the
  console that writes here: :class:`Stream` writes to the stream under the proxy, never to a proxy or to a
  :class:`Stream` (a stream wrapped twice), and a write that comes back to it while it writes goes to the
  interpreter's own stream. A write that looped grew a live ``orch sweep`` to gigabytes.
"""

from __future__ import annotations

import codecs
import io
import os
import sys
import threading
import unicodedata

__all__ = ["ASCII_LOOKALIKES", "Stream"]

#: The characters orch prints outside ASCII, and what stands for each where the stream has no room for it:
#: one character for one, so that a table keeps its columns.
ASCII_LOOKALIKES = {
    "→": ">",
    "←": "<",
    "↘": "\\",
    "↗": "/",
    "✓": "v",
    "✗": "x",
    "≠": "#",
    "≤": "<",
    "≥": ">",
    "±": "~",
    "×": "x",
    "–": "-",
    "—": "-",
    "…": ".",
    "•": "*",
    "·": ".",
}

_ERRORS = "orch-ascii"


def _lookalike(char: str) -> str:
    """``char`` in one ASCII character: a known look-alike, its letter without accents (``é``: ``e``), else
    ``?``."""
    known = ASCII_LOOKALIKES.get(char)
    if known is not None:
        return known
    plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode("ascii")
    return plain[:1] or "?"


def _replace(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start : error.end]
    return "".join(_lookalike(c) for c in text), error.end


codecs.register_error(_ERRORS, _replace)


class Stream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` as it is at each write (a test's capture replaces them), written in
    its own encoding with ASCII look-alikes where that cannot hold a character, and given up quietly once
    it fails (module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._dead: object | None = None  # the stream that failed: nothing more is written to it
        self._writing = threading.local()  # set while this thread writes: a write that comes back is a loop

    @property
    def stream(self) -> io.TextIOBase:
        """The stream now: ``sys.stdout`` (``sys.stderr``) under any live view's redirection (rich's proxies,
        however nested); where that is a :class:`Stream` (wrapped twice), the interpreter's own stream."""
        stream = getattr(sys, self.name)
        for _ in range(16):  # rich's proxy keeps the stream it replaced; nothing nests them deeper
            inner = getattr(stream, "rich_proxied_file", None) if not isinstance(stream, Stream) else None
            if inner is None:
                break
            stream = inner
        return self._own() if stream is None or isinstance(stream, Stream) else stream

    def _own(self) -> io.TextIOBase:
        """The interpreter's own stream (``sys.__stdout__``), which no wrapper leads back from."""
        return getattr(sys, f"__{self.name}__", None) or _Null()

    @property
    def encoding(self) -> str:  # rich draws ASCII boxes where this is not UTF
        return getattr(self.stream, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        looped = getattr(self._writing, "active", False)  # the stream written to wrote here again
        stream = self._own() if looped else self.stream
        if stream is self._dead:
            return len(text)
        encoding = getattr(stream, "encoding", None) or "utf-8"
        if not encoding.lower().replace("-", "").startswith("utf"):
            text = text.encode(encoding, _ERRORS).decode(encoding)
        self._writing.active = True
        try:
            stream.write(text)
        except (OSError, ValueError) as exc:
            self._give_up(stream, exc)
        finally:
            self._writing.active = looped
        return len(text)

    def flush(self) -> None:
        stream = self.stream
        if stream is self._dead:
            return
        try:
            stream.flush()
        except (OSError, ValueError) as exc:
            self._give_up(stream, exc)

    def _give_up(self, stream: io.TextIOBase, exc: Exception) -> None:
        """Write nothing more to ``stream``; point its descriptor at ``/dev/null`` so that nobody else's
        write (a log line, the interpreter's last flush) fails on it either."""
        self._dead = stream
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        if self.name == "stdout" and isinstance(exc, BrokenPipeError):
            Stream("stderr").write(
                "note: the output's reader went away (a closed pipe): orch goes on without printing; "
                "what it does is in the tracking store\n"
            )


class _Null(io.TextIOBase):
    """Where nothing can be printed (no standard stream at all): every write is taken and dropped."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)
