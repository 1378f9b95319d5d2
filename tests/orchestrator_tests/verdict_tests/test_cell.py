"""Unit tests of the trend statistics and of ``judge_cell`` on constructed curves."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from orchestrator.verdict import (
    CellData,
    CellVerdict,
    Guard,
    Verdict,
    VerdictSettings,
    default_warmup,
    fit_window,
    judge_cell,
    mann_kendall_hamed_rao,
    theil_sen,
)
from orchestrator.verdict.stats import normal_sf, rank_average

SETTINGS = VerdictSettings()


def _rel(curves: list, window: tuple[int, int], **options: object) -> tuple[float, float, float]:
    """The relative change over ``window`` with its bootstrap interval: ``(estimate, low, high)``."""
    fit = fit_window(curves, window, **options)  # type: ignore[arg-type]
    return fit.estimate, fit.low, fit.high


def _noise(rng: np.random.Generator, n: int, sd: float, phi: float = 0.0) -> np.ndarray:
    e = rng.normal(0.0, sd, size=n)
    for i in range(1, n):
        e[i] = phi * e[i - 1] + math.sqrt(1 - phi * phi) * e[i]
    return e


def _falling(seeds: int = 4, epochs: int = 20, sd: float = 0.01, seed: int = 0) -> list[np.ndarray]:
    """Exponential decay from 1.5 toward 0.3 that keeps going through the window."""
    rng = np.random.default_rng(seed)
    t = np.arange(epochs)
    return [0.3 + 1.2 * np.exp(-t / 8.0) + _noise(rng, epochs, sd) for _ in range(seeds)]


def _stalled(
    seeds: int = 4, epochs: int = 20, sd: float = 0.01, plateau: float = 1.0, seed: int = 0
) -> list[np.ndarray]:
    """The note's symptom: one drop at epoch 1 (the mean image), then flat."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(seeds):
        c = np.full(epochs, plateau) + _noise(rng, epochs, sd * plateau)
        c[0] = 1.5 * plateau
        out.append(c)
    return out


def _rising(seeds: int = 4, epochs: int = 20, sd: float = 0.01, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(epochs)
    return [1.0 + 0.03 * t + _noise(rng, epochs, sd) for _ in range(seeds)]


# ---------------------------------------------------------------------------------------------------------
# Building blocks


@pytest.mark.parametrize(
    ("epochs", "warmup"), [(0, 2), (2, 2), (5, 2), (10, 2), (11, 3), (15, 3), (20, 4), (30, 6), (100, 20)]
)
def test_default_warmup(epochs: int, warmup: int) -> None:
    assert default_warmup(epochs) == warmup


def test_default_warmup_rejects_negative() -> None:
    with pytest.raises(ValueError):
        default_warmup(-1)


def test_theil_sen_exact_robust_and_nan() -> None:
    y = 2.0 - 0.25 * np.arange(12)
    assert theil_sen(y) == pytest.approx(-0.25)
    y_out = y.copy()
    y_out[5] = 50.0  # one wild epoch barely moves the median of pairwise slopes
    assert theil_sen(y_out) == pytest.approx(-0.25, abs=0.03)
    y_nan = y.copy()
    y_nan[[2, 7]] = np.nan  # skipped; the remaining epochs keep their indices
    assert theil_sen(y_nan) == pytest.approx(-0.25)
    assert math.isnan(theil_sen([1.0]))


def test_mann_kendall_monotone_and_constant() -> None:
    tau, p = mann_kendall_hamed_rao(np.linspace(1.0, 0.5, 20))
    assert tau == pytest.approx(-1.0)
    assert p < 1e-4
    tau, p = mann_kendall_hamed_rao(np.ones(10))
    assert tau == 0.0 and p == 1.0
    assert mann_kendall_hamed_rao([1.0, 2.0]) == (pytest.approx(float("nan"), nan_ok=True), 1.0)


def test_mann_kendall_without_correction_is_kendall_tau() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.normal(size=25)
        ref = stats.kendalltau(np.arange(25), y, method="asymptotic")
        # no lag is significant at this level, so the Hamed-Rao factor is 1: plain Mann-Kendall
        tau, p = mann_kendall_hamed_rao(y, acf_alpha=1e-12)
        assert tau == pytest.approx(ref.statistic, abs=1e-12)
        s = ref.statistic * 25 * 24 / 2
        z = (abs(s) - 1.0) / math.sqrt(25 * 24 * 55 / 18)  # with the continuity correction
        assert p == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)
        # the correction only ever widens the null distribution
        assert mann_kendall_hamed_rao(y)[1] >= p - 1e-12


