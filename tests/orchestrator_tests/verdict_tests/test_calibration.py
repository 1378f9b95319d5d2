"""Calibration of the trend verdict on simulated curves (the issue's acceptance numbers).

Regimes are drawn at random over the operating range: 3-5 seeds, 10-30 epochs, AR(1) autocorrelation
0-0.8, noise 1-5% of the level (log-uniform), seeds differing in level by about 10%. No-trend curves are
``null`` (flat from epoch 0) and ``stalled`` (a 20-50% drop at epoch 1, then flat); effects fall 25-40%
inside the window (linear or exponential). The simulator is the one ``bench/calibrate_verdicts.py`` uses for
the larger per-regime run recorded in docs/verdicts.md.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.calibrate_verdicts import Regime, judge_with_early_stops, simulate_cell
from orchestrator.verdict import CellData, Verdict, VerdictSettings, judge_cell

SETTINGS = VerdictSettings()
N_NULL = 3000  # per no-trend scenario
N_EFFECT = 5000


def _draw(rng: np.random.Generator, scenario: str) -> Regime:
    effect = float(rng.uniform(0.25, 0.40)) if scenario == "effect" else 0.0
    return Regime(
        scenario=scenario,
        seeds=int(rng.integers(3, 6)),
        epochs=int(rng.integers(10, 31)),
        phi=float(rng.uniform(0.0, 0.8)),
        sigma=float(np.exp(rng.uniform(np.log(0.01), np.log(0.05)))),
        effect=effect,
        shape=str(rng.choice(["linear", "exp"])),
    )


def _verdicts(scenario: str, n: int, seed: int) -> list[tuple[Regime, Verdict]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        r = _draw(rng, scenario)
        out.append((r, judge_cell(CellData("sim", curves=simulate_cell(rng, r)), SETTINGS).verdict))
    return out


@pytest.mark.parametrize(("scenario", "seed"), [("null", 101), ("stalled", 202)])
def test_false_falls_at_most_one_percent(scenario: str, seed: int) -> None:
    got = _verdicts(scenario, N_NULL, seed)
    false_falls = sum(v is Verdict.FALLS for _, v in got) / len(got)
    assert false_falls <= 0.01, false_falls
    # with little noise the no-trend window reads flat, not merely "not falls"
    quiet = [v for r, v in got if r.sigma <= 0.02]
    assert sum(v is Verdict.FLAT for v in quiet) / len(quiet) >= 0.90


def test_clear_falls_are_found_95_percent() -> None:
    got = _verdicts("effect", N_EFFECT, 303)
    power = sum(v is Verdict.FALLS for _, v in got) / len(got)
    assert power >= 0.95, power
    assert not any(v in (Verdict.FLAT, Verdict.RISES) for _, v in got)


N_EARLY = 500  # per scenario: the rule runs a bootstrap per seed and epoch (about 40 ms a cell)


def _early_verdicts(scenario: str, n: int, seed: int) -> list[tuple[Regime, Verdict, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        r = _draw(rng, scenario)
        verdict, trained = judge_with_early_stops(simulate_cell(rng, r), SETTINGS)
        out.append((r, verdict.verdict, trained))
    return out


@pytest.mark.parametrize(("scenario", "seed"), [("null", 404), ("stalled", 505)])
def test_early_stops_keep_false_falls_at_most_one_percent(scenario: str, seed: int) -> None:
    """Cells judged as a sweep with budget.early_stop judges them: seeds cut where the rule stops them,
    lines extended to the budget's end (bounded, and a fall must show in the epochs measured)."""
    got = _early_verdicts(scenario, N_EARLY, seed)
    assert sum(v is Verdict.FALLS for _, v, _ in got) / len(got) <= 0.01
    assert sum(t for *_, t in got) < sum(r.seeds * (r.epochs - 1) for r, *_ in got)  # some runs stopped


def test_early_stops_still_find_clear_falls() -> None:
    got = _early_verdicts("effect", N_EARLY, 606)
    assert sum(v is Verdict.FALLS for _, v, _ in got) / len(got) >= 0.85
    assert not any(v in (Verdict.FLAT, Verdict.RISES) for _, v, _ in got)
