"""Reading a matrix: the file (bounded YAML), command-line overrides, the run-count limit, and a few of
its cells.

``orch sweep matrices/test_matrix.yaml budget.epochs=48 seeds=[0,1,2] base.trainer.lr=3e-4`` reruns the
matrix with a longer budget, three seeds and another learning rate without copying the YAML: each
``key=value`` sets one field of the matrix's mapping (values read as YAML) before it is validated, so an
override is checked exactly as the file is (a key that names no field fails with the closest valid one).
``base.<config path>`` overrides the base run config, read from its file when ``base`` is a path.
``--cells`` and ``--where axis=value`` keep some of the matrix's runs (:func:`select_specs`).
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from model.config import (
    ConfigError,
    apply_overrides,
    describe_validation_error,
    parse_overrides,
)
from model.input_files import InputFileError, parse_yaml, read_text
from orchestrator.matrix.entrypoint import with_value
from orchestrator.matrix.expand import base_mapping, expand, run_count
from orchestrator.matrix.schema import Matrix, MatrixError, RunSpec
from orchestrator.verdict.settings import VerdictSettings


def _read_yaml(path: Path) -> dict[str, Any]:
    """The matrix file's mapping: UTF-8 YAML without duplicate keys, within the bounds of
    :mod:`model.input_files` (nesting, aliases)."""
    try:
        data = parse_yaml(read_text(path, "matrix"), str(path), unique_keys=True)
    except InputFileError as exc:
        raise MatrixError(str(exc)) from None
    if not isinstance(data, dict):
        raise MatrixError(f"{path}: a matrix must be a mapping with at least 'name'")
    return data


def read_matrix(source: str | Path | dict[str, Any], overrides: Sequence[str] = ()) -> tuple[Matrix, Path]:
    """Read and validate a matrix without expanding it; returns it and the folder its paths are
    relative to.

    Args:
        overrides: ``key=value`` changes to the matrix's mapping (:func:`edit_matrix`), applied before it
            is validated.

    Raises:
        MatrixError: missing file, bad YAML, schema errors, an override naming no field.
    """
    where, root = "matrix", Path.cwd()
    if isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        data, where, root = _read_yaml(path), str(path), path.resolve().parent
    if overrides:
        try:
            data = edit_matrix(data, overrides, root)
        except MatrixError as exc:
            raise MatrixError(f"{where}: {exc}") from None
    try:
        return Matrix.model_validate(data), root
    except ValidationError as exc:
        raise MatrixError(f"{where}: {describe_validation_error(exc, Matrix)}") from None


def _check_size(matrix: Matrix, max_runs: int | None) -> None:
    """Refuse a matrix of more than ``max_runs`` runs before expanding it (None: no limit)."""
    if max_runs is None:
        return
    n, how = run_count(matrix)
    if n > max_runs:
        raise MatrixError(f"the matrix asks for {n:,} runs ({how}); above {max_runs:,} pass --yes")


def load_matrix(
    source: str | Path | dict[str, Any], *, max_runs: int | None = None, overrides: Sequence[str] = ()
) -> tuple[Matrix, list[RunSpec]]:
    """Read, validate and expand a matrix (with ``overrides``: :func:`read_matrix`).

    Args:
        max_runs: refuse, before expanding, a matrix that asks for more runs than this (:func:`run_count`;
            ``orch sweep`` passes :data:`MAX_RUNS` unless told ``--yes``); None: no limit.

    Returns:
        The matrix and every run it asks for, each validated as a RunConfig.

    Raises:
        MatrixError: anything wrong, with file, cell, axis and value named; nothing is started.
    """
    matrix, root = read_matrix(source, overrides)
    where = "matrix" if isinstance(source, dict) else str(source)
    try:
        _check_size(matrix, max_runs)
        specs = expand(matrix, root=root)
    except MatrixError as exc:
        raise MatrixError(f"{where}: {exc}") from None
    return matrix, specs


def edit_matrix(data: dict[str, Any], overrides: Sequence[str], root: Path) -> dict[str, Any]:
    """A copy of the matrix mapping ``data`` with ``key=value`` overrides applied.

    Raises:
        MatrixError: an override that is not ``key=value``, names no field of a matrix (the closest is
            suggested) or of the base run config.
    """
    try:
        items = parse_overrides(list(overrides), option="override", example="budget.epochs=48")
    except ConfigError as exc:
        raise MatrixError(str(exc)) from None
    out = copy.deepcopy(data)
    for key, value in items:
        head, _, rest = key.partition(".")
        if head not in Matrix.model_fields:
            close = difflib.get_close_matches(head, list(Matrix.model_fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            valid = ", ".join(sorted(Matrix.model_fields))
            raise MatrixError(f"override {key}: a matrix has no field '{head}'{hint} (fields: {valid})")
        if head == "base" and rest:
            base = base_mapping(out.get("base", {}), root)
            if out.get("trainer"):  # a function's params: any key (its own model, if any, judges them)
                out["base"] = with_value(base, rest, value)
                continue
            try:
                out["base"] = apply_overrides(base, {rest: value})
            except ConfigError as exc:
                raise MatrixError(f"override {key}: {str(exc).removeprefix('--set ')}") from None
            continue
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return out


def verdict_settings(
    data: dict[str, Any], overrides: Sequence[str] = (), where: str = "matrix"
) -> VerdictSettings:
    """The verdict settings of a matrix mapping ``data`` with ``verdict.KEY=VALUE`` ``overrides``, reading
    nothing else of it but whether it names a trainer (a function's floor and baseline metrics): the verdict
    of a matrix a sweep recorded, whose base config may not be here, or a report's ``--set``.

    Raises:
        MatrixError: an override of another section, or settings the schema refuses.
    """
    other = [o for o in overrides if not o.startswith("verdict.")]
    if other:
        raise MatrixError(f"{other[0]}: only verdict settings can be set here, e.g. verdict.warmup=8")
    kept = {k: data[k] for k in ("verdict", "trainer") if k in data}
    try:
        edited = edit_matrix({"name": "-", **kept}, overrides, Path.cwd())
        return Matrix.model_validate(edited).verdict
    except MatrixError as exc:
        raise MatrixError(f"{where}: {exc}") from None
    except ValidationError as exc:
        raise MatrixError(f"{where}: {describe_validation_error(exc, Matrix)}") from None


def recorded_verdict(text: str, where: str, overrides: Sequence[str] = ()) -> VerdictSettings:
    """The verdict settings of a matrix file's ``text`` (as a sweep's parent run holds it) with the
    ``verdict.`` overrides among ``overrides`` (that sweep's command line: the others did not change them).

    Raises:
        MatrixError: the text is not a matrix mapping, or its verdict settings are refused.
    """
    try:
        data = parse_yaml(text, where, unique_keys=True)
    except InputFileError as exc:
        raise MatrixError(str(exc)) from None
    if not isinstance(data, dict):
        raise MatrixError(f"{where}: a matrix must be a mapping")
    return verdict_settings(data, [o for o in overrides if o.startswith("verdict.")], where)


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else str(value)


def parse_where(conditions: Sequence[str]) -> dict[str, str]:
    """``["recon_weight=0.05", "cross_skip=no_skip"]`` -> axis -> value text.

    Raises:
        MatrixError: a condition is not ``axis=value``.
    """
    out = {}
    for text in (part for given in conditions for part in _WHERE_SPLIT.split(given)):
        axis, sep, value = text.partition("=")
        if not sep or not axis.strip():
            raise MatrixError(f"--where {text!r}: expected axis=value, e.g. recon_weight=0.05")
        out[axis.strip()] = value.strip()
    return out


#: A comma between two conditions (``recon_weight=0.05,cross_skip=no_skip``, as Hydra users type them):
#: one followed by ``axis=`` and outside brackets, so that a list value (``[128,64,32]``) stays whole.
_WHERE_SPLIT = re.compile(r",(?=\s*[A-Za-z_][\w.]*\s*=)(?![^\[]*\])")


def split_names(given: Sequence[str], known: Sequence[str]) -> list[str]:
    """``--cells`` as typed, each a cell name or a comma list of them (``a,b``), as a list of names: a value
    that is itself a cell's name (a grid point's, ``recon_weight=0.1,lr=0.01``) is kept whole."""
    return [n.strip() for g in given for n in ([g] if g in known else g.split(",")) if n.strip()]


def matches(axes: dict[str, Any], where: dict[str, str]) -> bool:
    """Whether axis values ``axes`` meet every ``axis=value`` condition (numbers compared by value)."""
    for axis, value in where.items():
        have = axes.get(axis)
        if have is None:
            return False
        try:
            if float(value) != float(have):
                return False
        except (TypeError, ValueError):
            if _text(have).lower() != value.lower():
                return False
    return True


def select_specs(
    specs: Sequence[RunSpec], *, cells: Sequence[str] = (), where: dict[str, str] | None = None
) -> list[RunSpec]:
    """The runs of the cells named (every cell when none is) whose axes meet every ``where`` condition.

    Raises:
        MatrixError: a name that is no cell, an axis no cell has, or no run left.
    """
    known = list(dict.fromkeys(s.cell for s in specs))
    cells = split_names(cells, known)
    unknown = [c for c in cells if c not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise MatrixError(f"--cells: no cell named '{unknown[0]}'{hint} (cells: {', '.join(known)})")
    axes = {a for s in specs for a in s.axes}
    missing = [a for a in (where or {}) if a not in axes]
    if missing:
        close = difflib.get_close_matches(missing[0], sorted(axes), n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise MatrixError(
            f"--where: no cell has the axis '{missing[0]}'{hint} (axes: {', '.join(sorted(axes))})"
        )
    out = [s for s in specs if (not cells or s.cell in cells) and matches(s.axes, where or {})]
    if not out:
        raise MatrixError("--cells/--where: no run of the matrix matches")
    return out
