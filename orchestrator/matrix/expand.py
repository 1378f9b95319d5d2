"""From a matrix to its runs: each point (cell, axis values) resolved into a validated RunConfig per seed,
with its identity (:mod:`orchestrator.identity`)."""

from __future__ import annotations

import difflib
import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from model.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    describe_validation_error,
    read_config_file,
)
from model.input_files import MAX_QUOTE, clip, quote
from orchestrator.identity import identify
from orchestrator.matrix.entrypoint import function_point, param_value
from orchestrator.matrix.schema import AXIS_ALIASES, Cell, Matrix, MatrixError, RunSpec
from orchestrator.target.model import ModelTarget


def base_mapping(base: dict[str, Any] | str, root: Path) -> dict[str, Any]:
    if isinstance(base, dict):
        return base
    for candidate in (root / base, Path(base)):
        if (
            candidate.exists() or candidate.is_symlink()
        ):  # a directory or a broken link: read_config_file says
            try:
                return read_config_file(candidate)
            except ConfigError as exc:
                raise MatrixError(f"base: {exc}") from None
    raise MatrixError(
        f"base: no such config file {quote(base)} (looked next to the matrix and in {Path.cwd()})"
    )


def run_count(matrix: Matrix) -> tuple[int, str]:
    """How many runs ``matrix`` asks for, counted without expanding it, and how the count is made up
    (``"6 axes of 10 values x 1 seed"``). ``exclude`` is not applied: it can only remove runs, so this is
    an upper bound.

    Raises:
        MatrixError: an axis is a range (:meth:`Matrix.grid_axes`).
    """
    lengths = [len(values) for values in matrix.grid_axes().values()]
    cells = len(matrix.cells)
    if not lengths and not cells:
        return 0, "no axes or cells"
    parts = [f"{cells} cell{'s' * (cells != 1)}"] if cells else []
    if lengths:
        sizes = str(lengths[0]) if len(set(lengths)) == 1 else " x ".join(map(str, lengths))
        parts.append(f"{len(lengths)} {'axis' if len(lengths) == 1 else 'axes'} of {sizes} values")
    seeds = len(matrix.seeds)
    parts.append(f"{seeds} seed{'s' * (seeds != 1)}")
    return max(cells, 1) * math.prod(lengths) * seeds, " x ".join(parts)


def _axis_paths(axis: str) -> tuple[str, ...]:
    if axis in AXIS_ALIASES:
        return AXIS_ALIASES[axis]
    if "." in axis or axis in RunConfig.model_fields:  # a config path (a whole section, e.g. data)
        return (axis,)
    close = difflib.get_close_matches(axis, list(AXIS_ALIASES), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise MatrixError(
        f"unknown axis '{clip(axis)}'{hint} (axes: {', '.join(sorted(AXIS_ALIASES))}, or a dotted config "
        "path such as trainer.lr)"
    )


def axis_value(config: RunConfig | dict[str, Any], axis: str) -> Any:
    """The value an axis (alias or dotted path) has in a resolved config (an alias: its first path's), or
    in a function's params (a key or dotted path).

    Raises:
        MatrixError: an unknown axis.
    """
    if isinstance(config, dict):
        return param_value(config, axis)
    node: Any = config.to_dict()
    for part in _axis_paths(axis)[0].split("."):
        node = node[part]
    return node


def varying_axes(specs: Sequence[RunSpec]) -> list[str]:
    """The axes (as the matrix names them, in its order) whose resolved values differ between the cells of
    ``specs``; every axis of a single cell. What a sweep logs as its runs' MLflow params: an axis every
    cell shares says nothing about a run, and each param pushes a run's image cards down in ``mlflow ui``.
    """
    first: dict[str, RunSpec] = {}
    for spec in specs:
        first.setdefault(spec.cell, spec)
    axes = list(dict.fromkeys(a for spec in first.values() for a in spec.axes))
    if len(first) <= 1:
        return axes

    def seen(axis: str) -> set[str]:
        return {json.dumps(axis_value(s.config, axis), default=str) for s in first.values()}

    return [a for a in axes if len(seen(a)) > 1]


def axis_params(spec: RunSpec, axes: Sequence[str]) -> dict[str, Any]:
    """``spec``'s value of each axis of ``axes`` in its resolved config (a cell that does not name an
    axis has the base's value): the MLflow params of its run."""
    return {axis: axis_value(spec.config, axis) for axis in axes}


def _points(matrix: Matrix) -> list[tuple[str, dict[str, Any], Cell | None]]:
    """(name, axis values, cell) for every point, in a deterministic order."""
    axes = matrix.grid_axes()
    names = sorted(axes)
    product = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(axes[n] for n in names))]
    product = product or [{}]

    def label(values: dict[str, Any]) -> str:
        return ",".join(f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in values.items())

    points: list[tuple[str, dict[str, Any], Cell | None]] = []
    if matrix.cells:
        for cell_name, cell in matrix.cells.items():
            for values in product:
                name = cell_name if not values else f"{cell_name}/{label(values)}"
                points.append((name, {**cell.values, **values}, cell))
    elif matrix.axes:
        points = [(label(values), values, None) for values in product]
    excluded = [
        p for p in points if any(all(p[1].get(k) == v for k, v in ex.items()) for ex in matrix.exclude)
    ]
    return [p for p in points if p not in excluded]


def base_config(matrix: Matrix, root: Path | None = None) -> dict[str, Any]:
    """The matrix's base as a mapping (read from its file when ``base`` is a path)."""
    return base_mapping(matrix.base, root or Path.cwd())


