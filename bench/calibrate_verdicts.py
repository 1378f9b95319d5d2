"""Calibrate the trend verdict on simulated curves and print its error rates per regime.

Curves: a per-seed level (seeds differ by a random factor), optionally a drop before the window (the decoder
learning the mean image), optionally a known change inside the window, plus stationary AR(1) noise whose
marginal standard deviation is ``sigma`` times the level. Scenarios:

- ``null``: no trend at all (constant level plus noise);
- ``stalled``: epoch 0 sits 20-50% above a plateau reached at epoch 1, then flat (the note's symptom);
- ``effect``: the stalled warm-up drop, then a known fall of 25% or 40% inside the window (window start to
  end of the noise-free curve), linear or exponential in shape, with a seed-to-seed spread of the effect;
- ``small``: as ``effect`` with a 10% fall (not asserted; shows how often a slow fall reads ``flat``).

The false ``falls`` rate is measured on ``null`` and ``stalled``; power is the ``falls`` rate on ``effect``.

Run from the repository root: ``.venv/bin/python -m bench.calibrate_verdicts --reps 400 --jobs 2``;
``--early-stop`` judges every cell as a sweep with ``budget.early_stop`` does.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import Pool

import numpy as np

from orchestrator.execute.early_stop import EarlyStopRule
from orchestrator.verdict import (
    CellData,
    CellVerdict,
    Verdict,
    VerdictSettings,
    default_warmup,
    judge_cell,
    mann_kendall_hamed_rao,
)

__all__ = [
    "OPERATING_RANGE",
    "STRESS_RANGE",
    "Regime",
    "judge_cell_ms",
    "judge_with_early_stops",
    "regimes",
    "run_regime",
    "simulate_cell",
    "trend_test_null_rates",
]

#: The range the calibration test asserts on: noise 1-5% of the level, AR(1) phi up to 0.8, 3-5 seeds.
OPERATING_RANGE: dict[str, tuple] = {
    "seeds": (3, 4, 5),
    "epochs": (10, 20, 30),
    "phi": (0.0, 0.5, 0.8),
    "sigma": (0.01, 0.02, 0.05),
}
#: Harder corners reported beside it: phi 0.9, 10% noise, 6-epoch runs.
STRESS_RANGE: dict[str, tuple] = {
    "seeds": (3, 5),
    "epochs": (6, 10, 30),
    "phi": (0.9,),
    "sigma": (0.05, 0.10),
}


@dataclass(frozen=True)
class Regime:
    """One simulated condition."""

    scenario: str  # "null" | "stalled" | "effect"
    seeds: int
    epochs: int
    phi: float
    sigma: float
    effect: float = 0.0  # fall inside the window, as a fraction of the level at the window's start
    shape: str = "linear"  # "linear" | "exp"

    def label(self) -> str:
        """One-line description."""
        eff = f" fall={self.effect:.0%} {self.shape}" if self.effect else ""
        return f"{self.scenario} S={self.seeds} E={self.epochs} phi={self.phi:.2f} sd={self.sigma:.3f}{eff}"


def simulate_cell(rng: np.random.Generator, r: Regime, *, seed_level_sd: float = 0.1) -> list[np.ndarray]:
    """Curves ``(epochs,)`` for each seed of one simulated cell.

    Args:
        rng: Random generator.
        r: The regime.
        seed_level_sd: Log-scale spread of the plateau level between seeds.

    Returns:
        One curve per seed, epoch 0 first.
    """
    t = np.arange(r.epochs, dtype=float)
    w0, w1 = default_warmup(r.epochs), r.epochs - 1
    out = []
    for _ in range(r.seeds):
        level = float(np.exp(rng.normal(0.0, seed_level_sd)))
        mean = np.full(r.epochs, level)
        if r.scenario in ("stalled", "effect"):
            drop = rng.uniform(0.2, 0.5)  # the first-epoch drop: epoch 0 sits this fraction above the plateau
            mean[0] = level / (1.0 - drop)
        if r.scenario == "effect":
            eff = min(0.9, r.effect * float(np.exp(rng.normal(0.0, 0.1))))
            u = np.clip((t - w0) / (w1 - w0), 0.0, 1.0)
            if r.shape == "exp":
                u = (1.0 - np.exp(-3.0 * u)) / (1.0 - np.exp(-3.0))
            mean = mean * (1.0 - eff * u)
        out.append(mean + level * r.sigma * _ar1(rng, r.epochs, r.phi))
    return out


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """Stationary AR(1) series with unit marginal variance."""
    e = rng.normal(size=n)
    x = np.empty(n)
    x[0] = e[0]
    scale = np.sqrt(1.0 - phi * phi)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + scale * e[i]
    return x


def regimes(
    space: dict[str, tuple],
    scenario: str,
    *,
    effects: tuple[float, ...] = (0.25, 0.40),
    shapes: tuple[str, ...] = ("linear", "exp"),
) -> Iterator[Regime]:
    """All regimes of a scenario over a grid ``space`` (keys seeds, epochs, phi, sigma)."""
    grid = itertools.product(space["seeds"], space["epochs"], space["phi"], space["sigma"])
    for seeds, epochs, phi, sigma in grid:
        if scenario == "effect":
            for eff, shape in itertools.product(effects, shapes):
                yield Regime(scenario, seeds, epochs, phi, sigma, eff, shape)
        else:
            yield Regime(scenario, seeds, epochs, phi, sigma)


def judge_with_early_stops(
    curves: list[np.ndarray], settings: VerdictSettings, *, patience: int = 1
) -> tuple[CellVerdict, int]:
    """Judge a cell as a sweep with ``budget.early_stop`` would: each seed fed to the early-stop rule epoch
    by epoch and cut where it stops, the cell judged over the budget's window (lines extended).

    Returns:
        The verdict and the epochs trained (after epoch 0, summed over seeds).
    """
    epochs = len(curves[0]) - 1
    cut = []
    for c in curves:
        rule = EarlyStopRule(
            metric="m",
            epochs=epochs,
            min_change=settings.min_change,
            warmup=settings.warmup,
            min_window=settings.min_window,
            patience=patience,
            confidence=settings.confidence,
        )
        stop = next((e for e, value in enumerate(c) if rule({"m": float(value)})), epochs)
        cut.append(np.asarray(c[: stop + 1]))
    planned = epochs + 1 if any(len(c) < epochs + 1 for c in cut) else None
    return judge_cell(CellData("sim", curves=cut, planned_epochs=planned), settings), sum(
        len(c) - 1 for c in cut
    )


def run_regime(args: tuple) -> dict[str, float]:
    """Verdict rates over ``reps`` simulated cells of one regime (and how often the interval covers 0).

    Args:
        args: ``(regime, reps, seed[, early])``; the seed makes each regime's draw independent of
            scheduling; ``early`` judges each cell with early stops (:func:`judge_with_early_stops`).

    Returns:
        Mapping verdict value -> rate, plus ``covers0`` and ``saved`` (the fraction of epochs not trained).
    """
    r, reps, seed, *rest = args
    early = bool(rest and rest[0])
    settings = VerdictSettings()
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys([v.value for v in Verdict] + ["covers0", "saved"], 0.0)
    for _ in range(reps):
        curves = simulate_cell(rng, r)
        if early:
            v, trained = judge_with_early_stops(curves, settings)
            counts["saved"] += 1.0 - trained / (r.seeds * (r.epochs - 1))
        else:
            v = judge_cell(CellData("sim", curves=curves), settings)
        counts[v.verdict.value] += 1
        counts["covers0"] += int(v.ci is not None and v.ci[0] <= 0.0 <= v.ci[1])
    return {k: n / reps for k, n in counts.items()}


def trend_test_null_rates(reps: int, seed: int) -> list[tuple[int, float, float, float]]:
    """How often Mann-Kendall calls a trend (p < 0.05) in trend-free AR(1) noise, with and without Hamed-Rao.

    Args:
        reps: Series per (length, phi).
        seed: Generator seed.

    Returns:
        Rows ``(length, phi, rate_hamed_rao, rate_plain)``.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for n, phi in itertools.product((8, 16, 28), (0.0, 0.5, 0.8)):
        hr = plain = 0
        for _ in range(reps):
            y = _ar1(rng, n, phi)
            hr += mann_kendall_hamed_rao(y)[1] < 0.05
            plain += mann_kendall_hamed_rao(y, acf_alpha=1e-12)[1] < 0.05  # no lag selected: plain MK
        rows.append((n, phi, hr / reps, plain / reps))
    return rows


