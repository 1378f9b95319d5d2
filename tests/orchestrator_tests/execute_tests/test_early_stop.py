"""Early verdicts: the rule on constructed curves, and a real sweep that stops runs early."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from orchestrator.execute.early_stop import EarlyStopRule, decided
from orchestrator.execute.plan import plan_sweep
from orchestrator.execute.sweep import run_sweep
from orchestrator.matrix import load_matrix
from orchestrator.report.collect import collect_cells, judge_cells
from orchestrator.tracking import Tracker
from orchestrator.verdict import fit_window


def _feed(rule: EarlyStopRule, curve: np.ndarray) -> tuple[int | None, str | None]:
    for epoch, value in enumerate(curve):
        reason = rule({"cross": float(value)})
        if reason:
            return epoch, reason
    return None, None


def _curve(epochs: int, slope: float, noise: float, seed: int = 0) -> np.ndarray:
    """Epoch 0 high (the warm-up drop), then level 1 changing by ``slope`` per epoch, plus noise."""
    rng = np.random.default_rng(seed)
    y = 1.0 + slope * np.arange(epochs + 1) + noise * rng.standard_normal(epochs + 1)
    y[0] = 2.0
    return y


def test_flat_curve_stops_once_decided_for_patience_epochs() -> None:
    rule = EarlyStopRule(metric="cross", epochs=24, min_change=0.1, warmup=4, min_window=4, patience=3)
    epoch, reason = _feed(rule, _curve(24, 0.0, 0.005))
    # the first epoch with a 4-epoch window is 7; decided there and at the next two: stop at 9
    assert epoch == 9
    assert "reads flat for 3 epochs in a row" in reason and "epochs 4-9" in reason
    assert "with its line extended to epoch 24" in reason


def test_falling_curve_stops_as_falls() -> None:
    rule = EarlyStopRule(metric="cross", epochs=30, min_change=0.1, warmup=2, min_window=4, patience=2)
    epoch, reason = _feed(rule, _curve(30, -0.03, 0.003))
    assert epoch is not None and epoch < 30 and "reads falls" in reason


@pytest.mark.parametrize("slope,noise", [(-0.004, 0.03), (0.0, 0.08)])
def test_undecided_curve_trains_its_whole_budget(slope: float, noise: float) -> None:
    """A slow change near the relevance threshold, or a noisy curve, never reads decided with margin."""
    rule = EarlyStopRule(metric="cross", epochs=16, min_change=0.05, warmup=2, min_window=4, patience=3)
    assert _feed(rule, _curve(16, slope, noise)) == (None, None)


def test_steady_decline_never_reads_flat_on_its_first_epochs() -> None:
    """0.8% of the level per epoch: over epochs 8-12 that is a 3% change (inside the 10% bound), over the
    budget's window 8-24 a 14% fall. The run must not stop as flat; it may stop once the fall shows."""
    rule = EarlyStopRule(metric="cross", epochs=24, min_change=0.1, warmup=8, min_window=4, patience=2)
    epoch, reason = _feed(rule, _curve(24, -0.008, 0.002))
    assert "flat" not in rule.readings
    assert epoch is None or "reads falls" in reason
    # over the epochs so far alone the first windows do read flat: the extension is what holds the stop
    early = fit_window([_curve(24, -0.008, 0.002)[:13]], (8, 12))
    assert decided(early, 0.1) == "flat"


def test_nan_never_triggers_a_stop() -> None:
    rule = EarlyStopRule(metric="cross", epochs=20, min_change=0.1, warmup=2, min_window=3, patience=1)
    curve = _curve(20, 0.0, 0.001)
    curve[3] = np.nan  # before the first epoch that could decide (4)
    assert _feed(rule, curve) == (None, None)