def test_ranks_and_normal_tail_are_scipys() -> None:
    """The verdict reads scipy's numbers without importing scipy.stats (about a second of start-up)."""
    rng = np.random.default_rng(11)
    for i in range(400):
        n = int(rng.integers(1, 40))
        x = rng.integers(0, 4, n).astype(float) if i % 2 else rng.normal(size=n)  # ties, and none
        assert np.array_equal(rank_average(x), stats.rankdata(x))
    for z in np.linspace(0.0, 12.0, 241):
        assert normal_sf(z) == pytest.approx(stats.norm.sf(z), rel=1e-12)


def test_hamed_rao_correction_deflates_autocorrelated_trends() -> None:
    rng = np.random.default_rng(5)
    rejections_hr = rejections_plain = 0
    for _ in range(300):
        y = _noise(rng, 30, 1.0, phi=0.8)  # no trend, strong autocorrelation
        rejections_hr += mann_kendall_hamed_rao(y)[1] < 0.05
        rejections_plain += stats.kendalltau(np.arange(30), y, method="asymptotic").pvalue < 0.05
    # fewer false trends than plain Mann-Kendall (still well above 5% at n=30, phi=0.8: see docs/verdicts.md)
    assert rejections_hr < 0.85 * rejections_plain


def test_bootstrap_noise_free_line_is_exact() -> None:
    t = np.arange(12)
    curves = [1.0 - 0.02 * t, 2.0 - 0.04 * t, 0.5 - 0.01 * t]
    est, low, high = _rel(curves, (2, 11))
    start = np.mean([c[2] for c in curves])
    end = np.mean([c[11] for c in curves])
    expected = end / start - 1.0
    assert est == pytest.approx(expected)
    assert low == pytest.approx(expected) and high == pytest.approx(expected)


def test_bootstrap_interval_covers_truth_and_is_deterministic() -> None:
    rng = np.random.default_rng(11)
    t = np.arange(20)
    truth = (1.0 - 0.015 * 19) / (1.0 - 0.015 * 4) - 1.0
    covered = 0
    for i in range(100):
        curves = [1.0 - 0.015 * t + _noise(rng, 20, 0.02, 0.5) for _ in range(5)]
        est, low, high = _rel(curves, (4, 19), n_boot=500, seed=i)
        assert low <= est <= high
        covered += low < truth < high
    assert covered >= 85  # nominal 95%; about 94% measured at 5 seeds
    assert _rel(curves, (4, 19), n_boot=500, seed=99) == (est, low, high)
    noisy = [c + _noise(rng, 20, 0.1, 0.5) for c in curves]
    _, low_n, high_n = _rel(noisy, (4, 19), n_boot=500, seed=99)
    assert high_n - low_n > high - low


@pytest.mark.parametrize("block_length", [1, 3, 7, 16])
def test_bootstrap_block_lengths(block_length: int) -> None:
    rng = np.random.default_rng(2)
    curves = [np.linspace(1.0, 0.6, 16) + _noise(rng, 16, 0.01) for _ in range(3)]
    est, low, high = _rel(curves, (0, 15), block_length=block_length)
    assert low <= est <= high
    assert high < -0.3


