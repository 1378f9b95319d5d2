"""What a sweep would do with each of a matrix's runs, decided from the store before anything starts.

:func:`preflight` checks what would make every run fail (a device this machine lacks, a missing data
path); :func:`plan_sweep` reads the store and gives each run a :class:`PlanState`; :func:`dry_run_plan` is
``orch sweep --dry-run``: the plan without creating a store that does not exist yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from model.config import FastMRIData, HDF5Data
from model.data import DataError
from model.trainer import resolve_device
from orchestrator.matrix import RunSpec
from orchestrator.tracking import RunStatus, Tracker, prepare_store
from orchestrator.tracking.store import sqlite_path

__all__ = ["PlanItem", "PlanState", "dry_run_plan", "plan_sweep", "preflight"]


class PlanState(StrEnum):
    """What a sweep does with one (cell, seed)."""

    DONE = "done"  # a run with its key finished (or stopped early while the matrix asks for early stops)
    TODO = "todo"  # never run
    FAILED = "failed"  # its last attempt crashed or diverged: run again
    KILLED = "killed"  # its last attempt was interrupted: run again
    EARLY = "early"  # it stopped early, but the matrix now asks for the full budget: run again

    @property
    def label(self) -> str:
        """How the plan table says it."""
        return {
            PlanState.TODO: "to run",
            PlanState.FAILED: "failed before: retry",
            PlanState.KILLED: "interrupted: retry",
            PlanState.EARLY: "stopped early before: full budget now",
        }.get(self, self.value)

    @property
    def style(self) -> str:
        """Its colour in the plan table (rich style)."""
        return {PlanState.DONE: "green", PlanState.FAILED: "red", PlanState.KILLED: "yellow"}.get(
            self, "cyan"
        )


@dataclass(frozen=True)
class PlanItem:
    spec: RunSpec
    state: PlanState


def preflight(specs: list[RunSpec]) -> None:
    """Check, once per distinct setting, what would make every run of a sweep fail: a device this
    machine lacks, a data file or folder that does not exist.

    Raises:
        model.config.ConfigError: a device that is not here.
        model.data.DataError: a missing data path.
    """
    for device in {s.config.trainer.device for s in specs}:
        resolve_device(device)
    for data in {s.config.data.model_dump_json(): s.config.data for s in specs}.values():
        if isinstance(data, HDF5Data) and not Path(data.path).exists():
            raise DataError(f"{data.path}: no such data file")
        if isinstance(data, FastMRIData) and not Path(data.directory).exists():
            raise DataError(f"{data.directory}: no such data folder")


def _state(runs: list[tuple[str, RunStatus]], early_stop: bool) -> PlanState:
    """The plan for a run key whose attempts, oldest first, ended as ``runs``."""
    done = (RunStatus.FINISHED, RunStatus.STOPPED) if early_stop else (RunStatus.FINISHED,)
    if any(status in done for _, status in runs):
        return PlanState.DONE
    if not runs:
        return PlanState.TODO
    last = runs[-1][1]
    if last is RunStatus.STOPPED:
        return PlanState.EARLY
    return PlanState.FAILED if last in (RunStatus.CRASHED, RunStatus.DIVERGED) else PlanState.KILLED


def plan_sweep(
    specs: list[RunSpec], tracker: Tracker, experiment: str, *, fresh: bool = False
) -> list[PlanItem]:
    """What a sweep would do with each run (:class:`PlanState`); ``fresh`` runs everything again."""
    states = tracker.run_states(experiment)
    return [
        PlanItem(s, PlanState.TODO if fresh else _state(states.get(s.run_key, []), bool(s.early_stop)))
        for s in specs
    ]


def dry_run_plan(
    specs: list[RunSpec], tracking_uri: str, experiment: str, *, fresh: bool = False
) -> list[PlanItem]:
    """``orch sweep --dry-run``: the plan, read from the store when it exists (never creating one).

    Raises:
        orchestrator.tracking.TrackingError: the store exists but cannot be opened.
    """
    db = sqlite_path(tracking_uri)
    if db is not None and not db.exists():
        return [PlanItem(s, PlanState.TODO) for s in specs]
    return plan_sweep(specs, Tracker(prepare_store(tracking_uri)), experiment, fresh=fresh)
