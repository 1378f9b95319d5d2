"""The names every part of orch shares about a run: its status, its kind and its tags.

This module is the one owner of that vocabulary: runs are tagged with :func:`run_tags`, their status is
written with :meth:`RunStatus.failure_tag` and :attr:`RunStatus.mlflow_status` and read back with
:meth:`RunStatus.of`, and nothing else spells a tag name or a status string. It imports no MLflow, so a
worker process can use it.

The tags are public (users filter on them in ``mlflow ui``): ``orch.kind`` (``sweep`` for a sweep's parent
run, ``run`` for its child runs, ``trial`` for a search trial's, ``train`` and ``diagnose`` for the single
commands'), ``orch.sweep``, ``orch.cell``, ``orch.seed``, ``orch.run_key``, ``orch.axis.<name>``,
``orch.expect``, ``orch.status`` (a :class:`RunStatus` value), ``orch.failure`` (why a run failed:
``nan: ...`` for a diverged run, else the exception), ``orch.early_stop`` (why it stopped early), the
run's budget (``orch.epochs``, ``orch.steps_per_epoch``: a sweep's runs log only their axes as params), the
run's identity (``orch.config_key``, ``orch.code``, ``orch.data``; :mod:`orchestrator.identity`), the
code it ran (``orch.git_commit``, ``orch.git_dirty``, ``orch.version.<package>``), the verdict of its
cell as the sweep judged it (``orch.verdict``, ``orch.verdict_change``), the epoch of its resumable
checkpoint (``orch.checkpoint_epoch``, artifact ``checkpoint/last.pt``), how its image grids were
labelled (``orch.image_layout``; :mod:`orchestrator.tracking.images`); a run of the user's own training
function also carries ``orch.entrypoint`` (docs/own_training.md). A sweep's parent run's description
(``mlflow.note.content``) is its report in markdown; the experiment's is the matrix's ``description``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

TAG_KIND = "orch.kind"
TAG_SWEEP = "orch.sweep"
TAG_CELL = "orch.cell"
TAG_SEED = "orch.seed"
TAG_KEY = "orch.run_key"
TAG_AXIS = "orch.axis."  # prefix: one tag per axis value
TAG_EXPECT = "orch.expect"
TAG_STATUS = "orch.status"
TAG_FAILURE = "orch.failure"
TAG_STOP = "orch.early_stop"
TAG_CONFIG_KEY = "orch.config_key"  # the run's config and seed alone (orchestrator.identity)
TAG_CODE = "orch.code"  # fingerprint of the code that computed the run
TAG_DATA = "orch.data"  # fingerprint of its data
TAG_GIT_COMMIT = "orch.git_commit"
TAG_GIT_DIRTY = "orch.git_dirty"
TAG_VERDICT = "orch.verdict"  # the cell's verdict, set on its runs by the sweep's report
TAG_VERDICT_CHANGE = "orch.verdict_change"
TAG_CHECKPOINT = "orch.checkpoint_epoch"  # the epoch its logged checkpoint ends (checkpoint/last.pt)
TAG_IMAGE_LAYOUT = "orch.image_layout"  # JSON: image key -> the label band and scale of its logged grids
NOTE = "mlflow.note.content"  # MLflow's description of a run or an experiment (markdown, mlflow ui shows it)
TAG_DESCRIPTION = "orch.description"  # on the experiment: the matrix's description orch set as its note
TAG_ENTRYPOINT = "orch.entrypoint"  # a run of the user's own training function: its module:function
TAG_EPOCHS = "orch.epochs"  # the run's budget in epochs, the built-in model's and the user's function's alike
TAG_STEPS = "orch.steps_per_epoch"  # the built-in model's trainer.steps_per_epoch (absent: one pass an epoch)

#: ``orch.failure`` of a diverged run starts with this (the MLflow contract: "why: nan, or the exception").
_NAN = "nan"


class RunKind(StrEnum):
    """What a tracked run is (the ``orch.kind`` tag)."""

    SWEEP = "sweep"  # a sweep's parent run
    RUN = "run"  # one (cell, seed) of a sweep
    TRIAL = "trial"  # one (trial, seed) of a search
    TRAIN = "train"  # `orch train`
    DIAGNOSE = "diagnose"  # `orch diagnose`


class RunStatus(StrEnum):
    """How a run ended (the ``orch.status`` tag), or ``running`` while it is in flight.

    ``finished``, ``diverged`` and ``stopped`` are also the statuses :func:`model.trainer.fit` returns.
    """

    RUNNING = "running"
    FINISHED = "finished"  # trained its whole budget
    STOPPED = "stopped"  # stopped early by the matrix's early-stop rule (a result, judged over the budget)
    DIVERGED = "diverged"  # a loss went NaN/Inf: a result (the cell may read "diverged"), not a crash
    CRASHED = "crashed"  # an exception, or its worker process died
    KILLED = "killed"  # interrupted (Ctrl-C, a killed sweep): run again by the next sweep

    @property
    def mlflow_status(self) -> str:
        """MLflow's run status for this one."""
        return {
            RunStatus.RUNNING: "RUNNING",
            RunStatus.FINISHED: "FINISHED",
            RunStatus.STOPPED: "FINISHED",
            RunStatus.KILLED: "KILLED",
        }.get(self, "FAILED")

    @property
    def has_curve(self) -> bool:
        """Its epochs are a result to judge (finished, or stopped early by the rule)."""
        return self in (RunStatus.FINISHED, RunStatus.STOPPED)

    def end_tags(self, reason: str | None) -> dict[str, str]:
        """The tags that record this ending: ``orch.status``, and ``orch.failure`` or ``orch.early_stop``."""
        tags = {TAG_STATUS: self.value}
        if self is RunStatus.DIVERGED:
            tags[TAG_FAILURE] = f"{_NAN}: {reason}"
        elif self in (RunStatus.CRASHED, RunStatus.KILLED):
            tags[TAG_FAILURE] = reason or ("exception" if self is RunStatus.CRASHED else "killed")
        elif self is RunStatus.STOPPED and reason:
            tags[TAG_STOP] = reason
        return tags

    @classmethod
    def of(cls, mlflow_status: str, tags: Mapping[str, str]) -> RunStatus:
        """The status of a run read back from the store (its MLflow status and tags).

        A run logged by an orch that predates the ``orch.status`` tag is read from its MLflow status, its
        ``orch.failure`` (``nan...``: diverged) and its ``orch.early_stop`` tag.
        """
        if mlflow_status == "RUNNING":
            return cls.RUNNING
        if tags.get(TAG_STATUS) in cls._value2member_map_:
            return cls(tags[TAG_STATUS])
        if mlflow_status == "FINISHED":
            return cls.STOPPED if tags.get(TAG_STOP) else cls.FINISHED
        if mlflow_status == "KILLED":
            return cls.KILLED
        return cls.DIVERGED if tags.get(TAG_FAILURE, "").startswith(_NAN) else cls.CRASHED


