"""bfloat16 against float32: the same matrix's verdicts under ``trainer.precision: bfloat16``.

Runs the matrix as it is (float32, resumable: finished runs are reused) and a copy of it with
``trainer.precision: bfloat16`` (experiment ``<name>_bfloat16``, same store), then prints each cell's
verdict under both, the end level of the cross loss, and the training time per run (the ``epoch_seconds``
each run logged, summed).

    .venv/bin/python -m bench.precision_verdicts [--matrix matrices/test_matrix.yaml]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from bench.common import ROOT, TEST_MATRIX, bfloat16_matrix, wide_console
from orchestrator.execute.sweep import run_sweep
from orchestrator.matrix import expand, load_matrix
from orchestrator.report.collect import collect_cells, judge_cells
from orchestrator.tracking import Tracker

__all__ = ["main"]


def _seconds(tracker: Tracker, experiment: str, keys: set[str]) -> float:
    records = tracker.records(experiment, ["epoch_seconds"], keys=keys)
    per_run = [
        sum(v for _, v in r.history.get("epoch_seconds", [])) for r in records if r.status == "FINISHED"
    ]
    return sum(per_run) / max(1, len(per_run))


def _reading(v) -> str:
    return f"{v.verdict} ({v.state})" if v.state else str(v.verdict)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--matrix", default=str(TEST_MATRIX))
    ap.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / 'runs' / 'mlflow.db'}")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    console = wide_console()
    matrix, specs = load_matrix(args.matrix)
    bf16 = bfloat16_matrix(matrix)
    bf16_specs = expand(bf16, root=Path(args.matrix).resolve().parent)
    verdicts, seconds = {}, {}
    tracker = Tracker(args.tracking_uri)
    for m, s in ((matrix, specs), (bf16, bf16_specs)):
        console.print(f"orch sweep {m.name} ({len(s)} runs; finished runs are reused)")
        run_sweep(m, s, tracking_uri=args.tracking_uri, workers=args.workers)
        cells = collect_cells(tracker, m.name, m.verdict.metric, specs=s)
        verdicts[m.name] = {v.cell: v for v in judge_cells(cells, m.verdict)}
        seconds[m.name] = _seconds(tracker, m.name, {x.run_key for x in s})
    table = Table(title=f"{matrix.name}: float32 vs bfloat16 autocast")
    for col in ("cell", "float32", "bfloat16", "same", "end f32", "end bf16"):
        table.add_column(col)
    same_all = True
    for cell, a in verdicts[matrix.name].items():
        b = verdicts[bf16.name][cell]
        same = (a.verdict, a.state) == (b.verdict, b.state)
        same_all &= same
        table.add_row(
            cell,
            _reading(a),
            _reading(b),
            "yes" if same else "NO",
            f"{a.end:.4f}" if a.end is not None else "-",
            f"{b.end:.4f}" if b.end is not None else "-",
        )
    console.print(table)
    f32, b16 = seconds[matrix.name], seconds[bf16.name]
    console.print(
        f"every verdict the same: {'yes' if same_all else 'NO'}; seconds per run: "
        f"float32 {f32:.1f} s, bfloat16 {b16:.1f} s ({f32 / b16:.2f}x)"
    )


if __name__ == "__main__":
    main()
