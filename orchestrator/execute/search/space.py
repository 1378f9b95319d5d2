"""What `orch search` explores: Optuna distributions for a matrix's axes, the values it holds fixed, and
the sampled point as the runs' axis values.

List axes and ``{choices: [...]}`` are categorical, ``{low, high[, log, step]}`` continuous (integer when
its bounds are whole). ``--cells NAME`` searches the axes around one named cell (its values fixed);
``--where AXIS=V`` pins an axis to one of its values (no longer searched).
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from orchestrator.errors import UserError
from orchestrator.matrix import Choices, Matrix, Range


class SearchError(UserError, ValueError):
    """A search that cannot start (study exists without --resume, cells in the matrix...)."""


def _encode(value: Any) -> Any:
    """Optuna categoricals hold None, bool, int, float or str: lists travel as JSON."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def _choices(axis: Any) -> list[Any]:
    return axis.choices if isinstance(axis, Choices) else axis if isinstance(axis, list) else []


def _distribution(axis: Any) -> BaseDistribution:
    if isinstance(axis, Range):
        whole = all(float(v).is_integer() for v in (axis.low, axis.high, axis.step or 1.0))
        if whole:  # {low: 128, high: 512} is an integer axis (widths, epochs...)
            return IntDistribution(int(axis.low), int(axis.high), log=axis.log, step=int(axis.step or 1))
        return FloatDistribution(axis.low, axis.high, log=axis.log, step=axis.step)
    return CategoricalDistribution([_encode(v) for v in _choices(axis)])


@dataclass
class SearchSpace:
    """The distributions searched (by axis name, sorted) and the axis values held fixed."""

    distributions: dict[str, BaseDistribution]
    fixed: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, list[Any]] = field(default_factory=dict)  # categorical values as the YAML has them

    def decode(self, name: str, value: Any) -> Any:
        """A sampled value as the matrix spells it (a JSON-encoded list back to the list)."""
        for choice in self.choices.get(name, []):
            if _encode(choice) == value:
                return choice
        return value

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's point: every axis's value, the fixed ones included."""
        values = dict(self.fixed)
        for name, dist in self.distributions.items():
            values[name] = self.decode(name, _suggest(trial, name, dist))
        return values

    def first(self) -> dict[str, Any]:
        """One point of the space (each axis's first choice or low end), to validate before starting."""
        values = dict(self.fixed)
        for name, d in self.distributions.items():
            raw = d.choices[0] if isinstance(d, CategoricalDistribution) else d.low  # type: ignore[attr-defined]
            values[name] = self.decode(name, raw)
        return values


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def search_space(
    matrix: Matrix, *, cell: str | None = None, where: dict[str, str] | None = None
) -> SearchSpace:
    """The search space of ``matrix``'s axes, around ``cell`` (a named cell's values fixed) and with the
    axes of ``where`` pinned to one value each.

    Raises:
        SearchError: the matrix has cells and none is chosen, an unknown cell or axis, a pinned value the
            axis does not hold, or nothing left to search.
    """
    fixed: dict[str, Any] = {}
    if matrix.cells and cell is None:
        names = ", ".join(matrix.cells)
        raise SearchError(
            f"`orch search` explores a matrix's axes; this one has named cells ({names}): pass --cells NAME "
            "to search the axes around one of them, or use `orch sweep`"
        )
    if cell is not None:
        if cell not in matrix.cells:
            known = list(matrix.cells)
            close = difflib.get_close_matches(cell, known, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SearchError(f"--cells: no cell named '{cell}'{hint} (cells: {', '.join(known) or 'none'})")
        fixed |= matrix.cells[cell].values
    for axis, text in (where or {}).items():
        if axis not in matrix.axes:
            close = difflib.get_close_matches(axis, sorted(matrix.axes), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SearchError(f"--where: no axis '{axis}'{hint} (axes: {', '.join(sorted(matrix.axes))})")
        fixed[axis] = _pin(axis, matrix.axes[axis], text)
    if not matrix.axes:
        raise SearchError("the matrix has no axes to search")
    searched = sorted(a for a in matrix.axes if a not in (where or {}))
    if not searched:
        raise SearchError("--where pins every axis: nothing is left to search (use `orch sweep`)")
    return SearchSpace(
        {a: _distribution(matrix.axes[a]) for a in searched},
        fixed,
        {a: _choices(matrix.axes[a]) for a in searched if not isinstance(matrix.axes[a], Range)},
    )


def _pin(name: str, axis: Any, text: str) -> Any:
    """The value ``text`` names on ``axis`` (a number within a range, or one of the choices)."""
    if isinstance(axis, Range):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and axis.low <= value <= axis.high):
            raise SearchError(f"--where {name}={text}: not a number in the axis's range {axis.describe()}")
        return int(value) if isinstance(_distribution(axis), IntDistribution) else value
    choices = _choices(axis)
    for choice in choices:
        same_text = _encode(choice) == text or str(choice).lower() == text.lower()
        try:
            same_number = float(text) == float(choice)
        except (TypeError, ValueError):
            same_number = False
        if same_text or same_number:
            return choice
    shown = ", ".join(str(_encode(c)) for c in choices)
    raise SearchError(f"--where {name}={text}: not one of the axis's values ({shown})")


def format_value(value: Any) -> str:
    """A parameter value as a person reads it: floats to 3 significant digits (``3.2e-04``, ``0.125``)."""
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
            return f"{value:.2e}"
        return f"{value:.3g}"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def format_params(params: dict[str, Any]) -> str:
    """``lr=3.2e-04, recon_weight=0.125``."""
    return ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