def test_bootstrap_rejects_bad_window() -> None:
    with pytest.raises(ValueError):
        _rel([np.ones(5)] * 3, (3, 7))
    with pytest.raises(ValueError):
        _rel([np.ones(5)] * 3, (3, 3))


# ---------------------------------------------------------------------------------------------------------
# Settings and guards


def test_settings_are_a_strict_frozen_schema() -> None:
    s = VerdictSettings.model_validate(
        {"metric": "cross", "warmup": 3, "min_change": 0.1, "guards": [{"metric": "noise_leak", "max": 0.02}]}
    )
    assert s.guards == [Guard(metric="noise_leak", max=0.02)]
    with pytest.raises(ValidationError):
        VerdictSettings.model_validate({"window": 3})
    with pytest.raises(ValidationError):
        VerdictSettings(min_change=0.0)
    with pytest.raises(ValidationError):
        s.metric = "recon"  # type: ignore[misc]


def test_guard_needs_a_bound() -> None:
    with pytest.raises(ValidationError):
        Guard(metric="noise_leak")
    with pytest.raises(ValidationError):
        Guard(metric="x", min=2.0, max=1.0)
    with pytest.raises(ValidationError):
        Guard.model_validate({"metric": "x", "max": 1.0, "above": 0.0})
    assert Guard(metric="cross_psnr_clean", min=25).describe() == "cross_psnr_clean>=25"


def test_verdict_is_a_string_enum() -> None:
    assert Verdict.FALLS == "falls"
    assert Verdict("inconclusive") is Verdict.INCONCLUSIVE
    assert {v.value for v in Verdict} == {"falls", "flat", "rises", "diverged", "inconclusive"}


# ---------------------------------------------------------------------------------------------------------
# judge_cell on constructed curves


def test_monotone_falling_falls() -> None:
    v = judge_cell(
        CellData("no_skip_everywhere", curves=_falling(), expect="pass", axes={"recon_weight": 0.05}),
        SETTINGS,
    )
    assert v.verdict is Verdict.FALLS
    assert v.ci is not None and v.ci[1] < -SETTINGS.min_change
    assert v.p_value is not None and v.p_value < 0.05
    assert v.theil_sen is not None and v.theil_sen < 0
    assert v.window == (4, 19) and v.warmup == 4 and v.epochs == 20
    assert v.seed_agreement == 1.0
    assert v.agrees is True and v.observed == "pass"
    assert v.axes == {"recon_weight": 0.05}


def test_stalled_curve_is_flat_not_falls() -> None:
    v = judge_cell(CellData("no_skip", curves=_stalled()), SETTINGS)
    assert v.verdict is Verdict.FLAT
    # the first-epoch drop is reported beside the verdict, never in its place
    assert v.whole_run_change is not None and v.whole_run_change < -0.3
    assert v.ci is not None and -0.05 < v.ci[0] and v.ci[1] < 0.05
    assert v.state is None and "floor unknown" in v.reason
    assert v.observed is None


def test_stalled_far_above_floor_is_stalled_and_fails() -> None:
    v = judge_cell(CellData("no_skip", curves=_stalled(plateau=1.0), floor=0.4, expect="fail"), SETTINGS)
    assert v.verdict is Verdict.FLAT
    assert v.state == "stalled" and v.at_floor is False
    assert v.progress is not None and 0.3 < v.progress < 0.6  # 1.5 -> 1.0 of the way to 0.4
    assert v.observed == "fail" and v.agrees is True
    assert "stalled" in v.reason


def test_flat_at_floor_has_converged_and_passes() -> None:
    v = judge_cell(CellData("pure_n2n", curves=_stalled(plateau=0.4), floor=0.39, expect="pass"), SETTINGS)
    assert v.verdict is Verdict.FLAT
    assert v.state == "converged" and v.at_floor is True
    assert v.observed == "pass" and v.agrees is True


