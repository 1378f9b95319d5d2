"""Names where they become paths: a matrix's, an experiment's or a study's name as one folder's name.

MLflow takes experiment names of up to 500 characters, and a matrix's name may hold any character; a file
system takes 255 bytes a name, and ``/`` or ``..`` would leave the folder. :func:`folder_name` keeps a
short, safe name as it is (with ``/`` as ``_``, as reports always did), and maps any other to its first
characters made safe plus a hash of the whole: the same name always gets the same folder, and two names
never share one.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["MAX_FOLDER_NAME", "folder_name", "hashed_name"]

#: The longest name (in UTF-8 bytes) kept as it is; longer ones are shortened and hashed.
MAX_FOLDER_NAME = 120


def folder_name(name: str) -> str:
    """``name`` as one folder's name (module docstring): at most :data:`MAX_FOLDER_NAME` bytes, no ``/``,
    never ``.`` or ``..``, stable."""
    plain = name.replace("/", "_")
    if plain not in ("", ".", "..") and "\0" not in plain and len(plain.encode()) <= MAX_FOLDER_NAME:
        return plain
    return hashed_name(name)


def hashed_name(name: str) -> str:
    """``name``'s first 60 characters with anything but letters, digits, ``_.-`` as ``_``, then a hash of
    the whole name: a file name for any name."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:60]}-{digest}"
