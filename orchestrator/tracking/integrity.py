"""What the store records stays true under a failing machine.

- :func:`unwritten`: an artifact cut short (a full disk, a folder turned read-only) is removed, so that it
  never looks written (a checkpoint is resumed only from a whole file: :func:`log_whole_checkpoint`) and
  its space is given back.
- :class:`StoreFile`: an SQLite store deleted or replaced under the process that writes to it is noticed
  at its next write (SQLite goes on writing to a deleted file: a sweep would finish into nothing).
- :class:`SpaceReserve`: room kept on the store's disk while a sweep runs, given back once the disk is
  full, so that its runs in flight can still be ended KILLED (with their checkpoints, when they fit).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrator.tracking.errors import store_gone
from orchestrator.tracking.store import retry, sqlite_path

__all__ = ["SpaceReserve", "StoreFile", "log_whole_checkpoint", "unwritten"]


@contextlib.contextmanager
def unwritten(client: Any, run_id: str, folder: str, pattern: str) -> Iterator[None]:
    """Artifacts of run ``run_id`` written in the block: when it fails, the files of the run's local
    artifact ``folder`` whose names match ``pattern`` (a regular expression) are removed."""
    try:
        yield
    except Exception:
        with contextlib.suppress(Exception):  # a store that fails now: the next write says so
            root = retry(client.get_run, run_id).info.artifact_uri
            if root.startswith("file:"):
                local = Path(urllib.parse.unquote(urllib.parse.urlparse(root).path)) / folder
                for f in local.iterdir():
                    if re.match(pattern, f.name):
                        f.unlink(missing_ok=True)
        raise


def log_whole_checkpoint(client: Any, run_id: str, path: Path, config: dict[str, Any]) -> None:
    """Log the checkpoint at ``path`` as run ``run_id``'s ``checkpoint/last.pt`` with its
    ``checkpoint/config.json``, both whole or neither."""
    with unwritten(client, run_id, "checkpoint", r"(last|config)\."), tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "last.pt"  # the artifact's name is the file's
        staged.symlink_to(Path(path).resolve())
        retry(client.log_artifact, run_id, str(staged), "checkpoint")
        retry(client.log_dict, run_id, config, "checkpoint/config.json")


class StoreFile:
    """The file of an SQLite store as a tracker opened it (nothing to watch for a server)."""

    def __init__(self, uri: str) -> None:
        self.path = sqlite_path(uri)
        self.id = self._id()

    def _id(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat() if self.path is not None else None
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if st is not None else None

    def check(self) -> None:
        """Fail when the file was deleted or replaced since it was opened.

        Raises:
            orchestrator.tracking.errors.StoreFault: kind ``gone``.
        """
        if self.id is None or self.path is None:
            return
        now = self._id()
        if now != self.id:
            why = "its file was deleted" if now is None else "another file is in its place"
            raise store_gone(self.path, why)


class SpaceReserve:
    """``size`` bytes in a file beside an SQLite store (``.<store>.reserve-<host>-<pid>``) while the block
    runs; :meth:`release` gives them back (a full disk: the writes that end the sweep fit in them). A file
    left by a process of this host that died is removed when the next one is made; on a disk too full to
    hold one, there is none."""

    SIZE = 512 * 1024

    def __init__(self, uri: str, size: int = SIZE) -> None:
        db = sqlite_path(uri)
        self.size = size
        prefix = f".{db.name}.reserve-{socket.gethostname()}-" if db is not None else ""
        self.path = db.parent / f"{prefix}{os.getpid()}" if db is not None else None
        self._stale = sorted(db.parent.glob(f"{prefix}*")) if db is not None else []

    def __enter__(self) -> SpaceReserve:
        for stale in self._stale:
            with contextlib.suppress(ValueError, OSError):
                pid = int(stale.name.rsplit("-", 1)[1])
                if pid != os.getpid() and not _alive(pid):
                    stale.unlink()
        if self.path is not None:
            try:
                with open(self.path, "wb") as f:
                    f.write(b"\0" * self.size)  # written, not sparse: the space is taken now
            except OSError:
                self.release()
        return self

    def release(self) -> None:
        """Give the space back (again: nothing)."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
            self.path = None

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's
        return True
    return True
