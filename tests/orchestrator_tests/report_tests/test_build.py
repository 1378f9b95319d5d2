"""From a real tiny sweep to reports: verdicts that match what the cells were built to do."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.cli.common import console
from tests.browser import chromium, page_layout
from tests.orchestrator_tests.report_tests.conftest import DESCRIPTION

REPO = Path(__file__).resolve().parents[3]

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
    # without the matrix, the context's data and budget come from the runs' config.json (their params
    # are only the axes that differ between the cells) and their budget tags
    res = _report(swept, "--experiment", "constructed", "--format", "json")
    context = json.loads(res.output)[0]["report"]["context"]
    assert context["data"] == "synthetic phantoms 16x16, noise 0.05, 48 pairs"
    assert context["budget"] == "12 epochs after epoch 0, 12 steps of 8 pairs an epoch"


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


# ---------------------------------------------------------------------------------------------------------
# What a reader sees: tables at 80 and 100 columns, one answer in every format, one file (issue 29)


def _answer_and_context(swept: Path) -> tuple[list[str], dict[str, str]]:
    res = _report(swept, str(swept / "m.yaml"), "--format", "json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)[0]["report"]
    return report["answer"], report["context"]


@pytest.mark.parametrize("width", [80, 100])
def test_the_table_keeps_names_verdicts_changes_and_marks_at_80_and_100_columns(
    swept: Path, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    monkeypatch.setattr(console, "width", width)
    res = _report(swept, str(swept / "m.yaml"))
    assert res.exit_code == 0, res.output
    lines = res.output.split("\nfigures: ")[0].splitlines()  # the figures' paths are printed whole
    assert max(len(line) for line in lines) <= width and not [ln for ln in lines if ln.endswith(" ")]
    verdicts = {
        v["cell"]: v for v in json.loads(_report(swept, str(swept / "m.yaml"), "--format", "json").output)
    }
    rows: dict[str, str] = {}
    for line in lines:  # a cell's row in the table comes first (its reason comes under the table)
        if line.split()[:1] and line.split()[0] in verdicts:
            rows.setdefault(line.split()[0], line)
    for cell, v in verdicts.items():
        row = rows[cell]
        assert v["verdict"] in row and "✓" in row  # every cell here agrees with its expectation
        assert v["rel_change"] is None or f"{v['rel_change']:+.1%}" in row


def test_piped_output_follows_columns_and_ends_no_line_with_spaces(swept: Path) -> None:
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(REPO)}
    uri = f"sqlite:///{swept}/runs/mlflow.db"
    for wide in ([], ["--wide"]):
        res = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "report", "m.yaml", *wide, "--tracking-uri", uri],
            cwd=swept, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        lines = res.stdout.split("\nfigures: ")[0].splitlines()
        assert lines and not [line for line in lines if line != line.rstrip()]
        assert max(len(line) for line in lines) <= 80, res.stdout  # --wide too: one block a cell
    assert "guards failed" in res.stdout and "cross_psnr_clean" in res.stdout  # every column, named


def test_the_answer_is_where_mlflow_ui_shows_a_sweep_first(swept: Path) -> None:
    """The experiment's description is the matrix's; the sweep's parent run is named for its sweep id, its
    description is the report in markdown, and each cell's results are its metrics."""
    client = MlflowClient(tracking_uri=f"sqlite:///{swept}/runs/mlflow.db")
    exp = client.get_experiment_by_name("constructed")
    assert exp.tags["mlflow.note.content"] == DESCRIPTION
    (parent,) = client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'sweep'")
    assert parent.info.run_name == f"sweep-{parent.data.tags['orch.sweep']}"
    note = " ".join(parent.data.tags["mlflow.note.content"].replace("\\*", "*").split())
    answer, context = _answer_and_context(swept)
    for line in [*answer, *context.values()]:
        assert " ".join(line.split()) in note, line
    assert note.startswith("## constructed: does cross fall after the warm-up?") and "| learns |" in note
    res = _report(swept, str(swept / "m.yaml"), "--format", "json")
    logged = parent.data.metrics
    for v in json.loads(res.output):
        measured = {"end": v["end"]["mean"], "change": v["rel_change"], "vs_const": v["vs_baseline"]}
        for name, value in measured.items():
            if value is None:
                assert f"cell.{v['cell']}.{name}" not in logged
            else:
                assert logged[f"cell.{v['cell']}.{name}"] == pytest.approx(value), (v["cell"], name)
    assert "cell.learns.change" in logged and "cell.learns.end" in logged