def test_floor_read_from_finals() -> None:
    curves = _stalled(plateau=0.4)
    finals = {"cross_floor": [0.39, 0.395, 0.4, np.nan]}
    v = judge_cell(CellData("pure_n2n", curves=curves, finals=finals), SETTINGS)
    assert v.floor == pytest.approx(np.mean([0.39, 0.395, 0.4]))
    assert v.state == "converged"
    no_floor = judge_cell(
        CellData("x", curves=curves, finals=finals), SETTINGS.model_copy(update={"floor_metric": None})
    )
    assert no_floor.floor is None and no_floor.state is None


def test_rising_rises() -> None:
    v = judge_cell(CellData("bad", curves=_rising(), expect="fail"), SETTINGS)
    assert v.verdict is Verdict.RISES
    assert v.ci is not None and v.ci[0] > SETTINGS.min_change
    assert v.observed == "fail" and v.agrees is True


def test_nan_is_diverged() -> None:
    curves = _falling(seeds=3)
    for c in curves[:2]:
        c[7:] = np.nan
    v = judge_cell(CellData("adv", curves=curves, expect="pass", seeds=[10, 11, 12]), SETTINGS)
    assert v.verdict is Verdict.DIVERGED
    assert v.seeds_failed == 2 and v.seeds_diverged == [10, 11] and v.seeds == [12]
    assert v.observed == "fail" and v.agrees is False
    inf = _falling(seeds=3)
    inf[0][5] = np.inf
    assert judge_cell(CellData("adv", curves=inf, diverged=1), SETTINGS).verdict is Verdict.DIVERGED


def test_one_diverged_seed_of_five_is_left_out() -> None:
    curves = _falling(seeds=5)
    curves[3][9] = np.nan
    v = judge_cell(CellData("x", curves=curves), SETTINGS)
    assert v.verdict is Verdict.FALLS
    assert v.seeds == [0, 1, 2, 4] and v.seeds_failed == 1
    assert any("diverged" in n for n in v.notes)


def test_diverged_seeds_without_curves_count() -> None:
    v = judge_cell(CellData("x", curves=_falling(seeds=3), diverged=3, crashed=1), SETTINGS)
    assert v.verdict is Verdict.DIVERGED and v.seeds_failed == 4


@pytest.mark.parametrize(
    ("curves", "why"),
    [
        (_falling(seeds=1), "too few seeds"),
        ([], "too few seeds"),
        ([c[:2] for c in _falling(seeds=4)], "too short"),
        ([c[:5] for c in _falling(seeds=4)], "too short"),
        (_stalled(seeds=3, sd=0.25, seed=4), "too noisy"),
    ],
    ids=["one_seed", "no_seed", "two_epochs", "five_epochs", "very_noisy"],
)
def test_inconclusive_says_why(curves: list[np.ndarray], why: str) -> None:
    v = judge_cell(CellData("x", curves=curves, expect="fail"), SETTINGS)
    assert v.verdict is Verdict.INCONCLUSIVE
    assert v.reason.startswith(why), v.reason
    assert v.agrees is None and v.observed is None


def test_two_seeds_of_three_with_one_diverged_is_too_few() -> None:
    curves = _falling(seeds=3)
    curves[0][4] = np.nan
    v = judge_cell(CellData("x", curves=curves), SETTINGS)
    assert v.verdict is Verdict.INCONCLUSIVE and "too few seeds" in v.reason and "1 diverged" in v.reason


def test_seeds_that_disagree_are_inconclusive() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(20)
    curves = [1.0 - 0.02 * t + _noise(rng, 20, 0.002) for _ in range(3)]
    curves.append(np.ones(20) + _noise(rng, 20, 0.002))  # one seed stays flat
    v = judge_cell(CellData("x", curves=curves), SETTINGS.model_copy(update={"seed_agreement": 0.8}))
    assert v.ci is not None and v.ci[1] < -0.05
    assert v.verdict is Verdict.INCONCLUSIVE and v.reason.startswith("seeds disagree"), v.reason
    assert v.seed_agreement == 0.75
    assert (
        judge_cell(CellData("x", curves=curves), SETTINGS).verdict is Verdict.FALLS
    )  # 3 of 4 is "most" by default