def _tag_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def run_tags(
    kind: RunKind,
    *,
    sweep: str | None = None,
    cell: str | None = None,
    seed: int | None = None,
    run_key: str | None = None,
    axes: Mapping[str, Any] | None = None,
    expect: str | None = None,
    **extra: Any,
) -> dict[str, str]:
    """The tags of a new run: its kind, and what it is of a sweep, a search or a single command.

    Args:
        kind: :class:`RunKind`.
        sweep: the sweep (or search) id.
        cell, seed, run_key: which (cell, seed) it trains and its run key.
        axes: the cell's axis values (lists and mappings as JSON).
        expect: the matrix's expectation for the cell.
        extra: further ``orch.<name>`` tags (``trial=3`` -> ``orch.trial``).
    """
    tags = {TAG_KIND: kind.value}
    for name, value in ((TAG_SWEEP, sweep), (TAG_CELL, cell), (TAG_SEED, seed), (TAG_KEY, run_key)):
        if value is not None:
            tags[name] = str(value)
    tags |= {f"{TAG_AXIS}{k}": _tag_value(v) for k, v in (axes or {}).items()}
    if expect:
        tags[TAG_EXPECT] = expect
    tags |= {f"orch.{k}": _tag_value(v) for k, v in extra.items() if v is not None}
    return tags


def cell_metric(cell: str, name: str) -> str:
    """The name of a cell's result logged on its sweep's parent run: ``cell.<cell>.<name>`` (``end``,
    ``change``, ``vs_const``), characters MLflow refuses in a metric name (``=``, ``,``...) as ``_``."""
    safe = _REFUSED_IN_METRIC_NAMES.sub("_", cell)
    return f"cell.{safe}.{name}"


#: What MLflow refuses in a metric name: anything but letters, digits, ``_ - . / :`` and spaces.
_REFUSED_IN_METRIC_NAMES = re.compile(r"[^\w.\- /:]")


def axes_from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """A run's axis values as its tags hold them (strings)."""
    return {k.removeprefix(TAG_AXIS): v for k, v in tags.items() if k.startswith(TAG_AXIS)}
