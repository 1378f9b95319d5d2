"""Experiment matrices: the YAML schema, axis aliases, expansion into runs, and run keys.

A matrix names a ``base`` config, ``seeds``, and points to run: the cartesian product of ``axes``,
named ``cells``, or each cell crossed with the axes. Every point is resolved into a full
:class:`~model.config.RunConfig` and validated before anything runs; each (point, seed) becomes a
:class:`RunSpec` with its identity: a run key that covers the resolved config (seed included), the code
and the data (:mod:`orchestrator.identity`).
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from model.config import (
    ConfigError,
    RunConfig,
    Seed,
    apply_overrides,
    describe_validation_error,
    read_config_file,
)
from model.input_files import MAX_QUOTE, InputFileError, clip, parse_yaml, quote, read_text
from orchestrator.identity import RunIdentity, identify
from orchestrator.verdict.settings import Guard, VerdictSettings

__all__ = [
    "AXIS_ALIASES",
    "Budget",
    "Cell",
    "Choices",
    "MAX_RUNS",
    "Range",
    "SearchSettings",
    "axis_value",
    "base_config",
    "check_axes",
    "resolve_point",
    "read_matrix",
    "Matrix",
    "MatrixError",
    "RunSpec",
    "expand",
    "load_matrix",
    "run_count",
]

AXIS_ALIASES: dict[str, tuple[str, ...]] = {
    "same_domain_skip": ("trainer.same_domain_use_skip",),
    "cross_skip": ("trainer.cross_domain_strategy",),
    "recon_weight": ("trainer.loss_weights.recon",),
    "content_weight": ("trainer.loss_weights.content",),
    "cross_weight": ("trainer.loss_weights.cross",),
    "adv_weight": ("trainer.loss_weights.adv",),
    "latent_width": (
        "model.encoder.latent_channels",
        "model.decoder_a.latent_channels",
        "model.decoder_b.latent_channels",
    ),
    "decoder_features": ("model.decoder_a.features", "model.decoder_b.features"),
    "encoder_features": ("model.encoder.features",),
    "up_mode": ("model.up_mode",),
    "skip_weight": ("trainer.skip_weight",),
    "skip_schedule": ("trainer.skip_schedule",),
    "skip_weight_final": ("trainer.skip_weight_final",),
    "skip_decay_epochs": ("trainer.skip_decay_epochs",),
    "norm": ("model.norm",),
    "content_loss": ("trainer.content_loss",),
    "content_variance_weight": ("trainer.content_variance_weight",),
    "content_schedule": ("trainer.content_schedule",),
    "content_weight_final": ("trainer.content_weight_final",),
    "content_ramp_epochs": ("trainer.content_ramp_epochs",),
    "lr": ("trainer.lr",),
    "batch_size": ("trainer.batch_size",),
    "epochs": ("trainer.epochs",),
    "noise": ("data.noise",),
    "structural_difference": ("data.structural_difference",),
    "misregistration": ("data.misregistration",),
    "fat_suppression": ("data.fat_suppression",),
}


class MatrixError(ValueError):
    """A matrix that cannot be run; the message names the file, cell, axis and value."""


#: Runs a sweep takes without being told ``--yes``: more is likely a mistake (six axes of ten values are a
#: million runs, and expanding them alone takes hours).
MAX_RUNS = 10_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Cell(_Strict):
    """A named point: axis values plus the note's expectation for it."""

    values: dict[str, Any] = Field(default_factory=dict)
    expect: Literal["pass", "fail", "partial"] | None = None
    note: str | None = None
    guards: list[Guard] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _collect_values(cls, data: Any) -> Any:
        # cells are written flat: {recon_weight: 0.5, expect: fail, note: ...}
        if isinstance(data, dict) and "values" not in data:
            reserved = {"expect", "note", "guards"}
            data = {
                **{k: v for k, v in data.items() if k in reserved},
                "values": {k: v for k, v in data.items() if k not in reserved},
            }
        return data


class Range(_Strict):
    """A continuous (or integer) axis for `orch search`: ``{low: 0.01, high: 1.0, log: true}``."""

    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"range low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("a range cannot have both log and step")
        return self

    def describe(self) -> str:
        return f"{{low: {self.low:g}, high: {self.high:g}{', log' if self.log else ''}}}"