def test_unequal_lengths_use_the_common_prefix() -> None:
    curves = _falling(seeds=4, epochs=20)
    curves[1] = curves[1][:14]  # early-stopped
    v = judge_cell(CellData("x", curves=curves), SETTINGS)
    assert v.epochs == 14 and v.window == (3, 13)
    assert any("common 14" in n for n in v.notes)
    assert v.verdict is Verdict.FALLS


def _slow_decline(seeds: int = 5, epochs: int = 25, seed: int = 0) -> list[np.ndarray]:
    """After the drop at epoch 1, a steady decline of 0.35% of the start level per epoch, small noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(epochs)
    out = [1.0 - 0.0035 * t + _noise(rng, epochs, 0.002) for _ in range(seeds)]
    for c in out:
        c[0] = 1.5
    return out


def test_early_stopped_curves_are_judged_over_the_budgets_window() -> None:
    """A steady decline of ~6% over epochs 8-24 must not read as a smaller change because runs stopped at
    epoch 14: with the budget known, each stopped seed's line is extended to epoch 24."""
    settings = SETTINGS.model_copy(update={"warmup": 8, "min_change": 0.1})
    full = _slow_decline()
    stopped = [c[:15] for c in full[:3]] + full[3:]  # three seeds stopped after epoch 14
    whole = judge_cell(CellData("x", curves=full), settings)
    common = judge_cell(CellData("x", curves=stopped), settings)  # without the budget: the common 15 epochs
    extended = judge_cell(CellData("x", curves=stopped, planned_epochs=25), settings)
    assert whole.window == extended.window == (8, 24) and extended.epochs == 25
    assert common.window == (8, 14)
    assert whole.rel_change == pytest.approx(-0.063, abs=0.01)
    assert extended.rel_change == pytest.approx(whole.rel_change, abs=0.01)
    assert abs(common.rel_change) < 0.5 * abs(whole.rel_change)  # the shorter span shrinks the change
    lo, hi = extended.ci
    assert hi - lo > whole.ci[1] - whole.ci[0]  # extension widens the interval
    assert any("3 of 5 seeds stopped early" in n and "extended to epoch 24" in n for n in extended.notes)
    # every seed full length: the budget changes nothing
    assert judge_cell(CellData("x", curves=full, planned_epochs=25), settings).to_dict() == whole.to_dict()


def test_a_seed_stopped_before_the_minimum_window_is_too_short() -> None:
    settings = SETTINGS.model_copy(update={"warmup": 8})
    curves = _slow_decline()
    curves[0] = curves[0][:10]  # two window epochs
    v = judge_cell(CellData("x", curves=curves, planned_epochs=25), settings)
    assert v.verdict is Verdict.INCONCLUSIVE and "stopped after epoch 9" in v.reason


def test_bootstrap_extends_short_curves_only_when_asked() -> None:
    t = np.arange(25)
    line = 1.0 - 0.01 * t
    with pytest.raises(ValueError, match="does not fit"):
        _rel([line, line[:13]], (8, 24))
    est, low, high = _rel([line, line[:13]], (8, 24), extend=True)
    assert est == pytest.approx(line[24] / line[8] - 1.0) and low == pytest.approx(est) == high


def test_explicit_warmup() -> None:
    v = judge_cell(CellData("x", curves=_stalled()), SETTINGS.model_copy(update={"warmup": 0}))
    assert v.window == (0, 19)
    assert v.verdict is not Verdict.FLAT  # counting epoch 0 the first-epoch drop shows up again


