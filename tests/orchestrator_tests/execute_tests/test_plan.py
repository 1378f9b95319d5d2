"""What a sweep does with each run, read from a real store: done, to run, or run again and why."""

from __future__ import annotations

from pathlib import Path

import yaml

from orchestrator.execute.plan import PlanState, dry_run_plan, plan_sweep
from orchestrator.matrix import load_matrix
from orchestrator.tracking import RunKind, RunStatus, Tracker, prepare_store, run_tags


def _specs(tmp_path: Path, tiny: dict, early_stop: bool = False) -> list:
    matrix = {
        "name": "plan",
        "base": tiny,
        "seeds": [0],
        "axes": {"recon_weight": [0.1, 0.2, 0.3, 0.4, 0.5]},
        "budget": {"early_stop": early_stop},
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix))
    return load_matrix(path)[1]


def test_each_ending_gives_its_plan(tmp_path: Path, tiny: dict) -> None:
    specs = _specs(tmp_path, tiny)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert {p.state for p in dry_run_plan(specs, uri, "plan")} == {PlanState.TODO}
    assert not (tmp_path / "mlflow.db").exists()  # a dry run never creates the store
    tracker = Tracker(prepare_store(uri))
    endings = [RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.CRASHED, RunStatus.KILLED]
    for spec, status in zip(specs, endings, strict=False):
        tags = run_tags(RunKind.RUN, cell=spec.cell, seed=spec.seed, run_key=spec.run_key)
        tracker.finish(tracker.start_run("plan", spec.config, name=spec.cell, tags=tags), status, "why")
    states = [p.state for p in plan_sweep(specs, tracker, "plan")]
    assert states == [PlanState.DONE, PlanState.EARLY, PlanState.FAILED, PlanState.KILLED, PlanState.TODO]
    assert [p.state for p in dry_run_plan(specs, uri, "plan")] == states
    assert {p.state for p in plan_sweep(specs, tracker, "plan", fresh=True)} == {PlanState.TODO}
    early = _specs(tmp_path, tiny, early_stop=True)  # with early stops asked for, a stopped run is done
    assert plan_sweep(early, tracker, "plan")[1].state is PlanState.DONE
    assert PlanState.EARLY.label == "stopped early before: full budget now"