class Choices(_Strict):
    """A categorical axis for `orch search`: ``{choices: [128, 256, 512]}``."""

    choices: list[Any] = Field(min_length=1)


class SearchSettings(_Strict):
    """The ``search:`` section: what `orch search` optimises."""

    objective: Literal["final", "drop"] = Field(
        "final",
        description="final: the verdict metric at the last epoch (mean over seeds); drop: its relative "
        "change over the verdict window (more negative is better)",
    )
    pruner: Literal["median", "none"] = "median"
    startup_trials: int = Field(3, ge=0, description="trials before pruning starts")
    sampler_seed: int | None = Field(0, ge=0, lt=2**32, description="Optuna's sampler takes 32-bit seeds")


class Budget(_Strict):
    epochs: int | None = Field(None, ge=1, description="trainer.epochs for every run")
    steps_per_epoch: int | None = Field(None, ge=1)
    early_stop: bool = Field(
        False,
        description="stop a run once its own curve has read the same decided verdict, over its epochs so far "
        "and with its line extended to the budget's end, for early_stop_patience epochs in a row "
        "(orchestrator/execute/early_stop.py; the reason is logged as the tag orch.early_stop)",
    )
    early_stop_patience: int = Field(
        1, ge=1, description="consecutive decided epochs before an early stop (measured: docs/performance.md)"
    )


class Matrix(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    base: dict[str, Any] | str = Field(default_factory=dict)
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    axes: dict[str, Annotated[Range | Choices | list[Any], Field(union_mode="left_to_right")]] = Field(
        default_factory=dict
    )
    cells: dict[str, Cell] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    verdict: VerdictSettings = VerdictSettings()
    budget: Budget = Budget()
    search: SearchSettings = SearchSettings()

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {quote(seeds)}")
        return seeds

    @field_validator("axes")
    @classmethod
    def _non_empty_axes(cls, axes: dict[str, Any]) -> dict[str, Any]:
        for name, values in axes.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"axis {quote(name)} has no values")
        return axes

    def grid_axes(self) -> dict[str, list[Any]]:
        """Axes as value lists (``choices`` included).

        Raises:
            MatrixError: an axis is a range, which only `orch search` can explore.
        """
        out: dict[str, list[Any]] = {}
        for name, values in self.axes.items():
            if isinstance(values, Range):
                raise MatrixError(
                    f"axis {quote(name)} is a range {values.describe()}: ranges are for `orch search`; "
                    "give a list of values to sweep"
                )
            out[name] = values.choices if isinstance(values, Choices) else values
        return out


@dataclass(frozen=True)
class RunSpec:
    """One (cell, seed) to run, with its identity (:mod:`orchestrator.identity`)."""

    cell: str
    seed: int
    axes: dict[str, Any]
    config: RunConfig
    identity: RunIdentity
    expect: str | None = None
    note: str | None = None
    guards: tuple[Guard, ...] = field(default_factory=tuple)
    early_stop: dict[str, Any] | None = None  # EarlyStopRule fields when the budget asks for early stops

    @property
    def run_key(self) -> str:
        """The run's key: config, seed, code and data (a finished run with this key is never run again)."""
        return self.identity.run_key

    @property
    def config_key(self) -> str:
        """The key of its config and seed alone: the same run with other code or data has the same one."""
        return self.identity.config_key

    def to_payload(self) -> dict[str, Any]:
        """What a worker process needs: the validated config travels as it is (pickled), so that what the
        user left at its default stays a default."""
        return {"run_key": self.run_key, "config": self.config, "early_stop": self.early_stop}


# ------------------------------------------------------------------------------------------ loading


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


def read_matrix(source: str | Path | dict[str, Any]) -> tuple[Matrix, Path]:
    """Read and validate a matrix without expanding it; returns it and the folder its paths are
    relative to.

    Raises:
        MatrixError: missing file, bad YAML, schema errors.
    """
    where, root = "matrix", Path.cwd()
    if isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        data, where, root = _read_yaml(path), str(path), path.resolve().parent
    try:
        return Matrix.model_validate(data), root
    except ValidationError as exc:
        raise MatrixError(f"{where}: {describe_validation_error(exc, Matrix)}") from None


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


def _check_size(matrix: Matrix, max_runs: int | None) -> None:
    """Refuse a matrix of more than ``max_runs`` runs before expanding it (None: no limit)."""
    if max_runs is None:
        return
    n, how = run_count(matrix)
    if n > max_runs:
        raise MatrixError(f"the matrix asks for {n:,} runs ({how}); above {max_runs:,} pass --yes")