def test_failing_guard_flips_agreement_and_is_named() -> None:
    finals = {"noise_leak": [0.05, 0.06, 0.04, 0.05], "cross_psnr_clean": [28.0, 27.5, 28.2, 28.1]}
    ok = judge_cell(
        CellData(
            "original",
            curves=_falling(),
            expect="pass",
            finals=finals,
            guards=[Guard(metric="cross_psnr_clean", min=25.0)],
        ),
        SETTINGS,
    )
    assert ok.agrees is True and ok.guards[0].holds is True
    assert ok.finals["cross_psnr_clean"] == pytest.approx(27.95)
    bad = judge_cell(
        CellData("original", curves=_falling(), expect="pass", finals=finals),
        SETTINGS.model_copy(update={"guards": [Guard(metric="noise_leak", max=0.02)]}),
    )
    assert bad.verdict is Verdict.FALLS
    assert bad.observed == "fail" and bad.agrees is False
    assert [g.metric for g in bad.failed_guards] == ["noise_leak"]
    assert bad.guards[0].value == pytest.approx(0.05)
    assert "noise_leak" in bad.reason
    expect_fail = judge_cell(
        CellData(
            "original",
            curves=_falling(),
            expect="fail",
            finals=finals,
            guards=[Guard(metric="noise_leak", max=0.02)],
        ),
        SETTINGS,
    )
    assert expect_fail.agrees is True  # the note's "fail (noise leak)" is checkable


def test_missing_guard_metric_cannot_confirm_pass() -> None:
    guard = Guard(metric="noise_leak", max=0.1)
    v = judge_cell(CellData("x", curves=_falling(), expect="pass", guards=[guard]), SETTINGS)
    assert v.guards[0].value is None and v.guards[0].holds is None
    assert v.agrees is None
    assert (
        judge_cell(
            CellData("x", curves=_rising(), expect="fail", guards=[Guard(metric="noise_leak", max=0.1)]),
            SETTINGS,
        ).agrees
        is True
    )


def test_partial_is_a_fall_that_stops_far_from_the_floor() -> None:
    t = np.arange(20)
    rng = np.random.default_rng(1)
    # 1.5 at epoch 0, about 1.2 at epoch 4, 0.95 at the end; floor 0.2: falls but closes < half the gap
    curves = [1.2 - 0.25 * np.clip((t - 4) / 15, 0, 1) + _noise(rng, 20, 0.005) for _ in range(4)]
    for c in curves:
        c[0] = 1.5
    v = judge_cell(CellData("pure_n2n", curves=curves, floor=0.2, expect="partial"), SETTINGS)
    assert v.verdict is Verdict.FALLS and v.state == "approaching"
    assert v.progress is not None and v.progress < SETTINGS.partial_progress
    assert v.observed == "partial" and v.agrees is True
    assert judge_cell(CellData("pure_n2n", curves=curves, floor=0.2, expect="pass"), SETTINGS).agrees is True
    assert judge_cell(CellData("pure_n2n", curves=curves, floor=0.2, expect="fail"), SETTINGS).agrees is False
    near = judge_cell(
        CellData("pure_n2n", curves=curves, floor=0.9, expect="partial"), SETTINGS
    )  # closes most of the gap
    assert near.observed == "pass" and near.agrees is False
    unknown = judge_cell(CellData("pure_n2n", curves=curves, expect="partial"), SETTINGS)
    assert unknown.observed == "pass" and unknown.agrees is None
    stalled = judge_cell(CellData("pure_n2n", curves=_stalled(), floor=0.2, expect="partial"), SETTINGS)
    assert stalled.observed == "fail" and stalled.agrees is False
    leak = judge_cell(
        CellData(
            "pure_n2n",
            curves=curves,
            floor=0.2,
            expect="partial",
            finals={"noise_leak": [1.0]},
            guards=[Guard(metric="noise_leak", max=0.5)],
        ),
        SETTINGS,
    )
    assert leak.observed == "fail" and leak.agrees is False


def test_require_trend_can_veto() -> None:
    v = judge_cell(CellData("x", curves=_falling()), SETTINGS.model_copy(update={"require_trend": True}))
    assert v.verdict is Verdict.FALLS


