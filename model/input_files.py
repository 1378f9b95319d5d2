"""Reading the files a user writes (configs, matrices) with bounds, and quoting what they hold in messages.

Every failure is an :class:`InputFileError` whose message names the file (and the line) and the cause: a
path that is a directory or a broken link, bytes that are not UTF-8 text, malformed JSON or YAML, a
duplicate key (where asked), nesting deeper than :data:`MAX_DEPTH` levels, or YAML aliases that stand for
more than :data:`MAX_VALUES` values in all (an alias bomb: nine levels of nine aliases each stand for 9**9
values, from a few hundred bytes, and anything that walks them, a ``repr`` or ``json.dumps``, runs out
of memory). PyYAML shares an aliased node instead of copying it, so the loader counts what each alias
stands for while composing, before anything walks the result.

:func:`quote` is the bounded ``repr`` error messages use for values a user gave.
"""

from __future__ import annotations

import json
import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MAX_DEPTH",
    "MAX_QUOTE",
    "MAX_VALUES",
    "BoundedLoader",
    "InputFileError",
    "UniqueKeyLoader",
    "YAMLLimitError",
    "clip",
    "parse_document",
    "parse_json",
    "parse_yaml",
    "quote",
    "read_text",
]

MAX_VALUES = 100_000  # values a YAML document may hold, every alias counted as the values it stands for
MAX_DEPTH = 64  # nesting levels of a JSON or YAML document (the deepest shipped file has 6)
MAX_QUOTE = 200  # characters of a value quoted in an error message


class InputFileError(ValueError):
    """A file that cannot be read as a config or matrix; the message names the file, the line and why."""


class YAMLLimitError(yaml.MarkedYAMLError):
    """A YAML document beyond :data:`MAX_VALUES` or :data:`MAX_DEPTH`, or an alias inside its own anchor."""


# ------------------------------------------------------------------------------------------- quoting


def _repr_bounds(limit: int) -> reprlib.Repr:
    """A ``reprlib.Repr`` that never walks more than a few elements of any container, at any depth."""
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 4, limit, limit, limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 8
    return r


def clip(text: str, limit: int = MAX_QUOTE) -> str:
    """``text`` cut to ``limit`` characters, ending in "..." when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quote(value: Any, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters with "..." (huge or deeply nested
    values are never walked whole)."""
    return clip(_repr_bounds(limit).repr(value), limit)


# ---------------------------------------------------------------------------------------------- text


def read_text(path: str | Path, what: str) -> str:
    """The text of the ``what`` file (``"config"``, ``"matrix"``) at ``path``, decoded as UTF-8.

    Raises:
        InputFileError: no such file (or a broken link), a directory or other non-file, an unreadable
            file, or bytes that are not UTF-8 text (naming the line and the byte).
    """
    path = Path(path)
    if not path.exists():
        broken = f" (a broken link to {path.readlink()})" if path.is_symlink() else ""
        raise InputFileError(f"{path}: no such {what} file{broken}")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, not a {what} file")
    if not path.is_file():
        raise InputFileError(f"{path}: not a regular file, so not a {what} file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the {what} file ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputFileError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); a "
            f"{what} file is JSON or YAML text"
        ) from None


# ---------------------------------------------------------------------------------------------- YAML


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses documents of more than :data:`MAX_VALUES` values (aliases counted as what
    they stand for), nested deeper than :data:`MAX_DEPTH`, or with an alias inside its own anchor."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._values = 0  # values composed so far, each alias counted as the values it stands for
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(anchored node) -> the values it stands for, once composed

    def _count(self, n: int, mark: yaml.Mark) -> None:
        """Add ``n`` values; refuse the document past :data:`MAX_VALUES`."""
        self._values += n
        if self._values > MAX_VALUES:
            raise YAMLLimitError(
                problem=f"the document stands for more than {MAX_VALUES:,} values once its aliases are "
                "expanded (an alias bomb?); a config or matrix needs far fewer",
                problem_mark=mark,
            )

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose one node, counting its values (an alias: those of its anchor) and its depth."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = self.anchors.get(event.anchor)
            if node is not None:  # an undefined alias is PyYAML's own error
                size = self._sizes.get(id(node))
                if size is None:
                    raise YAMLLimitError(
                        problem=f"alias *{event.anchor} is inside its own anchor (a recursive structure)",
                        problem_mark=event.start_mark,
                    )
                self._count(size, event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YAMLLimitError(
                problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=event.start_mark
            )
        before = self._values
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._count(1, event.start_mark)
        if getattr(event, "anchor", None) is not None:
            self._sizes[id(node)] = self._values - before
        return node


class UniqueKeyLoader(BoundedLoader):
    """:class:`BoundedLoader` that also rejects duplicate mapping keys (PyYAML silently keeps the last)."""


def _construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden here
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {quote(key)} (first at line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, where: str, *, unique_keys: bool = False) -> Any:
    """Parse YAML ``text`` from ``where`` (a file name) within the bounds; ``unique_keys`` refuses a mapping
    that repeats a key.

    Raises:
        InputFileError: malformed, or beyond the bounds; the message names ``where`` and the line.
    """
    loader = UniqueKeyLoader if unique_keys else BoundedLoader
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except YAMLLimitError as exc:
        line = f" line {exc.problem_mark.line + 1}:" if exc.problem_mark else ""
        raise InputFileError(f"{where}:{line} {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputFileError(f"{where}:{at} invalid YAML: {problem}") from None


# ---------------------------------------------------------------------------------------------- JSON

_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # a string (skipped whole) or a bracket


def _check_json_depth(text: str, where: str) -> None:
    """Refuse JSON nested deeper than :data:`MAX_DEPTH` before ``json.loads`` recurses into it."""
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                raise InputFileError(f"{where}: line {line}: nested more than {MAX_DEPTH} levels deep")
        elif token in ("]", "}"):
            depth -= 1


def parse_json(text: str, where: str) -> Any:
    """Parse JSON ``text`` from ``where`` (a file name), refusing nesting deeper than :data:`MAX_DEPTH`.

    Raises:
        InputFileError: malformed or too deep; the message names ``where`` and the line.
    """
    _check_json_depth(text, where)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno}, column {exc.colno}"
        raise InputFileError(f"{where}: invalid JSON at {at}: {exc.msg}") from None
    except RecursionError:  # pragma: no cover - _check_json_depth refuses such a document first
        raise InputFileError(f"{where}: nested too deeply") from None


def parse_document(path: str | Path, what: str, *, unique_keys: bool = False) -> Any:
    """Read and parse the ``what`` file at ``path``: JSON when it ends in ``.json``, else YAML.

    Args:
        unique_keys: refuse a YAML mapping that repeats a key.

    Raises:
        InputFileError: the file cannot be read (:func:`read_text`), is malformed, or is beyond the bounds
            (:data:`MAX_VALUES`, :data:`MAX_DEPTH`); the message names the file and the line.
    """
    path = Path(path)
    text = read_text(path, what)
    if path.suffix.lower() == ".json":
        return parse_json(text, str(path))
    return parse_yaml(text, str(path), unique_keys=unique_keys)
