from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from tests.conftest import bad_hdf5_files, small_hdf5_files, write_config

runner = CliRunner()


def test_train_prints_epochs_writes_outputs_and_tracks(tmp_path: Path, tiny: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, tiny)
    res = runner.invoke(
        app, ["train", "--config", str(cfg), "--epochs", "2", "--set", "trainer.loss_weights.recon=0.2"]
    )
    assert res.exit_code == 0, res.output
    rows = [line for line in res.output.splitlines() if line.startswith("epoch")]
    assert [r.split()[1] for r in rows] == ["0", "1", "2"]
    for name in ("content", "recon", "cross", "total", "floor", "psnr_clean", "leak"):
        assert name in rows[-1]
    out = next((tmp_path / "runs" / "train").iterdir())
    assert f"outputs: {out.relative_to(tmp_path)}" in res.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["trainer"]["loss_weights"]["recon"] == 0.2 and saved["trainer"]["epochs"] == 2
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 3
    assert (out / "checkpoint.pt").exists() and any((out / "images").iterdir())
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("orch-train").experiment_id])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "cross")] == [0, 1, 2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "missing.json"], "no such config file"),
        (
            ["--config", "{cfg}", "--set", "trainer.loss_weights.recn=0.2"],
            "did you mean 'trainer.loss_weights.recon'",
        ),
        (["--config", "{cfg}", "--set", "trainer.lr=fast"], "trainer.lr"),
        (["--config", "{cfg}", "--set", "nonsense"], "expected key=value"),
        (["--config", "{bad}"], "invalid JSON at line 1"),
        (["--config", "{cfg}", "--set", "data={{source: hdf5, path: nope.h5}}"], "nope.h5"),
        (
            ["--config", "{cfg}", "--set", "data.source=hdf5", "--set", "data.path=x.h5"],
            "unknown key 'data.pairs'",
        ),
    ],
)
def test_bad_input_exits_2_with_one_message_and_writes_nothing(
    tmp_path: Path, tiny: dict, monkeypatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, tiny)
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    args = [a.format(cfg=cfg, bad=bad) for a in args]
    res = runner.invoke(app, ["train", "--no-track", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "runs").exists()


def test_diverged_run_exits_1_with_reason(tmp_path: Path, tiny: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, tiny)
    res = runner.invoke(
        app,
        [
            "train",
            "--no-track",
            "--config",
            str(cfg),
            "--set",
            "trainer.lr=1e30",
            "--set",
            "trainer.optimizer=sgd",
        ],
    )
    assert res.exit_code == 1
    assert "diverged" in res.output and "non-finite" in res.output


def _assert_refused(res: object, tmp_path: Path, *needles: str) -> None:
    """Exit 2, one message naming the cause, no traceback, nothing written (no run folder, no MLflow run)."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and res.output.count("error:") == 1, res.output
    for needle in needles:
        assert needle in res.output, (needle, res.output)
    assert not (tmp_path / "runs").exists()


def test_data_no_run_can_train_on_exits_2_and_writes_nothing(tmp_path: Path, tiny: dict, monkeypatch) -> None:
    """Bad data and 3x3 images (which `orch data inspect` accepts, and torch refused mid-run with "Output
    size is too small"): one message, no run folder, no tracked run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = write_config(tmp_path, tiny)
    for path, message in [*bad_hdf5_files(tmp_path), *small_hdf5_files(tmp_path)]:
        res = runner.invoke(
            app, ["train", "--config", str(cfg), "--set", f"data={{source: hdf5, path: {path}}}"]
        )
        _assert_refused(res, tmp_path, path.name, message)


def test_config_files_that_are_not_text_or_nest_too_deep_exit_2(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bin.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "deep.yaml").write_text("model: " + "[" * 20_000 + "]" * 20_000 + "\n")
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "broken.json").symlink_to(tmp_path / "nowhere.json")
    for name, message in [
        ("bin.json", "bin.json: line 1: not UTF-8 text"),
        ("deep.yaml", "deep.yaml: line 1: nested more than 64 levels deep"),
        ("dir.json", "dir.json: is a directory"),
        ("broken.json", "broken.json: no such config file (a broken link"),
    ]:
        _assert_refused(runner.invoke(app, ["train", "--config", name]), tmp_path, message)


def test_a_seed_torch_cannot_take_or_a_nan_exits_2(tmp_path: Path, tiny: dict, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, tiny)
    for override, message in [
        (
            "trainer.seed=1180591620717411303424",
            "trainer.seed: a seed must be an integer from 0 to 2**63 - 1",
        ),
        ("data.noise=.nan", "data.noise must be a finite number"),
        ("trainer.lr=.inf", "trainer.lr: Input should be a finite number"),
    ]:
        _assert_refused(
            runner.invoke(app, ["train", "--config", str(cfg), "--set", override]), tmp_path, message
        )


@pytest.mark.parametrize("track", [True, False])
def test_a_file_where_runs_should_be_exits_2_naming_it(
    tmp_path: Path, tiny: dict, monkeypatch, track: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("not a folder")
    cfg = write_config(tmp_path, tiny)
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    args = ["train", str(cfg), "--epochs", "1", "--tracking-uri", uri]
    res = runner.invoke(app, [*args, "--track" if track else "--no-track"])
    assert res.exit_code == 2, res.output
    assert "runs/train" in res.output and "Traceback" not in res.output
    assert (tmp_path / "runs").read_text() == "not a folder"


def test_the_config_is_given_once_positionally_or_as_an_option(tmp_path: Path, tiny: dict) -> None:
    cfg = write_config(tmp_path, tiny)
    both = runner.invoke(app, ["train", str(cfg), "--config", str(cfg)])
    neither = runner.invoke(app, ["train", "--epochs", "1"])
    for res in (both, neither):
        assert res.exit_code == 2 and "give the run config once" in res.output
