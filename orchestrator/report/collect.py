"""From the tracking store to verdicts: gather each cell's curves over its seeds and judge them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from orchestrator.errors import UserError
from orchestrator.matrix import RunSpec
from orchestrator.report.grouping import logged_keys
from orchestrator.report.selection import Selection
from orchestrator.tracking import RunRecord, RunStatus, Tracker, TrackingError, axes_from_tags, flatten
from orchestrator.tracking.vocabulary import TAG_EXPECT, TAG_FAILURE, TAG_KEY
from orchestrator.verdict import CellData, CellVerdict, VerdictSettings, judge_cell


class ReportError(UserError, ValueError):
    """Nothing to judge: unknown experiment, no runs, or the metric was never logged."""


def _pick(runs: list[RunRecord]) -> RunRecord:
    """Of several attempts at one run key, the latest with a curve to judge, else the latest."""
    finished = [r for r in runs if r.status.has_curve]
    pool = finished or runs
    return max(pool, key=lambda r: r.start_time)


def collect_cells(
    tracker: Tracker,
    experiment: str,
    metric: str,
    *,
    specs: Sequence[RunSpec] | None = None,
    select: Selection = Selection(),  # noqa: B008 - frozen
) -> list[CellData]:
    """Gather every cell's runs from ``experiment``.

    With ``specs`` (a matrix's expansion) exactly those runs count, in the matrix's order, with the
    matrix's axis values, expectations and guards: by default the runs of the current code and data
    (the specs' run keys), else those ``select`` picks among the runs of the specs' configs. Without
    ``specs``, every run tagged ``orch.cell`` and ``orch.seed`` that ``select`` admits counts, whoever
    logged it, with axes and expectations read from its tags; with ``select.grouping``, every run of the
    experiment, its cell and seed made from its params or tags.

    Raises:
        ReportError: unknown experiment, no runs, ``metric`` in none of them, or every run failed.
    """
    by_config = not select.current
    keys = {(s.config_key if by_config else s.run_key) for s in specs} if specs else None
    grouping = None if specs else select.grouping
    try:
        records = tracker.records(experiment, [metric], keys=keys, by_config=by_config, every=bool(grouping))
    except TrackingError as exc:
        raise ReportError(str(exc)) from None
    if grouping is not None:
        records = grouping.group(records, experiment)
    records = [r for r in records if select.admits(r)]
    _check_records(tracker, records, experiment, metric, specs, select)
    cells: dict[str, CellData] = {}
    if specs:
        by_key: dict[str, list[RunRecord]] = {}
        for r in records:
            by_key.setdefault(r.config_key if by_config else r.run_key, []).append(r)
        for spec in specs:
            if spec.cell not in cells:
                config = flatten(spec.target.describe())  # the resolved config, or a function's params
                cells[spec.cell] = CellData(
                    spec.cell, dict(spec.axes), spec.expect, tuple(spec.guards), config=config
                )
            cell = cells[spec.cell]
            runs = by_key.get(spec.config_key if by_config else spec.run_key)
            if not runs:
                cell.missing += 1
                continue
            _add(cell, _pick(runs), spec.seed, metric)
    else:
        by_cell_seed: dict[tuple[str, int], list[RunRecord]] = {}
        for r in records:
            by_cell_seed.setdefault((r.cell, r.seed), []).append(r)
        for (name, seed), runs in sorted(by_cell_seed.items()):
            rec = _pick(runs)
            if name not in cells:
                axes, expect = axes_from_tags(rec.tags), rec.tags.get(TAG_EXPECT)
                cells[name] = CellData(name, axes, expect, config=_run_config(tracker, rec))
            cell = cells[name]
            _add(cell, rec, seed, metric)
    return list(cells.values())


def _run_config(tracker: Tracker, rec: RunRecord) -> dict[str, Any]:
    """A run's flat resolved config, for the report's context (its data, its budget): its params when they
    hold it (runs logged with their whole config as params, others' runs), else its ``config.json`` (a
    sweep's runs log only their axes as params; a run orch did not make has no config.json)."""
    if "data.source" in rec.params or TAG_KEY not in rec.tags:
        return dict(rec.params)
    return tracker.run_config(rec.run_id) or dict(rec.params)


def _check_records(
    tracker: Tracker,
    records: list[RunRecord],
    experiment: str,
    metric: str,
    specs: Sequence[RunSpec] | None,
    select: Selection,
) -> None:
    """Raise ReportError saying why there is nothing to judge: no runs, or none that logged ``metric``
    (because every run failed, with the first failure's reason)."""
    if not records:
        known = ", ".join(tracker.experiment_names()) or "none"
        which = "" if select.current else f" of {select.describe()}"
        stale = ""
        if (
            specs
            and select.current
            and tracker.records(experiment, [], keys={s.config_key for s in specs}, by_config=True)
        ):
            stale = " (its runs were made by other code or data: `orch sweep` runs them again, "
            stale += "`orch report --code FINGERPRINT` judges the old ones)"
        if not specs and select.current:  # runs another tool made: they can be grouped by their params
            others = tracker.records(experiment, [], every=True)
            if others:
                raise ReportError(
                    f"experiment {experiment!r} has {len(others)} runs, none tagged orch.cell and orch.seed: "
                    "group them into cells by their params or tags, e.g. --cell-by params.lr --seed-by "
                    f"params.seed (the runs log: {logged_keys(others)})"
                )
        raise ReportError(
            f"experiment {experiment!r} has no runs tagged orch.cell and orch.seed{which}"
            + (f" for this matrix{stale or ': run `orch sweep` first'}" if specs else "")
            + f" (experiments in the store: {known})"
        )
    if any(r.history.get(metric) and r.history[metric][0][0] >= 0 for r in records):
        return
    failed = sorted((r for r in records if not r.status.has_curve), key=lambda r: r.start_time)
    if len(failed) == len(records):
        counts = ", ".join(
            f"{sum(r.status is s for r in failed)} {s.value}"
            for s in RunStatus
            if any(r.status is s for r in failed)
        )
        first = failed[0]
        why = first.tags.get(TAG_FAILURE) or first.status.value
        raise ReportError(
            f"every run in {experiment!r} failed ({counts}); the first, {first.cell} seed {first.seed}: {why}"
        )
    logged = sorted({m for r in records for m in r.history})
    raise ReportError(f"no run in {experiment!r} logged the metric {metric!r} per epoch (logged: {logged})")


def _add(cell: CellData, rec: RunRecord, seed: int, metric: str) -> None:
    if rec.status is RunStatus.DIVERGED:
        cell.diverged += 1
        return
    if not rec.status.has_curve:
        cell.crashed += 1
        return
    curve = rec.curve(metric)
    if curve.size == 0:
        cell.crashed += 1
        return
    cell.seeds.append(seed)
    cell.curves.append(curve)
    cell.run_ids.append(rec.run_id)
    budget = rec.budget("trainer.epochs")  # its orch.epochs tag (a function's runs too), else its param
    if rec.status is RunStatus.STOPPED and budget is not None:  # judged over the budget's window
        cell.planned_epochs = max(cell.planned_epochs or 0, int(budget) + 1)
    for name, points in rec.history.items():
        cell.finals.setdefault(name, []).append(points[-1][1])


def judge_cells(cells: Sequence[CellData], settings: VerdictSettings) -> list[CellVerdict]:
    """A verdict per cell (pure: no store access); a final metric that not every judged run logged is left
    out of its cell's."""
    return [
        judge_cell(
            replace(cell, finals={k: v for k, v in cell.finals.items() if len(v) == len(cell.curves)}),
            settings,
        )
        for cell in cells
    ]