def test_sweep_stops_runs_early_logs_why_and_reruns_them_without_early_stop(
    tmp_path: Path, tiny: dict, monkeypatch
) -> None:
    """A near-zero learning rate keeps the cross loss flat: every run stops before its budget, FINISHED
    with the reason as a tag; the report judges them over the budget's window (each stopped run's line
    extended to its last epoch) and reads flat; dropping early_stop re-runs them."""
    monkeypatch.chdir(tmp_path)
    tiny["trainer"]["lr"] = 1e-9
    matrix = {
        "name": "early",
        "base": tiny,
        "seeds": [0, 1, 2],
        "cells": {"still": {"cross_skip": "no_skip"}},
        "verdict": {"warmup": 3, "min_change": 0.1},
        # 10 steps an epoch: BatchNorm's running statistics have settled by the end of the warm-up
        "budget": {"epochs": 16, "steps_per_epoch": 10, "early_stop": True, "early_stop_patience": 2},
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix))
    uri = f"sqlite:///{tmp_path}/runs/mlflow.db"
    m, specs = load_matrix(path)
    outcome = run_sweep(m, specs, tracking_uri=uri, matrix_path=path, workers=2)
    assert (outcome.ran, outcome.stopped) == (3, 3)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("early")
    runs = client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'run'")
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["orch.early_stop"].startswith("early stop at epoch")
        epochs = [p.step for p in client.get_metric_history(run.info.run_id, "cross")]
        assert max(epochs) < 16
    tracker = Tracker(uri)
    assert {p.state for p in plan_sweep(specs, tracker, "early")} == {"done"}
    (cell,) = collect_cells(tracker, "early", "cross", specs=specs)
    assert cell.planned_epochs == 17 and max(len(c) for c in cell.curves) < 17
    (verdict,) = judge_cells([cell], m.verdict)
    assert verdict.window == (3, 16) and verdict.epochs == 17
    assert verdict.verdict == "flat", verdict.reason
    assert any("3 of 3 seeds stopped early" in n and "extended to epoch 16" in n for n in verdict.notes)

    matrix["budget"]["early_stop"] = False
    path.write_text(yaml.safe_dump(matrix))
    _, full_specs = load_matrix(path)
    assert {p.state for p in plan_sweep(full_specs, tracker, "early")} == {"early"}


def test_no_stop_while_the_content_weight_still_moves(tiny: dict, tmp_path: Path) -> None:
    """A content-weight ramp changes training until it ends, like a skip-weight decay: the later end of
    the two holds any stop."""
    cells = {
        "ramp": {"content_schedule": "linear", "content_ramp_epochs": 12},
        "both": {"content_schedule": "cosine", "content_ramp_epochs": 6, "skip_schedule": "linear",
                 "skip_decay_epochs": 9},
        "const": {"content_schedule": "constant"},
    }  # fmt: skip
    matrix = {"name": "ramp", "base": tiny, "cells": cells, "budget": {"epochs": 20, "early_stop": True}}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix))
    _, specs = load_matrix(path)
    rules = {s.cell: s.early_stop for s in specs}
    assert [rules[c]["hold_until"] for c in ("ramp", "both", "const")] == [12, 9, 0]


def test_no_stop_while_the_skip_weight_still_decays(tiny: dict, tmp_path: Path) -> None:
    """A run whose skip weight decays over the budget keeps changing until the decay ends: the rule that
    a sweep hands to it holds any stop until then, however flat the curve reads."""
    matrix = {
        "name": "decay",
        "base": tiny,
        "cells": {"decay": {"skip_schedule": "linear"}, "const": {"skip_schedule": "constant"}},
        "budget": {"epochs": 20, "early_stop": True},
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix))
    _, specs = load_matrix(path)
    rules = {s.cell: s.early_stop for s in specs}
    assert rules["decay"]["hold_until"] == 20 and rules["const"]["hold_until"] == 0
    flat = _curve(20, 0.0, 0.002)
    assert _feed(EarlyStopRule.from_payload(rules["decay"]), flat) == (None, None)
    stop, _ = _feed(EarlyStopRule.from_payload(rules["const"]), flat)
    assert stop is not None and stop < 20