def load_matrix(
    source: str | Path | dict[str, Any], *, max_runs: int | None = None
) -> tuple[Matrix, list[RunSpec]]:
    """Read, validate and expand a matrix.

    Args:
        max_runs: refuse, before expanding, a matrix that asks for more runs than this (:func:`run_count`;
            ``orch sweep`` passes :data:`MAX_RUNS` unless told ``--yes``); None: no limit.

    Returns:
        The matrix and every run it asks for, each validated as a RunConfig.

    Raises:
        MatrixError: anything wrong, with file, cell, axis and value named; nothing is started.
    """
    matrix, root = read_matrix(source)
    where = "matrix" if isinstance(source, dict) else str(source)
    try:
        _check_size(matrix, max_runs)
        specs = expand(matrix, root=root)
    except MatrixError as exc:
        raise MatrixError(f"{where}: {exc}") from None
    return matrix, specs


def _base_mapping(base: dict[str, Any] | str, root: Path) -> dict[str, Any]:
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


def axis_value(config: RunConfig, axis: str) -> Any:
    """The value an axis (alias or dotted path) has in a resolved config (an alias: its first path's).

    Raises:
        MatrixError: an unknown axis.
    """
    node: Any = config.to_dict()
    for part in _axis_paths(axis)[0].split("."):
        node = node[part]
    return node


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
    return _base_mapping(matrix.base, root or Path.cwd())


def check_axes(matrix: Matrix) -> None:
    """Every axis name (in axes, cells and exclude) is an alias or a dotted path.

    Raises:
        MatrixError: an unknown axis, with the closest alias.
    """
    for axis in {*matrix.axes, *(k for c in matrix.cells.values() for k in c.values)}:
        _axis_paths(axis)
    for ex in matrix.exclude:
        for axis in ex:
            _axis_paths(axis)


def resolve_point(
    matrix: Matrix, base: dict[str, Any], name: str, values: dict[str, Any], cell: Cell | None = None
) -> list[RunSpec]:
    """One point (axis values) of ``matrix`` as a validated :class:`RunSpec` per seed.

    Raises:
        MatrixError: a value the RunConfig schema rejects, naming cell, axis, value and the rule.
    """
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
        try:
            config = RunConfig.model_validate(apply_overrides(base, {**overrides, "trainer.seed": seed}))
        except ConfigError as exc:
            raise MatrixError(f"cell {quote(name)}: {exc}") from None
        except ValidationError as exc:
            detail = describe_validation_error(exc, RunConfig)
            shown = clip(", ".join(f"{k}={quote(v)}" for k, v in values.items()), 2 * MAX_QUOTE)
            raise MatrixError(f"cell {quote(name)} ({shown}): {detail}") from None
        specs.append(
            RunSpec(
                cell=name,
                seed=seed,
                axes=dict(values),
                config=config,
                identity=identify(config),
                expect=cell.expect if cell else None,
                note=cell.note if cell else None,
                guards=tuple(cell.guards) if cell else (),
                early_stop=_early_stop(matrix, config),
            )
        )
    return specs


def _early_stop(matrix: Matrix, config: RunConfig) -> dict[str, Any] | None:
    """The early-stop rule's settings for one run (None when the budget does not ask for early stops)."""
    if not matrix.budget.early_stop:
        return None
    v = matrix.verdict
    tc = config.trainer
    # a scheduled skip or content weight changes training until its schedule ends: no verdict before that
    # is final
    skip_end = 0 if tc.skip_schedule == "constant" else (tc.skip_decay_epochs or tc.epochs)
    content_end = 0 if tc.content_schedule == "constant" else (tc.content_ramp_epochs or tc.epochs)
    hold_until = max(skip_end, content_end)
    return {
        "hold_until": hold_until,
        "metric": v.metric,
        "epochs": tc.epochs,
        "min_change": v.min_change,
        "warmup": v.warmup,
        "min_window": v.min_window,
        "patience": matrix.budget.early_stop_patience,
        "confidence": v.confidence,
        "floor_metric": v.floor_metric,
    }


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
    specs = [s for name, values, cell in points for s in resolve_point(matrix, base, name, values, cell)]
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