def test_every_format_carries_the_same_answer_and_context(
    swept: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer, context = _answer_and_context(swept)
    assert context["data"] == "synthetic phantoms 16x16, noise 0.05, 48 pairs"  # the default noise
    assert context["budget"] == "12 epochs after epoch 0, 12 steps of 8 pairs an epoch"
    assert context["commit"].endswith(("(clean tree)", "(with uncommitted changes)"))
    monkeypatch.setattr(console, "width", 100)
    texts = {"table": " ".join(_report(swept, str(swept / "m.yaml")).output.split())}
    for fmt in ("markdown", "html"):
        res = _report(swept, str(swept / "m.yaml"), "--format", fmt, "--out", str(swept / f"same.{fmt}"))
        assert res.exit_code == 0, res.output
        texts[fmt] = html.unescape((swept / f"same.{fmt}").read_text()).replace("\\*", "*")
    for fmt, text in texts.items():
        for line in [*answer, *context.values()]:
            assert " ".join(line.split()) in (text if fmt == "table" else " ".join(text.split())), (fmt, line)
    md = texts["markdown"]
    assert "- **frozen**: flat: " in md and "(flat): flat" not in md  # the verdict said once


def test_html_out_is_one_self_contained_file(swept: Path, tmp_path: Path) -> None:
    out = tmp_path / "mail" / "report.html"
    res = _report(swept, str(swept / "m.yaml"), "--format", "html", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]  # no PNG or .digest beside it
    assert out.read_text().count('src="data:image/png;base64,') == 2


def test_the_default_report_folder_has_a_name_a_user_reads(swept: Path) -> None:
    def written(*args: str) -> Path:
        res = _report(swept, str(swept / "m.yaml"), "--format", "html", *args)
        assert res.exit_code == 0, res.output
        return Path(res.output.split("wrote ", 1)[1].strip())

    first = written()
    assert first.parent.name == "cross-warmup5" and first.parent.parent.name == "constructed"
    assert written() == first  # stable
    recon = written("--metric", "recon", "--cells", "learns", "--cells", "frozen")
    assert recon.parent.name == "recon-warmup5-cells-learns+frozen"  # another view, its own folder
    assert {p.name for p in first.parent.iterdir()} >= {"report.html", "cross_curves.png"}


def test_the_html_tables_scroll_within_the_page_in_chromium(swept: Path, tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip("headless Chromium not installed (Debian's chromium package; .ci/run installs it)")
    out = tmp_path / "report.html"
    assert _report(swept, str(swept / "m.yaml"), "--format", "html", "--out", str(out)).exit_code == 0
    layout = page_layout(browser, out, tmp_path, width=700)
    assert layout["page"] <= layout["window"]  # the page itself never scrolls sideways
    wide = [t for t in layout["tables"] if t["width"] > layout["window"]]
    assert wide  # every column does not fit 700 pixels: it scrolls in its box
    for table in layout["tables"]:
        assert table["scroller"] is not None and table["scroller"]["right"] <= layout["window"]
        assert table["numeric"] and set(table["numeric"]) == {"right"}


def test_per_epoch_images_in_mlflow_name_their_columns(swept: Path) -> None:
    from orchestrator.tracking import Tracker

    client = MlflowClient(tracking_uri=f"sqlite:///{swept}/runs/mlflow.db")
    exp = client.get_experiment_by_name("constructed")
    run = client.search_runs([exp.experiment_id], "tags.`orch.cell` = 'learns'")[0]
    layout = json.loads(run.data.tags["orch.image_layout"])
    assert set(layout) == {"x_a_from_b", "x_b_from_a"} and layout["x_a_from_b"]["scale"] > 1
    grid = Tracker(client.tracking_uri).images(run.info.run_id, "x_a_from_b")
    assert grid is not None and grid.shape == (2 * 16, 4 * 16)  # two pairs; source, output, target, clean


def test_an_out_that_is_a_folder_is_said_once_and_never_blamed_on_the_store(swept: Path) -> None:
    """``--out`` a folder: one line naming it, exit 2; the catch-all added "cannot read the tracking store
    ...: '2'" after it."""
    out = swept / "a_folder"
    out.mkdir(exist_ok=True)
    res = _report(swept, str(swept / "m.yaml"), "--format", "json", "--out", str(out))
    assert res.exit_code == 2, res.output
    assert res.output.count("error:") == 1 and "cannot write the report to" in res.output, res.output
    assert "tracking store" not in res.output, res.output
