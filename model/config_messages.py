"""Readable messages for a configuration that pydantic refused.

One line per problem, with the dotted path of the field; an unknown key names the closest valid one
(``did you mean 'trainer.lr'?``) and lists the keys valid where it stands. Used for run configs
(:mod:`model.config`) and for anything else built from the same models (the orchestrator's matrices).
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from model.input_files import MAX_QUOTE, clip, quote

__all__ = ["describe_validation_error", "model_of", "unknown_key"]


def _tag_of(model: type[BaseModel]) -> Any:
    """The ``source`` literal of a data model (its union tag), or None."""
    field = model.model_fields.get("source")
    if field is None:
        return None
    args = typing.get_args(field.annotation)
    return args[0] if args else field.default


def model_of(annotation: Any, tag: Any = None) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (through Optional, Annotated and unions)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return model_of(typing.get_args(annotation)[0], tag)
    if origin in (Union, types.UnionType):
        members = [m for m in (model_of(a) for a in typing.get_args(annotation)) if m is not None]
        for member in members:
            if tag is not None and _tag_of(member) == tag:
                return member
        return members[0] if len(members) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _fields_at(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, tuple[str, ...]]:
    """Walk ``loc`` from ``root``; return the model owning the last element and the path walked."""
    model: type[BaseModel] | None = root
    walked: list[str] = []
    i = 0
    while i < len(loc) - 1 and model is not None:
        part = loc[i]
        field = model.model_fields.get(str(part))
        if field is None:
            return None, tuple(walked)
        walked.append(str(part))
        nxt = loc[i + 1] if i + 1 < len(loc) else None
        sub = model_of(field.annotation, tag=nxt)
        # a discriminated union puts the tag into the loc: skip it
        if sub is not None and nxt is not None and _tag_of(sub) == nxt:
            i += 1
        model = sub
        i += 1
    return model, tuple(walked)


def unknown_key(name: str, model: type[BaseModel], walked: list[str] | tuple[str, ...]) -> str:
    valid = sorted(model.model_fields)
    where = clip(".".join([*walked, name]))
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5) if len(name) <= MAX_QUOTE else []
    hint = f"; did you mean '{'.'.join([*walked, close[0]])}'?" if close else ""
    return f"unknown key '{where}'{hint} (valid here: {', '.join(valid)})"


_MAX_PROBLEMS = 10  # problems listed in one message; the rest are counted


def describe_validation_error(exc: ValidationError, root: type[BaseModel]) -> str:
    """One readable line per problem in ``exc`` (the first ten, then a count), with the closest valid key for
    unknown ones; the values quoted are cut to :data:`~model.input_files.MAX_QUOTE` characters."""
    lines = []
    errors = exc.errors()
    for err in errors[:_MAX_PROBLEMS]:
        loc = tuple(err.get("loc", ()))
        if err["type"] == "extra_forbidden" and loc:
            model, walked = _fields_at(root, loc)
            if model is not None:
                lines.append(unknown_key(str(loc[-1]), model, walked))
                continue
        tags = ("synthetic", "hdf5", "fastmri")  # a discriminated union's tag in the loc
        path = clip(".".join(str(p) for p in loc if not (isinstance(p, str) and p in tags)))
        msg = clip(err["msg"].removeprefix("Value error, "), 2 * MAX_QUOTE)
        got = err.get("input")
        quiet = err["type"] in ("missing", "value_error") or isinstance(got, dict)
        shown = "" if quiet else f" (got {quote(got)})"
        lines.append(f"{path}: {msg}{shown}" if path and not msg.startswith(path) else f"{msg}{shown}")
    if len(errors) > _MAX_PROBLEMS:
        lines.append(f"and {len(errors) - _MAX_PROBLEMS} more problems")
    return "; ".join(lines)