def test_judge_cell_is_deterministic_and_serialises() -> None:
    finals = {"noise_leak": [0.01, np.nan, 0.02, 0.015]}
    a = judge_cell(
        CellData("x", curves=_falling(), finals=finals, axes={"up_mode": "add", "latent": np.int64(512)}),
        SETTINGS,
    )
    b = judge_cell(
        CellData("x", curves=_falling(), finals=finals, axes={"up_mode": "add", "latent": np.int64(512)}),
        SETTINGS,
    )
    assert a == b or a.to_dict() == b.to_dict()
    d = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    for key in (
        "cell",
        "axes",
        "seeds",
        "epochs",
        "window",
        "start",
        "end",
        "rel_change",
        "ci",
        "p_value",
        "theil_sen",
        "whole_run_change",
        "floor",
        "progress",
        "state",
        "verdict",
        "reason",
        "guards",
        "expected",
        "agrees",
        "seeds_failed",
    ):
        assert key in d
    assert d["verdict"] == "falls" and d["axes"]["latent"] == 512 and d["window"] == [4, 19]
    assert d["start"]["mean"] > d["end"]["mean"] and len(d["start"]["per_seed"]) == 4
    diverged = judge_cell(CellData("y", curves=[np.full(10, np.nan)] * 3), SETTINGS)
    assert json.loads(json.dumps(diverged.to_dict(), allow_nan=False))["rel_change"] is None


def test_judge_cell_is_fast() -> None:
    rng = np.random.default_rng(0)
    curves = [1.0 - 0.01 * np.arange(30) + _noise(rng, 30, 0.02, 0.5) for _ in range(5)]
    judge_cell(CellData("warm", curves=curves), SETTINGS)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        judge_cell(CellData("x", curves=curves), SETTINGS)
        times.append(time.perf_counter() - t0)
    assert sorted(times)[3] < 0.05, times


def test_cell_verdict_is_frozen() -> None:
    v = judge_cell(CellData("x", curves=_falling()), SETTINGS)
    assert isinstance(v, CellVerdict)
    with pytest.raises(AttributeError):
        v.verdict = Verdict.FLAT  # type: ignore[misc]


# ------------------------------------------------------------------------------ early stops and baselines


def test_an_early_stop_never_claims_more_than_was_measured() -> None:
    """The issue's case: two seeds stopped at epoch 6 of 12 while falling steeply, far from the floor. Their
    lines extended to epoch 12 went below the floor and below zero; the cell read `falls (converged)`."""
    t = np.arange(7)
    rng = np.random.default_rng(4)
    stopped = [0.60 * np.exp(-t / 3.5) + 0.05 + rng.normal(0, 0.004, 7) for _ in range(2)]
    settings = VerdictSettings(min_seeds=2, warmup=2)
    v = judge_cell(CellData("x", curves=stopped, planned_epochs=13, floor=0.037, expect="pass"), settings)
    assert min(v.end_per_seed) >= 0.037  # never below what the metric can be
    assert v.state != "converged" and v.at_floor is False  # measured ends ~0.2, five times the floor
    assert v.ci is not None and v.ci[0] > -1.0
    assert v.measured is not None and v.measured["window"] == [2, 6]
    assert any("measured before the early stops" in n for n in v.notes)


def test_a_fall_that_rests_on_the_extension_alone_is_inconclusive() -> None:
    """Seeds that stopped while measuring no fall beyond min_change cannot read `falls` from their lines."""
    rng = np.random.default_rng(5)
    slow = [1.0 - 0.004 * np.arange(9) + rng.normal(0, 0.002, 9) for _ in range(4)]  # -2.4% measured
    v = judge_cell(CellData("x", curves=slow, planned_epochs=60), VerdictSettings(warmup=2))
    assert v.verdict is Verdict.INCONCLUSIVE and "rests on the extension" in v.reason


