"""What a search ends with: counts, the best trial, parameter importances (and what they rest on), and
Optuna's figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

#: Complete trials below which importances are not computed: a fANOVA forest over one or two points says
#: nothing.
MIN_COMPLETE = 3


@dataclass
class SearchOutcome:
    """What `orch search` reports at the end (over the whole study, earlier calls' trials included)."""

    study_name: str
    parent_run_id: str
    trials: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_trial: int | None = None
    importances: dict[str, float] = field(default_factory=dict)
    importances_note: str = ""  # what the importances rest on, or why there are none
    figures: dict[str, Path] = field(default_factory=dict)


def summarise(out: SearchOutcome, study: optuna.Study) -> SearchOutcome:
    """Fill ``out`` from the whole study (earlier calls' trials included)."""
    trials = study.get_trials(deepcopy=False)
    out.trials = len(trials)
    out.complete = sum(t.state == TrialState.COMPLETE for t in trials)
    out.pruned = sum(t.state == TrialState.PRUNED for t in trials)
    out.failed = sum(t.state == TrialState.FAIL for t in trials)
    if out.complete:
        best = study.best_trial
        out.best_value, out.best_params, out.best_trial = best.value, dict(best.params), best.number
    left_out = f"{out.pruned} pruned" + (f", {out.failed} failed" if out.failed else "")
    if out.complete < MIN_COMPLETE:
        out.importances_note = (
            f"no importances: {out.complete} complete trial{'s' if out.complete != 1 else ''}, "
            f"they need {MIN_COMPLETE} ({left_out} do not count)"
        )
        return out
    try:
        out.importances = dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError) as exc:
        out.importances_note = f"no importances: {exc}"
        return out
    out.importances_note = f"importances over {out.complete} complete trials ({left_out} left out)"
    return out


def figures(study: optuna.Study, out: Path) -> dict[str, Path]:
    """Optuna's optimisation history, parameter importances and parallel coordinates as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out.mkdir(parents=True, exist_ok=True)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    plots: dict[str, Callable[..., Any]] = {"optimization_history": ovm.plot_optimization_history}
    if len(complete) >= MIN_COMPLETE:
        plots |= {
            "param_importances": ovm.plot_param_importances,
            "parallel_coordinate": ovm.plot_parallel_coordinate,
        }
    made = {}
    for key, plot in plots.items():
        try:
            ax = plot(study)
        except (RuntimeError, ValueError):
            continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(8, 5)
        path = out / f"{key}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        made[key] = path
    return made
