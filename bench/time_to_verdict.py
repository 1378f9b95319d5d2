"""Benchmark 5: time to verdict with early stops (``budget.early_stop``) against the full budget.

Runs the matrix at its full budget (resumable: finished runs in the store are reused), then replays the
early-stop rule of ``orchestrator/execute/early_stop.py`` on every run's logged curve: training is
deterministic, so a run stopped at epoch e would have logged exactly the first e + 1 epochs of the full
run (``--verify N`` trains N runs for real with the rule on and checks it). The stopped curves are judged
as ``orch report`` judges a store with early stops (over the budget's window, each stopped run's line
extended to its end).
Prints, per cell, the verdict on the full curves and on the stopped ones, and the epochs each needed.

``--cell-rule`` replays a rule orch does not have, to measure what it would save: a run may also stop
once its *cell's* verdict, judged as ``orch report`` judges it on the curves of its seeds so far, is
decided (``falls``, ``flat`` or ``rises``) for ``patience`` epochs in a row. ``sequential``: the seeds of a
cell run one after another (one worker), each seeing its finished siblings; ``lockstep``: they all run at
once (a worker per seed), each seeing the others' curves so far. The earliest epoch and the hold of a
skip-weight decay are the run rule's.

    .venv/bin/python -m bench.time_to_verdict [--matrix matrices/test_matrix.yaml] [--patience N]
        [--confidence C] [--precision bfloat16] [--verify 1] [--cell-rule sequential|lockstep]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from bench.common import ROOT, TEST_MATRIX, bfloat16_matrix, positive_int, wide_console
from model.trainer import fit
from orchestrator.execute.early_stop import EarlyStopRule
from orchestrator.execute.sweep import run_sweep
from orchestrator.matrix import expand, load_matrix
from orchestrator.report.collect import CellData, collect_cells, judge_cells
from orchestrator.tracking import Tracker
from orchestrator.verdict import Verdict, VerdictSettings

__all__ = ["main"]


def _stop_epoch(rule_settings: dict, history: dict[str, list[tuple[int, float]]], metric: str) -> int:
    rule = EarlyStopRule.from_payload(rule_settings)
    curve = [v for _, v in sorted(history[metric])]
    for epoch, value in enumerate(curve):
        if rule({metric: value}):
            return epoch
    return len(curve) - 1


def _judged(cell: CellData, runs: list[tuple[int, np.ndarray, dict, int]], planned: int) -> CellData:
    """``cell`` with only ``runs`` (seed, curve, metric history, last epoch), as judged after early stops."""
    out = CellData(cell.name, cell.axes, cell.expect, cell.guards, seeds=[r[0] for r in runs])
    out.planned_epochs = planned
    for _, curve, history, last in runs:
        out.curves.append(curve[: last + 1])
        for name, points in history.items():
            out.finals.setdefault(name, []).append(dict(points).get(last, points[-1][1]))
    return out


def _held(readings: list[str | None], patience: int) -> bool:
    """The last ``patience`` readings are one and the same decided verdict."""
    last = readings[-patience:]
    return len(last) == patience and last[0] is not None and len(set(last)) == 1


def cell_stops(
    cell: CellData, histories: list[dict], own: list[int], rule: dict, settings: VerdictSettings, mode: str
) -> list[int]:
    """Stop epochs under the what-if cell rule (``own``: each run's stop under the run rule alone)."""
    planned = max(len(c) for c in cell.curves)
    warmup = EarlyStopRule.from_payload(rule).settings.warmup_of(rule["epochs"] + 1)
    first = max(warmup + rule["min_window"] - 1, rule.get("hold_until", 0))
    patience = rule.get("patience", 1)

    def decided(runs: list[tuple[int, np.ndarray, dict, int]]) -> str | None:
        verdict = judge_cells([_judged(cell, runs, planned)], settings)[0].verdict
        return None if verdict in (Verdict.INCONCLUSIVE, Verdict.DIVERGED) else str(verdict)

    items = list(zip(cell.seeds, cell.curves, histories, strict=True))
    stops = list(own)
    if mode == "sequential":
        for k, (seed, curve, history) in enumerate(items):
            done = [(s, c, h, stops[i]) for i, (s, c, h) in enumerate(items[:k])]  # finished siblings
            readings: list[str | None] = []
            for epoch in range(first, own[k]) if k else ():
                readings.append(decided([*done, (seed, curve, history, epoch)]))
                if _held(readings, patience):
                    stops[k] = epoch
                    break
        return stops
    readings = []
    for epoch in range(first, planned - 1):
        going = [i for i in range(len(items)) if stops[i] > epoch]
        if not going:
            break
        readings.append(decided([(s, c, h, min(stops[i], epoch)) for i, (s, c, h) in enumerate(items)]))
        if _held(readings, patience):
            for i in going:
                stops[i] = epoch
            break
    return stops


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", default=str(TEST_MATRIX))
    ap.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / 'runs' / 'mlflow.db'}")
    ap.add_argument(
        "--patience", type=positive_int, default=None, help="default: the matrix's budget.early_stop_patience"
    )
    ap.add_argument(
        "--confidence", type=float, default=None, help="the rule's interval level (default: the verdict's)"
    )
    ap.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="bfloat16: the matrix's runs "
        "under trainer.precision bfloat16, as bench/precision_verdicts.py trains them (<name>_bfloat16)",
    )
    ap.add_argument("--verify", type=int, default=1, help="runs to train for real with early stops on")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument(
        "--cell-rule",
        choices=("sequential", "lockstep"),
        default=None,
        help="also replay a run stopping once its cell's verdict is decided (a what-if, not orch's rule)",
    )
    return ap


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    console = wide_console()
    matrix, specs = load_matrix(args.matrix)
    root = Path(args.matrix).resolve().parent
    if args.precision == "bfloat16":
        matrix = bfloat16_matrix(matrix)
        specs = expand(matrix, root=root)
    console.print(f"full budget: {matrix.name}, {len(specs)} runs (finished runs are reused)")
    run_sweep(matrix, specs, tracking_uri=args.tracking_uri, workers=args.workers)

    update: dict = {"early_stop": True}
    if args.patience is not None:
        update["early_stop_patience"] = args.patience
    budget = matrix.budget.model_copy(update=update)
    early_specs = expand(matrix.model_copy(update={"budget": budget}), root=root)
    rules = {s.run_key: s.early_stop for s in early_specs}
    if args.confidence is not None:
        rules = {k: {**r, "confidence": args.confidence} for k, r in rules.items()}
    settings = matrix.verdict
    tracker = Tracker(args.tracking_uri)
    full_cells = collect_cells(tracker, matrix.name, settings.metric, specs=specs)
    wanted = [settings.metric, *(g.metric for g in settings.guards)] + [
        settings.floor_metric or settings.metric
    ]
    records = {r.run_id: r for r in tracker.records(matrix.name, wanted, keys={s.run_key for s in specs})}

    stopped_cells, trained = [], {}
    for cell in full_cells:
        recs = [records[run_id] for run_id in cell.run_ids]
        histories = [rec.history for rec in recs]
        stops = [_stop_epoch(rules[rec.run_key], rec.history, settings.metric) for rec in recs]
        if args.cell_rule:
            stops = cell_stops(cell, histories, stops, rules[recs[0].run_key], settings, args.cell_rule)
        planned = max(len(c) for c in cell.curves)  # as collect_cells sets it for stopped runs
        runs = list(zip(cell.seeds, cell.curves, histories, stops, strict=True))
        stopped_cells.append(_judged(cell, runs, planned))
        trained[cell.name] = (sum(len(c) - 1 for c in cell.curves), sum(stops))
    full_v = {v.cell: v for v in judge_cells(full_cells, settings)}
    early_v = {v.cell: v for v in judge_cells(stopped_cells, settings)}
    rule_name = f", what-if cell rule: {args.cell_rule}" if args.cell_rule else ""
    title = f"time to verdict: {matrix.name}, early_stop_patience={budget.early_stop_patience}{rule_name}"
    _print_summary(console, title, trained, full_v, early_v)
    _verify(console, early_specs[: args.verify], rules, records, settings.metric)