def test_a_fall_to_the_constant_prediction_is_no_pass() -> None:
    curves = _falling()
    end = judge_cell(CellData("x", curves=curves), SETTINGS).end
    at_constant = judge_cell(CellData("x", curves=curves, expect="pass", baseline=end * 1.02), SETTINGS)
    assert at_constant.verdict is Verdict.FALLS and at_constant.beats_baseline is False
    assert at_constant.agrees is False and at_constant.observed == "partial"
    assert "but only ends at the constant-prediction level" in at_constant.reason
    below = judge_cell(CellData("x", curves=curves, expect="pass", baseline=end * 2), SETTINGS)
    assert below.beats_baseline is True and below.agrees is True and below.vs_baseline == pytest.approx(-0.5)
    # "ends <level>" reads as a sentence (it read "ends learns beyond the constant: 50% below it")
    assert "; ends 50% below the constant-prediction level (" in below.reason
    assert below.reason.endswith("): learns beyond a fixed image")
    flat_above = judge_cell(
        CellData("x", curves=_stalled(), expect="fail", finals={"cross_baseline": [0.5] * 4}), SETTINGS
    )
    assert flat_above.baseline == 0.5 and flat_above.observed == "fail" and flat_above.vs_baseline > 0.5


def test_a_guard_on_a_metric_never_logged_says_why() -> None:
    v = judge_cell(CellData("x", curves=_stalled(), guards=[Guard(metric="noise_leak", max=0.1)]), SETTINGS)
    assert any("guard noise_leak: not judged" in n and "no clean images" in n for n in v.notes)


@pytest.mark.parametrize(
    ("seeds", "epochs", "why"),
    [(2, 20, "too few seeds: 2 usable"), (1, 20, "too few seeds: 1"), (4, 6, "too short: 6 epochs leave 4")],
)
def test_a_cell_too_small_to_judge_keeps_what_it_measured_undecided(
    seeds: int, epochs: int, why: str
) -> None:
    settings = VerdictSettings(min_window=5)
    curves = _falling(seeds=seeds, epochs=epochs)
    v = judge_cell(CellData("x", curves=curves, expect="pass", baseline=1.0), settings)
    assert v.verdict is Verdict.INCONCLUSIVE and v.undecided and v.reason.startswith(why)
    first, last = v.window
    t = np.arange(first, last + 1)
    lines = [np.polyfit(t, c[first : last + 1], 1) for c in curves]  # each seed's line over the window
    assert v.end == pytest.approx(np.mean([np.polyval(f, last) for f in lines]))  # the levels measured
    assert v.start == pytest.approx(np.mean([np.polyval(f, first) for f in lines])) and v.start > v.end
    assert v.rel_change == pytest.approx(v.end / v.start - 1, abs=0.02) and v.vs_baseline == pytest.approx(
        v.end - 1
    )
    assert "measured, not enough to decide" in v.reason and f"{v.rel_change:+.1%}" in v.reason
    for claim in (v.ci, v.p_value, v.beats_baseline, v.level, v.state, v.agrees, v.observed):
        assert claim is None  # nothing read from too little
    decided = judge_cell(CellData("x", curves=_falling()), settings)
    assert v.to_dict()["undecided"] is True and decided.undecided is False


def test_a_run_shorter_than_its_warm_up_shows_its_last_level_and_a_diverged_cell_nothing() -> None:
    curves = [c[:6] for c in _falling()]  # epochs 0-5 under a warm-up of 8: no window at all
    short = judge_cell(CellData("x", curves=curves, baseline=0.5), VerdictSettings(warmup=8))
    assert short.verdict is Verdict.INCONCLUSIVE and short.undecided and short.window is None
    assert short.end == pytest.approx(np.mean([c[-1] for c in curves])) and short.rel_change is None
    assert short.vs_baseline == pytest.approx(short.end / 0.5 - 1) and short.start is None
    assert "measured, not enough to decide: ending at" in short.reason
    diverged = judge_cell(CellData("x", curves=[np.full(20, np.nan)] * 3), SETTINGS)
    assert diverged.verdict is Verdict.DIVERGED and not diverged.undecided and diverged.end is None
