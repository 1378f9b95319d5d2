"""Benchmark 5: time to verdict with early stops (``budget.early_stop``) against the full budget.

Runs the matrix at its full budget (resumable: finished runs in the store are reused), then replays the
early-stop rule of ``orchestrator/early_stop.py`` on every run's logged curve: training is deterministic,
so a run stopped at epoch e would have logged exactly the first e + 1 epochs of the full run (``--verify N``
trains N runs for real with the rule on and checks it). The stopped curves are judged as ``orch report``
judges a store with early stops (over the budget's window, each stopped run's line extended to its end).
Prints, per cell, the verdict on the full curves and on the stopped ones, and the epochs each needed.

    .venv/bin/python -m bench.time_to_verdict [--matrix matrices/test_matrix.yaml] [--patience N]
        [--confidence C] [--precision bfloat16] [--verify 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.table import Table

from bench.common import ROOT, TEST_MATRIX, bfloat16_matrix, wide_console
from model.trainer import fit
from orchestrator.early_stop import EarlyStopRule
from orchestrator.judge import CellData, collect_cells, judge_cells
from orchestrator.matrix import expand, load_matrix
from orchestrator.sweep import run_sweep
from orchestrator.tracking import Tracker

__all__ = ["main"]


def _stop_epoch(rule_settings: dict, history: dict[str, list[tuple[int, float]]], metric: str) -> int:
    rule = EarlyStopRule.from_payload(rule_settings)
    curve = [v for _, v in sorted(history[metric])]
    for epoch, value in enumerate(curve):
        if rule({metric: value}):
            return epoch
    return len(curve) - 1


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", default=str(TEST_MATRIX))
    ap.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / 'runs' / 'mlflow.db'}")
    ap.add_argument(
        "--patience", type=int, default=None, help="default: the matrix's budget.early_stop_patience"
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
    args = ap.parse_args(argv)
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
        short = CellData(cell.name, cell.axes, cell.expect, cell.guards, seeds=list(cell.seeds))
        short.planned_epochs = max(len(c) for c in cell.curves)  # as collect_cells sets it for stopped runs
        full_epochs = early_epochs = 0
        for run_id, curve in zip(cell.run_ids, cell.curves, strict=True):
            rec = records[run_id]
            stop = _stop_epoch(rules[rec.run_key], rec.history, settings.metric)
            short.curves.append(curve[: stop + 1])
            for name, points in rec.history.items():
                at = dict(points)
                short.finals.setdefault(name, []).append(at.get(stop, points[-1][1]))
            full_epochs += len(curve) - 1
            early_epochs += stop
        stopped_cells.append(short)
        trained[cell.name] = (full_epochs, early_epochs)
    full_v = {v.cell: v for v in judge_cells(full_cells, settings)}
    early_v = {v.cell: v for v in judge_cells(stopped_cells, settings)}

    table = Table(title=f"time to verdict: {matrix.name}, early_stop_patience={budget.early_stop_patience}")
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
        f"epochs trained: {sum_early} of {sum_full} ({1 - sum_early / sum_full:.0%} saved); "
        f"every verdict the same: {'yes' if all_same else 'NO'}"
    )

    for spec in early_specs[: args.verify]:
        rule = EarlyStopRule.from_payload(rules[spec.run_key])
        result = fit(spec.config, on_epoch=lambda r, rule=rule: rule(r.metrics))
        real = np.array([e.metrics[settings.metric] for e in result.epochs])
        rec = next(r for r in records.values() if r.run_key == spec.run_key)
        logged = np.array([v for _, v in sorted(rec.history[settings.metric])])[: len(real)]
        replay_stop = _stop_epoch(rules[spec.run_key], rec.history, settings.metric)
        console.print(
            f"verify {spec.cell} seed {spec.seed}: trained with early stops to epoch {len(real) - 1} "
            f"(replay: {replay_stop}); curve max |difference| from the full run's first epochs "
            f"{float(np.max(np.abs(real - logged))):.1e}"
        )


if __name__ == "__main__":
    main()