def _print_summary(console: Any, title: str, trained: dict, full_v: dict, early_v: dict) -> None:
    """The per-cell table (verdicts at full budget and with early stops, epochs trained) and the total."""
    table = Table(title=title)
    for col in ("cell", "full budget", "early stops", "same", "epochs full", "epochs early", "saved"):
        table.add_column(col)
    all_same, sum_full, sum_early = True, 0, 0
    for name, (ef, ee) in trained.items():
        a, b = full_v[name], early_v[name]
        same = (a.verdict, a.state) == (b.verdict, b.state)
        all_same &= same
        sum_full, sum_early = sum_full + ef, sum_early + ee
        table.add_row(
            name,
            f"{a.verdict} ({a.state})" if a.state else str(a.verdict),
            f"{b.verdict} ({b.state})" if b.state else str(b.verdict),
            "yes" if same else "NO",
            str(ef),
            str(ee),
            f"{1 - ee / ef:.0%}",
        )
    console.print(table)
    console.print(
        f"epochs trained: {sum_early} of {sum_full} ({1 - sum_early / sum_full:.1%} saved); "
        f"every verdict the same: {'yes' if all_same else 'NO'}"
    )


def _verify(console: Any, specs: list, rules: dict, records: dict, metric: str) -> None:
    """Train ``specs`` for real with early stops on and compare with the replay of the logged curves."""
    for spec in specs:
        rule = EarlyStopRule.from_payload(rules[spec.run_key])
        result = fit(spec.config, on_epoch=lambda r, rule=rule: rule(r.metrics))
        real = np.array([e.metrics[metric] for e in result.epochs])
        rec = next(r for r in records.values() if r.run_key == spec.run_key)
        logged = np.array([v for _, v in sorted(rec.history[metric])])[: len(real)]
        replay_stop = _stop_epoch(rules[spec.run_key], rec.history, metric)
        console.print(
            f"verify {spec.cell} seed {spec.seed}: trained with early stops to epoch {len(real) - 1} "
            f"(replay: {replay_stop}); curve max |difference| from the full run's first epochs "
            f"{float(np.max(np.abs(real - logged))):.1e}"
        )


if __name__ == "__main__":
    main()
