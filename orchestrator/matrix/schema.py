"""The matrix YAML's schema: axes and their aliases, named cells, budget, verdict and search settings, and
:class:`RunSpec`, one (cell, seed) to run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model.config import (
    RunConfig,
    Seed,
)
from model.input_files import quote
from orchestrator.errors import UserError
from orchestrator.identity import RunIdentity
from orchestrator.target.base import RunTarget
from orchestrator.verdict.objective import Objective
from orchestrator.verdict.settings import Guard, VerdictSettings

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
    "content_stop_gradient": ("trainer.content_stop_gradient",),
    "lr": ("trainer.lr",),
    "lr_schedule": ("trainer.lr_schedule",),
    "lr_warmup_epochs": ("trainer.lr_warmup_epochs",),
    "lr_final": ("trainer.lr_final",),
    "batch_size": ("trainer.batch_size",),
    "epochs": ("trainer.epochs",),
    "noise": ("data.noise",),
    "structural_difference": ("data.structural_difference",),
    "misregistration": ("data.misregistration",),
    "fat_suppression": ("data.fat_suppression",),
}


class MatrixError(UserError, ValueError):
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

    objective: Objective = Field(
        Objective.FINAL,
        description="final: where the verdict window's fitted line ends, mean over seeds (against the "
        "constant baseline where logged: end / baseline - 1); drop: the verdict's relative change over the "
        "window (more negative is better); orchestrator/verdict/objective.py",
    )
    pruner: Literal["trend", "median", "none"] = Field(
        "trend",
        description="trend: prune a trial whose optimistic trend cannot beat the best completed trial; "
        "median: Optuna's MedianPruner on the raw per-epoch values; none",
    )
    startup_trials: int = Field(3, ge=0, description="completed trials before pruning starts")
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
    scale: float = Field(
        1.0,
        gt=0,
        description="every run at scale times its steps: trainer.steps_per_epoch times scale, the epochs, "
        "the verdict's warm-up and window and every schedule in epochs unchanged (docs/remedies.md, "
        "'Budget scaling'); each scale's runs have their own run keys, and at 1 a run's key is the one it "
        "had before budget.scale existed",
    )


class Trainer(_Strict):
    """The ``trainer:`` section: the runs call the user's own training function instead of the built-in
    model (docs/own_training.md); ``base`` and the cells are then that function's params."""

    entrypoint: str = Field(
        pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$",
        description="module:function, imported from the matrix's folder, the working folder or the Python "
        "path; called as function(params, seed, epochs), it yields a dict of metrics an epoch, epoch 0 first",
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
    trainer: Trainer | None = None

    @model_validator(mode="before")
    @classmethod
    def _function_baselines(cls, data: Any) -> Any:
        # a function's floor and constant baseline are named after its metric: <metric>_floor and
        # <metric>_baseline, unless the verdict names others (the built-in model's defaults stay theirs)
        if not (isinstance(data, dict) and data.get("trainer") and isinstance(data.get("verdict"), dict)):
            return data
        verdict = dict(data["verdict"])
        if isinstance(verdict.get("metric"), str):
            verdict.setdefault("floor_metric", f"{verdict['metric']}_floor")
            verdict.setdefault("baseline_metric", f"{verdict['metric']}_baseline")
        return {**data, "verdict": verdict}

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

    def early_stop_rule(self, epochs: int, hold_until: int = 0) -> dict[str, Any] | None:
        """The early-stop rule's settings for one run of ``epochs`` epochs that must not stop before epoch
        ``hold_until`` (None when the budget does not ask for early stops)."""
        if not self.budget.early_stop:
            return None
        v = self.verdict
        return {
            "hold_until": hold_until,
            "metric": v.metric,
            "epochs": epochs,
            "min_change": v.min_change,
            "warmup": v.warmup,
            "min_window": v.min_window,
            "patience": self.budget.early_stop_patience,
            "confidence": v.confidence,
            "floor_metric": v.floor_metric,
        }

    def at_scale(self, scale: float) -> Matrix:
        """This matrix with ``budget.scale`` set to ``scale`` (its runs at ``scale`` times their steps)."""
        return self.model_copy(update={"budget": self.budget.model_copy(update={"scale": float(scale)})})

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
    """One (cell, seed) to run, with its identity (:mod:`orchestrator.identity`) and what it computes
    (``target``, :mod:`orchestrator.target`): ``config`` is the built-in model's resolved RunConfig, or the
    params of a run of the user's own function."""

    cell: str
    seed: int
    axes: dict[str, Any]
    config: RunConfig | dict[str, Any]
    identity: RunIdentity
    target: RunTarget
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

    @property
    def epochs(self) -> int:
        """Its budget: epochs after epoch 0."""
        return self.target.epochs

    @property
    def device(self) -> str:
        """The device it asks for (how many workers a machine gets)."""
        return self.target.device

    def to_payload(self) -> dict[str, Any]:
        """What a worker process needs: the target travels as it is (pickled; a validated config stays
        as it was built, so that what the user left at its default stays a default)."""
        return {"run_key": self.run_key, "target": self.target, "early_stop": self.early_stop}
