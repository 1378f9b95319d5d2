"""A matrix over the user's own training function (``trainer: {entrypoint: "module:function"}``): its
points as runs of that function (docs/own_training.md).

``base`` and each cell are free-form params: an axis is a key of them, or a dotted path into nested ones
(the built-in model's axis aliases do not apply). Each point is validated by the function's own Pydantic
model when its ``params`` parameter is annotated with one, before anything runs. A run's key covers the
entrypoint, the params, the seed, the epochs (``budget.epochs``) and the fingerprint of the entrypoint's
module (or of every ``.py`` file of its top-level package); what data the function reads is not known to
orch (:func:`~orchestrator.identity.function_identity`).
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from model.config_messages import describe_validation_error
from model.input_files import MAX_QUOTE, clip, quote
from orchestrator.identity import function_identity, source_fingerprint
from orchestrator.matrix.schema import Cell, Matrix, MatrixError, RunSpec
from orchestrator.target.function import (
    EntrypointError,
    FunctionTarget,
    load_function,
    params_model,
    source_files,
)

__all__ = ["function_paths", "function_point", "param_value", "with_value"]

#: What MLflow accepts in a param's name (the params are logged flattened, ``optim.lr``).
_PARAM_NAME = re.compile(r"^[\w\-. /]{1,250}$")


def function_paths(root: Path | None) -> tuple[str, ...]:
    """Where a matrix's entrypoint is imported from before the Python path: its folder, the working one."""
    return tuple(dict.fromkeys(str(p.resolve()) for p in (root or Path.cwd(), Path.cwd())))


def with_value(params: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``params`` with ``value`` at the dotted ``path`` (missing levels made)."""
    out = copy.deepcopy(params)
    node = out
    *parents, leaf = path.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value
    return out


def param_value(params: dict[str, Any], path: str) -> Any:
    """The value at the dotted ``path`` of ``params`` (None where it has none)."""
    node: Any = params
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def function_point(
    matrix: Matrix,
    base: dict[str, Any],
    name: str,
    values: dict[str, Any],
    cell: Cell | None,
    root: Path | None,
) -> list[RunSpec]:
    """One point of a matrix over a function as a :class:`RunSpec` per seed.

    Raises:
        MatrixError: the entrypoint cannot be imported or called, no ``verdict.metric`` or
            ``budget.epochs``, a built-in model's budget setting, params the function's model refuses or
            whose names MLflow refuses.
    """
    assert matrix.trainer is not None
    entrypoint, paths = matrix.trainer.entrypoint, function_paths(root)
    _check_budget(matrix)
    params = base
    for axis, value in values.items():
        params = with_value(params, axis, value)
    shown = clip(", ".join(f"{k}={quote(v)}" for k, v in values.items()), 2 * MAX_QUOTE)
    where = f"cell {quote(name)}" + (f" ({shown})" if shown else "")
    try:
        function = load_function(entrypoint, paths)
        code = _fingerprint(tuple((n, str(p), *_stamp(p)) for n, p in source_files(entrypoint)))
    except EntrypointError as exc:
        raise MatrixError(f"trainer: {exc}") from None
    model = params_model(function)
    if model is not None:
        try:
            model.model_validate(params)
        except ValidationError as exc:
            raise MatrixError(f"{where}: {describe_validation_error(exc, model)}") from None
    bad = [k for k in _names(params) if not _PARAM_NAME.match(k)]
    if bad:
        raise MatrixError(f"{where}: param {quote(bad[0])}: MLflow takes letters, digits, _ - . / and spaces")
    epochs = matrix.budget.epochs
    assert epochs is not None
    return [
        RunSpec(
            cell=name,
            seed=seed,
            axes=dict(values),
            config=params,
            identity=function_identity(entrypoint, params, seed, epochs, code),
            target=FunctionTarget(entrypoint, params, seed, epochs, paths),
            expect=cell.expect if cell else None,
            note=cell.note if cell else None,
            guards=tuple(cell.guards) if cell else (),
            early_stop=matrix.early_stop_rule(epochs),
        )
        for seed in matrix.seeds
    ]


def _check_budget(matrix: Matrix) -> None:
    """What a function's matrix must say (its metric, its epochs) and what only the built-in model has."""
    if "metric" not in matrix.verdict.model_fields_set:
        raise MatrixError("verdict.metric: name the metric your function yields that its verdict judges")
    if matrix.budget.epochs is None:
        raise MatrixError("budget.epochs: the epochs after epoch 0 your function is called with")
    if matrix.budget.steps_per_epoch is not None or matrix.budget.scale != 1:
        raise MatrixError(
            "budget.steps_per_epoch and budget.scale set the built-in model's steps; a function sets its own"
        )


def _names(params: dict[str, Any], prefix: str = "") -> list[str]:
    """The params' names as they are logged (nested ones flattened: ``optim.lr``)."""
    out = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        out += _names(value, f"{name}.") if isinstance(value, dict) else [name]
    return out


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=16)
def _fingerprint(files: tuple[tuple[str, str, int, int], ...]) -> str:
    """The code fingerprint of source files (name, path, modification time, size): computed once while
    they are unchanged."""
    return source_fingerprint([(name, Path(path)) for name, path, _, _ in files])
