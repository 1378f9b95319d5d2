from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.cli.diagnose import EXPERIMENT, parse_steps
from tests.conftest import write_config

runner = CliRunner()


def test_diagnose_prints_readings_and_tracks_figures(tmp_path: Path, tiny: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    from orchestrator.cli import common

    monkeypatch.setattr(common.console, "width", 200)  # this test reads the readings, not the layout
    cfg = write_config(tmp_path, tiny)
    res = runner.invoke(
        app, ["diagnose", str(cfg), "3", "--every", "2", "--set", "trainer.loss_weights.recon=0"]
    )
    assert res.exit_code == 0, res.output
    out = res.stdout
    for needle in ("diagnosis of", "after 3/3 steps", "latent distance", "domain probe", "cross PD from PDFS",
                   "skip reliance decoder_a", "latent-only recon", "data: same content",
                   "recon sends no gradient to decoder_a (weight 0)", "gradient norms at step 3",
                   "per step"):  # fmt: skip
        assert needle in out, needle
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["orch.kind"] == "diagnose"
    assert f"tracked: run {run.info.run_id}" in out
    assert run.data.params["trainer.loss_weights.recon"] == "0.0"
    names = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"diagnosis.json", "readings.txt", "figures", "config.json"} <= names
    figures = {f.path for f in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/gradients.png", "figures/latents.png", "figures/skip_reliance.png"} <= figures
    history = client.get_metric_history(run.info.run_id, "probe.accuracy")
    assert sorted(m.step for m in history) == [0, 2, 3]
    recon = client.get_metric_history(run.info.run_id, "grad.weighted.recon.decoder_a")
    assert {m.value for m in recon} == {0.0}


def test_json_prints_only_json_and_out_writes_figures(tmp_path: Path, tiny: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, tiny)
    res = runner.invoke(app, ["diagnose", str(cfg), "2", "--json", "--no-track", "--out", "figs"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["steps"] == 2 and doc["status"] == "finished"
    assert [s["step"] for s in doc["snapshots"]] == [0, 2]
    assert {r["item"] for r in doc["readings"]} >= {
        "latent spread over the batch",
        "grad cross/recon on decoder_b",
    }
    assert "weighted" in doc["conventions"]["gradients"]
    for name in ("gradients", "latents", "skip_reliance", "curves", "data"):
        assert (tmp_path / "figs" / f"{name}.png").stat().st_size > 0
    assert json.loads((tmp_path / "figs" / "diagnosis.json").read_text())["steps"] == 2
    assert doc["outputs"]["directory"] == "figs" and "tracking" not in doc
    assert not (tmp_path / "runs").exists()


def test_diverged_training_exits_1_after_the_table(tmp_path: Path, tiny: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, tiny)
    args = [
        "diagnose",
        str(cfg),
        "3",
        "--no-track",
        "--set",
        "trainer.lr=1e30",
        "--set",
        "trainer.optimizer=sgd",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    assert "latent distance" in res.stdout and "diverged" in res.stderr and "Traceback" not in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json"], "no such config file"),
        (
            ["{cfg}", "3", "--set", "trainer.loss_weights.recn=0.2"],
            "did you mean 'trainer.loss_weights.recon'",
        ),
        (["{bad}"], "invalid JSON at line 1"),
        (["{unknown}"], "did you mean 'trainer.cross_domain_strategy'"),
        (["{cfg}", "0"], "STEPS must be >= 1"),
        (["{cfg}", "ten"], "STEPS must be a whole number"),
        (["{cfg}", "2.5"], "STEPS must be a whole number"),
        (["{cfg}", "3", "--every", "0"], "--every must be >= 1"),
        (["{cfg}", "--set", "data={{source: hdf5, path: nope.h5}}"], "nope.h5"),
    ],
)
def test_bad_input_exits_2_with_one_message_and_writes_nothing(
    tmp_path: Path, tiny: dict, monkeypatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, tiny)
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"trainer": {"cross_domain_strategi": "no_skip"}}))
    args = [a.format(cfg=cfg, bad=bad, unknown=unknown) for a in args]
    res = runner.invoke(app, ["diagnose", *args, "--out", "figs"])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and res.stdout == ""
    assert "Traceback" not in res.output and res.stderr.count("error:") == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "figs").exists()


def test_an_unusable_tracking_store_exits_2_before_training(tmp_path: Path, tiny: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(
        app, ["--tracking-uri", "nosuchscheme://x", "diagnose", str(write_config(tmp_path, tiny))]
    )
    assert res.exit_code == 2 and "tracking store" in res.stderr and res.stdout == ""


@pytest.mark.parametrize(("text", "value"), [("10", 10), (" 1 ", 1)])
def test_parse_steps(text: str, value: int) -> None:
    assert parse_steps(text) == value