def judge_cell_ms(repeats: int = 50) -> float:
    """Median wall time of ``judge_cell`` on 5 seeds x 30 epochs, in milliseconds."""
    rng = np.random.default_rng(0)
    curves = simulate_cell(rng, Regime("effect", 5, 30, 0.5, 0.02, 0.25))
    settings = VerdictSettings()
    judge_cell(CellData("warm", curves=curves), settings)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        judge_cell(CellData("t", curves=curves), settings)
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def main() -> None:
    """Print per-regime and pooled rates for the operating and stress ranges."""
    ap = argparse.ArgumentParser(description="Calibrate the trend verdict on simulated curves.")
    ap.add_argument("--reps", type=int, default=400, help="simulated cells per regime")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    ap.add_argument("--quiet", action="store_true", help="summaries only")
    ap.add_argument(
        "--early-stop",
        action="store_true",
        help="judge each cell as a sweep with budget.early_stop does (seeds cut where the rule stops them)",
    )
    ap.add_argument("--operating-only", action="store_true", help="leave out the stress range")
    args = ap.parse_args()
    groups: list[tuple[str, str, list[Regime]]] = []
    ranges = (("operating", OPERATING_RANGE), ("stress", STRESS_RANGE))
    for label, space in ranges[:1] if args.operating_only else ranges:
        for scenario in ("null", "stalled", "effect"):
            groups.append((label, scenario, list(regimes(space, scenario))))
        groups.append((label, "small", list(regimes(space, "effect", effects=(0.10,)))))
    rs_all = (r for *_, rs in groups for r in rs)
    todo = [(r, args.reps, args.seed + 7919 * i, args.early_stop) for i, r in enumerate(rs_all)]
    t0 = time.perf_counter()
    if args.jobs > 1:
        with Pool(args.jobs) as pool:
            results = pool.map(run_regime, todo, chunksize=4)
    else:
        results = [run_regime(a) for a in todo]
    dt = time.perf_counter() - t0
    early = ", with early stops (budget.early_stop, patience 1)" if args.early_stop else ""
    print(
        f"verdict calibration: {args.reps} cells per regime, seed {args.seed}, default VerdictSettings{early}"
    )
    k = 0
    for label, scenario, rs in groups:
        got = results[k : k + len(rs)]
        k += len(rs)
        if not args.quiet:
            print(f"\n[{label} / {scenario}]")
            for r, g in zip(rs, got, strict=True):
                print(
                    f"  {r.label():55s} "
                    + " ".join(f"{v.value}={g[v.value]:.3f}" for v in Verdict)
                    + (f" covers0={g['covers0']:.3f}" if scenario in ("null", "stalled") else "")
                )
        falls = np.array([g["falls"] for g in got])
        pooled = {v.value: float(np.mean([g[v.value] for g in got])) for v in Verdict}
        if scenario in ("null", "stalled"):
            i = int(np.argmax(falls))
            cover = float(np.mean([g["covers0"] for g in got]))
            head = f"false falls {falls.mean():.4f} (max {falls[i]:.4f} at {rs[i].label()}); "
            head += f"covers0 {cover:.3f}"
        else:
            i = int(np.argmin(falls))
            head = f"falls {falls.mean():.4f} (min {falls[i]:.4f} at {rs[i].label()})"
        saved = f"; epochs saved {np.mean([g['saved'] for g in got]):.1%}" if args.early_stop else ""
        print(
            f"== {label:9s} {scenario:7s} {len(rs):3d} regimes: {head}; "
            + " ".join(f"{v}={p:.3f}" for v, p in pooled.items())
            + saved
        )
    n_cells = args.reps * len(todo)
    print(f"{n_cells} simulated cells in {dt:.0f} s with {args.jobs} jobs")
    print("\nMann-Kendall false-trend rate (p < 0.05) on trend-free AR(1) noise: Hamed-Rao vs plain")
    for n, phi, hr, plain in trend_test_null_rates(1000, args.seed):
        print(f"  n={n:2d} phi={phi:.1f}: hamed-rao {hr:.3f}  plain {plain:.3f}")
    n_boot = VerdictSettings().n_boot
    print(f"\njudge_cell, 5 seeds x 30 epochs, n_boot={n_boot}: {judge_cell_ms():.1f} ms (median)")


if __name__ == "__main__":
    main()
