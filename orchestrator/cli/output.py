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
"""

from __future__ import annotations

import codecs
import io
import os
import sys
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

    @property
    def stream(self) -> io.TextIOBase:
        """The stream now; under a live view's redirection (rich's proxy), the one it writes to."""
        stream = getattr(sys, self.name)
        return getattr(stream, "rich_proxied_file", stream)

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
        stream = self.stream
        if stream is self._dead:
            return len(text)
        encoding = self.encoding
        if not encoding.lower().replace("-", "").startswith("utf"):
            text = text.encode(encoding, _ERRORS).decode(encoding)
        try:
            stream.write(text)
        except (OSError, ValueError) as exc:
            self._give_up(stream, exc)
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