def check_axes(matrix: Matrix) -> None:
    """Every axis name (in axes, cells and exclude) is an alias or a dotted path (a function's matrix: any
    key of its params).

    Raises:
        MatrixError: an unknown axis, with the closest alias.
    """
    if matrix.trainer is not None:
        return
    for axis in {*matrix.axes, *(k for c in matrix.cells.values() for k in c.values)}:
        _axis_paths(axis)
    for ex in matrix.exclude:
        for axis in ex:
            _axis_paths(axis)


def resolve_point(
    matrix: Matrix,
    base: dict[str, Any],
    name: str,
    values: dict[str, Any],
    cell: Cell | None = None,
    *,
    root: Path | None = None,
) -> list[RunSpec]:
    """One point (axis values) of ``matrix`` as a validated :class:`RunSpec` per seed; at a
    ``budget.scale`` other than 1 its steps per epoch multiplied (:func:`scaled_steps`). A matrix over the
    user's own function (``trainer``) makes runs of it instead
    (:func:`~orchestrator.matrix.entrypoint.function_point`, its module imported from ``root``, the
    matrix's folder, and the working folder).

    Raises:
        MatrixError: a value the RunConfig schema rejects, naming cell, axis, value and the rule.
    """
    if matrix.trainer is not None:
        return function_point(matrix, base, name, values, cell, root)
    overrides: dict[str, Any] = {}
    if matrix.budget.epochs:
        overrides["trainer.epochs"] = matrix.budget.epochs
    if matrix.budget.steps_per_epoch:
        overrides["trainer.steps_per_epoch"] = matrix.budget.steps_per_epoch
    for axis, value in values.items():
        for path in _axis_paths(axis):
            overrides[path] = value
    specs = []
    for seed in matrix.seeds:
        config = _validate(base, {**overrides, "trainer.seed": seed}, name, values)
        if matrix.budget.scale != 1:
            steps = scaled_steps(config.trainer.steps_per_epoch, matrix.budget.scale, name)
            config = _validate(
                base, {**overrides, "trainer.seed": seed, "trainer.steps_per_epoch": steps}, name, values
            )
        specs.append(
            RunSpec(
                cell=name,
                seed=seed,
                axes=dict(values),
                config=config,
                identity=identify(config),
                target=ModelTarget(config),
                expect=cell.expect if cell else None,
                note=cell.note if cell else None,
                guards=tuple(cell.guards) if cell else (),
                early_stop=_early_stop(matrix, config),
            )
        )
    return specs


def _validate(
    base: dict[str, Any], overrides: dict[str, Any], name: str, values: dict[str, Any]
) -> RunConfig:
    """``base`` with ``overrides`` as a validated RunConfig (an error names the cell and its values)."""
    try:
        return RunConfig.model_validate(apply_overrides(base, overrides))
    except ConfigError as exc:
        raise MatrixError(f"cell {quote(name)}: {exc}") from None
    except ValidationError as exc:
        detail = describe_validation_error(exc, RunConfig)
        shown = clip(", ".join(f"{k}={quote(v)}" for k, v in values.items()), 2 * MAX_QUOTE)
        raise MatrixError(f"cell {quote(name)} ({shown}): {detail}") from None


def scaled_steps(steps: int | None, scale: float, cell: str) -> int:
    """The steps per epoch of a run at ``budget.scale`` (``steps`` at scale 1).

    Raises:
        MatrixError: the cell's epoch is one pass over its data (no ``steps_per_epoch`` to multiply), or
            the product is not a whole number of steps.
    """
    if steps is None:
        raise MatrixError(
            f"cell {quote(cell)}: budget.scale {scale:g} multiplies the steps of an epoch, and this "
            "cell's epoch is one pass over its training pairs: give budget.steps_per_epoch (the steps at "
            "scale 1, e.g. the training pairs // batch_size)"
        )
    product = steps * scale
    if abs(product - round(product)) > 1e-9 or round(product) < 1:
        raise MatrixError(
            f"cell {quote(cell)}: budget.scale {scale:g} x {steps} steps per epoch = {product:g}, "
            "not a whole number of steps"
        )
    return round(product)


def _early_stop(matrix: Matrix, config: RunConfig) -> dict[str, Any] | None:
    """The early-stop rule's settings for one run (None when the budget does not ask for early stops)."""
    tc = config.trainer
    # a scheduled skip or content weight changes training until its schedule ends: no verdict before that
    # is final
    skip_end = 0 if tc.skip_schedule == "constant" else (tc.skip_decay_epochs or tc.epochs)
    content_end = 0 if tc.content_schedule == "constant" else (tc.content_ramp_epochs or tc.epochs)
    return matrix.early_stop_rule(tc.epochs, hold_until=max(skip_end, content_end))


def expand(matrix: Matrix, *, root: Path | None = None) -> list[RunSpec]:
    """Resolve every (point, seed) of ``matrix`` into a validated :class:`RunSpec`.

    Raises:
        MatrixError: unknown axis, invalid value, a range axis, empty product.
    """
    base = base_config(matrix, root)
    check_axes(matrix)
    points = _points(matrix)
    if not points:
        raise MatrixError(
            "the matrix has no points to run: give 'axes' or 'cells' (or 'exclude' removed all)"
        )
    specs = [
        s for name, values, cell in points for s in resolve_point(matrix, base, name, values, cell, root=root)
    ]
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        if spec.run_key in seen:
            twin = seen[spec.run_key]
            raise MatrixError(
                f"cells {quote(twin.cell)} and {quote(spec.cell)} resolve to the same config (seed "
                f"{spec.seed}): one run cannot stand for two cells; make them differ or drop one"
            )
        seen[spec.run_key] = spec
    return specs
