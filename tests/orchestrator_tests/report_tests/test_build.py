"""From a real tiny sweep to reports: verdicts that match what the cells were built to do."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app

runner = CliRunner()


def _report(tmp: Path, *args: str) -> CliRunner:
    uri = f"sqlite:///{tmp}/runs/mlflow.db"
    return runner.invoke(app, ["--tracking-uri", uri, "report", *args])


def test_json_verdicts_match_the_constructed_behaviour(swept: Path) -> None:
    res = _report(swept, str(swept / "m.yaml"), "--format", "json")
    assert res.exit_code == 0, res.output
    verdicts = {v["cell"]: v for v in json.loads(res.output)}
    assert verdicts["learns"]["verdict"] == "falls"
    assert verdicts["frozen"]["verdict"] == "flat"
    assert verdicts["frozen"]["state"] == "stalled"  # far above the clean-target floor
    assert verdicts["explodes"]["verdict"] == "diverged"
    assert verdicts["learns"]["agrees"] is True and verdicts["frozen"]["agrees"] is True
    learns = verdicts["learns"]
    assert (
        learns["beats_baseline"] is False and learns["vs_baseline"] > 0.5 and learns["observed"] == "partial"
    )
    assert "but only ends above the constant-prediction level" in learns["reason"]
    for v in verdicts.values():  # the verdict JSON contract (docs/verdicts.md)
        contract = ("cell", "axes", "seeds", "epochs", "window", "start", "end", "rel_change", "ci")
        contract += ("p_value", "whole_run_change", "verdict", "guards", "expected", "agrees")
        for key in contract:
            assert key in v, key


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json", "html"])
def test_every_format_is_written_and_rereadable(swept: Path, fmt: str) -> None:
    out = swept / f"report.{fmt}"
    res = _report(swept, str(swept / "m.yaml"), "--format", fmt, "--out", str(out))
    assert res.exit_code == 0, res.output
    text = out.read_text()
    if fmt == "json":
        assert {v["cell"] for v in json.loads(text)} == {"learns", "frozen", "explodes"}
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["cell"] for r in rows} == {"learns", "frozen", "explodes"}
    elif fmt == "markdown":
        assert "| learns |" in text and "falls" in text
    else:
        assert "<table" in text and text.count("<img") >= 2 and "learns" in text


def test_report_by_experiment_and_figures_logged_to_the_sweep(swept: Path) -> None:
    res = _report(swept, "--experiment", "constructed")
    assert res.exit_code == 0, res.output
    assert "learns" in res.output and "falls" in res.output
    client = MlflowClient(tracking_uri=f"sqlite:///{swept}/runs/mlflow.db")
    exp = client.get_experiment_by_name("constructed")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'sweep'")
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/cross_curves.png" in logged and "report/x_a_from_b_last_epoch.png" in logged


def test_the_sweeps_verdicts_are_recorded_once_and_tagged_on_its_runs(swept: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{swept}/runs/mlflow.db")
    exp = client.get_experiment_by_name("constructed")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'sweep'")
    pid = parent.info.run_id
    recorded = client.download_artifacts(pid, "report/verdicts.json", str(swept / "dl1"))
    before = Path(recorded).read_text()
    settings = json.loads(
        Path(client.download_artifacts(pid, "report/settings.json", str(swept / "dl2"))).read_text()
    )
    assert settings["verdict"]["warmup"] == 5 and settings["runs"] == "the current code and data"
    assert "report/verdicts_table.json" in {a.path for a in client.list_artifacts(pid, "report")}
    falls = client.search_runs([exp.experiment_id], "tags.`orch.verdict` = 'falls'")
    assert {r.data.tags["orch.cell"] for r in falls} == {"learns"} and len(falls) == 3
    assert all(r.data.tags["orch.verdict_change"].endswith("%") for r in falls)
    # a report with other settings (the defaults: min_seeds 3, no warm-up 5) writes beside, never over
    assert _report(swept, "--experiment", "constructed", "--format", "markdown").exit_code == 0
    again = Path(client.download_artifacts(pid, "report/verdicts.json", str(swept / "dl3"))).read_text()
    assert again == before
    others = {a.path: a for a in client.list_artifacts(pid, "reports")}  # one folder per settings
    assert others and all(client.list_artifacts(pid, p) for p in others)
    assert {
        r.data.tags["orch.cell"]
        for r in client.search_runs([exp.experiment_id], "tags.`orch.verdict` = 'falls'")
    } == {"learns"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--experiment", "nope"], "no experiment named 'nope'"),
        (["--experiment", "constructed", "--metric", "crosss"], "logged the metric 'crosss'"),
        (["--experiment", "orch-empty"], "has no runs"),
        (["--experiment", "constructed", "--format", "pdf"], "'pdf' is not one of"),
        ([], "give a matrix YAML or --experiment"),
    ],
)
def test_bad_report_requests_exit_2(swept: Path, args: list[str], message: str) -> None:
    MlflowClient(tracking_uri=f"sqlite:///{swept}/runs/mlflow.db").search_experiments()
    client = MlflowClient(tracking_uri=f"sqlite:///{swept}/runs/mlflow.db")
    if client.get_experiment_by_name("orch-empty") is None:
        client.create_experiment("orch-empty")
    res = _report(swept, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


def test_report_without_a_store_exits_2(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["report", "--experiment", "x"])
    assert res.exit_code == 2 and "no tracking store" in res.output
    assert not (tmp_path / "runs").exists()
