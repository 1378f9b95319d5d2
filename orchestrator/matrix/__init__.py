"""Experiment matrices: the YAML schema, axis aliases, expansion into runs, and run keys.

A matrix names a ``base`` config, ``seeds``, and points to run: the cartesian product of ``axes``,
named ``cells``, or each cell crossed with the axes. Every point is resolved into a full
:class:`~model.config.RunConfig` and validated before anything runs; each (point, seed) becomes a
:class:`RunSpec` with its identity: a run key that covers the resolved config (seed included), the code
and the data (:mod:`orchestrator.identity`).

- :mod:`~orchestrator.matrix.schema`: the schema and :class:`RunSpec`;
- :mod:`~orchestrator.matrix.expand`: points -> validated runs;
- :mod:`~orchestrator.matrix.load`: reading a file, command-line overrides, limits, selections.
"""

from orchestrator.matrix.expand import (
    axis_params,
    axis_value,
    base_config,
    base_mapping,
    check_axes,
    expand,
    resolve_point,
    run_count,
    scaled_steps,
    varying_axes,
)
from orchestrator.matrix.load import (
    edit_matrix,
    load_matrix,
    matches,
    parse_where,
    read_matrix,
    recorded_verdict,
    select_specs,
    split_names,
    verdict_settings,
)
from orchestrator.matrix.schema import (
    AXIS_ALIASES,
    MAX_RUNS,
    Budget,
    Cell,
    Choices,
    Matrix,
    MatrixError,
    Range,
    RunSpec,
    SearchSettings,
)

__all__ = [
    "AXIS_ALIASES",
    "MAX_RUNS",
    "Budget",
    "Cell",
    "Choices",
    "Matrix",
    "MatrixError",
    "Range",
    "RunSpec",
    "SearchSettings",
    "axis_params",
    "axis_value",
    "base_config",
    "base_mapping",
    "check_axes",
    "edit_matrix",
    "expand",
    "load_matrix",
    "matches",
    "parse_where",
    "read_matrix",
    "recorded_verdict",
    "resolve_point",
    "run_count",
    "scaled_steps",
    "select_specs",
    "split_names",
    "varying_axes",
    "verdict_settings",
]
