"""`orch ablate`: which single change turns a verdict?

Two cells of a matrix differ in several axes (the note's ``no_skip`` and ``no_skip_everywhere`` in four).
The ablation walks from one to the other changing one axis at a time: each step is a cell of its own, with
the matrix's seeds, run like any sweep's (under the matrix's experiment, so finished runs of the same
config, code and data are reused, the two ends included), and judged; the report names the step where the
verdict changes. The order of the changes can be given; by default it is the order the axes are listed
in the matrix's ``--to`` cell, then the ``--from`` cell's.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.matrix import Cell, Matrix, MatrixError, RunSpec, axis_value, expand

__all__ = ["AblationStep", "ablation_matrix", "flips"]


@dataclass(frozen=True)
class AblationStep:
    """One point of the path: its cell name, and the axis it changed from the previous step."""

    cell: str
    axis: str | None
    before: Any = None
    after: Any = None

    def describe(self) -> str:
        if self.axis is None:
            return "start"
        return f"{self.axis}: {_text(self.before)} -> {_text(self.after)}"


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _point(specs: Sequence[RunSpec], name: str, option: str) -> RunSpec:
    for spec in specs:
        if spec.cell == name:
            return spec
    names = list(dict.fromkeys(s.cell for s in specs))
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.0)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise MatrixError(f"{option}: no cell named {name!r}{hint} (cells: {', '.join(names)})")


def _check_order(order: Sequence[str], axes: Sequence[str]) -> None:
    """Every axis of ``--order`` is one the two cells set (one they set alike is simply not changed)."""
    for axis in order:
        if axis not in axes:
            close = difflib.get_close_matches(axis, list(axes), n=1, cutoff=0.0)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise MatrixError(
                f"--order: {axis!r} is no axis of either cell{hint} (their axes: {', '.join(axes)})"
            )


def ablation_matrix(
    matrix: Matrix, *, start: str, end: str, order: Sequence[str] = (), root: Path | None = None
) -> tuple[Matrix, list[AblationStep]]:
    """The matrix of the path from cell ``start`` to cell ``end``, one axis change a step.

    Args:
        matrix: The matrix the two cells belong to (named cells, or points of its axes).
        start, end: Cell names (as ``orch sweep --dry-run`` lists them).
        order: Axes in the order to change them (default: as listed in ``end``'s cell, then ``start``'s);
            axes that do not differ are ignored, differing axes left out go last.
        root: The folder the matrix's paths are relative to.

    Returns:
        A matrix under the same experiment name with one named cell per step, and the steps.

    Raises:
        MatrixError: an unknown cell (the closest named), an ``order`` axis neither cell has, two cells
            that do not differ, or a step the config schema rejects.
    """
    specs = expand(matrix, root=root)
    first, last = _point(specs, start, "--from"), _point(specs, end, "--to")
    axes = list(dict.fromkeys([*last.axes, *first.axes]))
    values = {a: (axis_value(first.config, a), axis_value(last.config, a)) for a in axes}
    _check_order(order, axes)
    differ = [a for a in axes if values[a][0] != values[a][1]]
    if not differ:
        raise MatrixError(f"cells {start!r} and {end!r} do not differ in any axis")
    ordered = [a for a in order if a in differ] + [a for a in differ if a not in order]
    current = {a: values[a][0] for a in axes}
    cells = {start: Cell(values=dict(current))}
    steps = [AblationStep(start, None)]
    for i, axis in enumerate(ordered):
        current[axis] = values[axis][1]
        name = end if i == len(ordered) - 1 else f"{start} +{','.join(ordered[: i + 1])}"
        cells[name] = Cell(values=dict(current))
        steps.append(AblationStep(name, axis, values[axis][0], values[axis][1]))
    path = matrix.model_copy(update={"cells": cells, "axes": {}, "exclude": []})
    expand(path, root=root)  # every step is a valid config, or nothing starts
    return path, steps


def flips(steps: Sequence[AblationStep], verdicts: dict[str, Any]) -> list[AblationStep]:
    """The steps whose verdict (with its state) differs from the previous step's."""
    out = []
    for prev, step in zip(steps, steps[1:], strict=False):
        a, b = verdicts.get(prev.cell), verdicts.get(step.cell)
        if (
            a is not None
            and b is not None
            and (a.verdict, a.state, a.observed) != (b.verdict, b.state, b.observed)
        ):
            out.append(step)
    return out
