from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.execute.context import SweepRequest
from orchestrator.execute.sweep import run_sweep
from orchestrator.matrix import load_matrix
from tests.conftest import alias_bomb, bad_hdf5_files, kill_9_after_the_first_run, small_hdf5_files

runner = CliRunner()


def _matrix(
    tmp_path: Path, tiny: dict, cells: dict, *, epochs: int = 2, seeds: list[int] | None = None
) -> Path:
    path = tmp_path / "m.yaml"
    m = {
        "name": "tiny_sweep",
        "base": tiny,
        "seeds": seeds or [0, 1],
        "cells": cells,
        "budget": {"epochs": epochs},
    }
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    return path


def _client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")


def _children(client: MlflowClient, name: str = "tiny_sweep") -> list:
    exp = client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'run'", max_results=1000)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_two_workers_log_every_run_with_the_contract_names(in_tmp: Path, tiny: dict) -> None:
    path = _matrix(in_tmp, tiny, {"orig": {"cross_skip": "use_source"}, "nse": {"cross_skip": "no_skip"}})
    matrix, specs = load_matrix(path)
    uri = f"sqlite:///{in_tmp}/runs/mlflow.db"
    outcome = run_sweep(matrix, specs, tracking_uri=uri, matrix_path=path, workers=2)
    assert (outcome.ran, outcome.finished, outcome.crashed) == (4, 4, 0)
    client = _client(in_tmp)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.data.tags["orch.kind"] == "sweep" and "orch.version.torch" in parent.data.tags
    assert "m.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    runs = _children(client)
    assert len(runs) == 4
    assert {(r.data.tags["orch.cell"], r.data.tags["orch.seed"]) for r in runs} == {
        ("orig", "0"),
        ("orig", "1"),
        ("nse", "0"),
        ("nse", "1"),
    }
    keys = {s.run_key for s in specs}
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.tags["orch.run_key"] in keys
        assert r.data.tags["mlflow.parentRunId"] == outcome.parent_run_id
        assert r.data.tags["orch.sweep"] == parent.data.tags["orch.sweep"]
        # params: the axes that differ between the cells; the whole config is the artifact config.json
        skip = {"orig": "use_source", "nse": "no_skip"}[r.data.tags["orch.cell"]]
        assert r.data.params == {"cross_skip": skip}
        arts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"config.json", "images"} <= arts
        config = client.download_artifacts(r.info.run_id, "config.json", str(in_tmp))
        assert json.loads(Path(config).read_text())["trainer"]["seed"] == int(r.data.tags["orch.seed"])
        assert (r.data.tags["orch.epochs"], "orch.steps_per_epoch" in r.data.tags) == ("2", False)
        # concurrent workers lose nothing: every metric at every epoch
        for metric in ("content", "recon", "cross", "total", "cross_floor", "noise_leak", "cross_psnr_clean"):
            assert [m.step for m in client.get_metric_history(r.info.run_id, metric)] == [0, 1, 2], metric


def test_resume_runs_nothing_twice_and_fresh_runs_all(in_tmp: Path, tiny: dict) -> None:
    path = _matrix(in_tmp, tiny, {"orig": {"cross_skip": "use_source"}}, seeds=[0, 1])
    matrix, specs = load_matrix(path)
    uri = f"sqlite:///{in_tmp}/runs/mlflow.db"
    run_sweep(matrix, specs, tracking_uri=uri, workers=1)
    again = run_sweep(matrix, specs, tracking_uri=uri, workers=1)
    assert (again.ran, again.skipped) == (0, 2)
    fresh = run_sweep(matrix, specs, tracking_uri=uri, workers=1, request=SweepRequest(fresh=True))
    assert fresh.ran == 2
    assert len(_children(_client(in_tmp))) == 4


def test_nan_run_is_diverged_and_the_others_finish(in_tmp: Path, tiny: dict) -> None:
    cells = {"ok": {"lr": 0.001}, "nan": {"lr": 1.0e30, "trainer.optimizer": "sgd"}}
    path = _matrix(in_tmp, tiny, cells)
    res = runner.invoke(app, ["sweep", str(path), "--workers", "2"])
    assert res.exit_code == 0, res.output  # a diverged run is a result, not a crash
    runs = _children(_client(in_tmp))
    by_cell: dict[str, list] = {}
    for r in runs:
        by_cell.setdefault(r.data.tags["orch.cell"], []).append(r)
    assert all(r.info.status == "FINISHED" for r in by_cell["ok"])
    assert all(
        r.info.status == "FAILED" and r.data.tags["orch.failure"].startswith("nan") for r in by_cell["nan"]
    )
    rep = runner.invoke(app, ["report", str(path), "--format", "json"])
    assert rep.exit_code == 0, rep.output
    import json

    verdicts = {v["cell"]: v["verdict"] for v in json.loads(rep.output)}
    assert verdicts["nan"] == "diverged" and verdicts["ok"] != "diverged"
    # the policy: a diverged run is kept as a result, run again only when asked
    again = runner.invoke(app, ["sweep", str(path), "--workers", "2"])
    assert again.exit_code == 0 and "4 already finished, 0 to run" in again.output
    assert len(_children(_client(in_tmp))) == 4
    retry = runner.invoke(app, ["sweep", str(path), "--workers", "2", "--retry-diverged"])
    assert retry.exit_code == 0 and "2 already finished, 2 to run" in retry.output
    runs = _children(_client(in_tmp))
    assert len(runs) == 6 and sum(r.data.tags["orch.cell"] == "nan" for r in runs) == 4


def test_crash_is_recorded_with_traceback_others_go_on_exit_1(in_tmp: Path, tiny: dict, monkeypatch) -> None:
    bad = in_tmp / "corrupt.h5"
    bad.write_text("not an HDF5 file")  # cannot be read
    cells = {"ok": {"lr": 0.001}, "boom": {"data": {"source": "hdf5", "path": str(bad)}}}
    path = _matrix(in_tmp, tiny, cells, seeds=[0])
    # the preflight refuses such a file (test_bad_data_exits_2_before_anything_is_written); a crash it cannot
    # foresee (a file that goes bad after it) must still be recorded, so it is skipped here
    monkeypatch.setattr("orchestrator.execute.plan.preflight", lambda specs: None)
    res = runner.invoke(app, ["sweep", str(path), "--workers", "1"])
    assert res.exit_code == 1, res.output
    assert "boom seed 0" in res.output and "corrupt.h5" in res.output
    client = _client(in_tmp)
    runs = {r.data.tags["orch.cell"]: r for r in _children(client)}
    assert runs["ok"].info.status == "FINISHED"
    assert runs["boom"].info.status == "FAILED" and "corrupt.h5" in runs["boom"].data.tags["orch.failure"]
    tb = client.download_artifacts(runs["boom"].info.run_id, "traceback.txt", str(in_tmp))
    assert "Traceback" in Path(tb).read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_device_or_data_exits_2_before_anything_runs(in_tmp: Path, tiny: dict) -> None:
    (in_tmp / "dangling.h5").symlink_to("moved_away.h5")  # a link whose file was moved: not "no such file"
    dangling = "dangling.h5: a link to moved_away.h5, which does not exist"
    for cells, message in (
        ({"gpu": {"trainer.device": "cuda"}}, "no CUDA device"),
        ({"h5": {"data": {"source": "hdf5", "path": "nowhere.h5"}}}, "nowhere.h5: no such data file"),
        ({"h5": {"data": {"source": "hdf5", "path": "dangling.h5"}}}, dangling),
    ):
        res = runner.invoke(app, ["sweep", str(_matrix(in_tmp, tiny, cells))])
        assert res.exit_code == 2 and message in res.output, res.output
        assert not (in_tmp / "runs").exists()


def test_kill_9_then_resume_finishes_the_rest_once(in_tmp: Path, tiny: dict) -> None:
    tiny["data"]["pairs"] = 64
    path = _matrix(in_tmp, tiny, {"a": {"lr": 0.001}, "b": {"lr": 0.002}}, epochs=8, seeds=[0, 1])
    _, specs = load_matrix(path)
    cmd = [sys.executable, "-m", "orchestrator.cli", "sweep", str(path), "--workers", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kill_9_after_the_first_run(cmd, in_tmp, env)  # mid-way
    client = _client(in_tmp)
    before = _children(client)
    assert any(r.info.status == "RUNNING" for r in before), "kill -9 should leave a run RUNNING"
    assert 1 <= sum(r.info.status == "FINISHED" for r in before) < len(specs)
    time.sleep(2.0)  # the orphaned worker notices its coordinator is gone and exits
    res = subprocess.run(cmd, cwd=in_tmp, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    after = _children(client)
    finished = [r.data.tags["orch.run_key"] for r in after if r.info.status == "FINISHED"]
    assert sorted(finished) == sorted(s.run_key for s in specs)  # each exactly once
    assert not [r for r in after if r.info.status == "RUNNING"]
    assert any(r.info.status == "KILLED" for r in after)


def test_dry_run_prints_the_plan_and_creates_nothing(in_tmp: Path, tiny: dict) -> None:
    path = _matrix(in_tmp, tiny, {"orig": {"cross_skip": "use_source"}, "nse": {"cross_skip": "no_skip"}})
    res = runner.invoke(app, ["sweep", str(path), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert res.output.count("to run") >= 4 and "orig" in res.output and "nse" in res.output
    assert not (in_tmp / "runs").exists()


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({"x": {"recon_wieght": 0.1}}, "did you mean 'recon_weight'"),
        ({"x": {"cross_skip": "sometimes"}}, "'use_source' or 'no_skip'"),
    ],
)
def test_bad_matrix_exits_2_and_creates_nothing(in_tmp: Path, tiny: dict, cells: dict, message: str) -> None:
    path = _matrix(in_tmp, tiny, cells)
    res = runner.invoke(app, ["sweep", str(path)])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    assert not (in_tmp / "runs").exists()
    res = runner.invoke(app, ["sweep", str(in_tmp / "missing.yaml")])
    assert res.exit_code == 2 and "no such matrix file" in res.output


def test_a_sweep_over_a_users_file_without_clean_images(in_tmp: Path, tiny: dict) -> None:
    """The researcher's own HDF5 file: no clean images, an odd size. Every run finishes, and the report
    says what it cannot judge instead of `?` with no word why."""
    from model.data import Pairs, write_pairs
    from model.data.phantom import generate_pairs

    ph = generate_pairs(30, 20, seed=3)
    write_pairs(in_tmp / "own.h5", Pairs(ph.a, ph.b), source="scanner")
    tiny["data"] = {"source": "hdf5", "path": str(in_tmp / "own.h5")}
    path = _matrix(in_tmp, tiny, {"nse": {"cross_skip": "no_skip"}}, epochs=6, seeds=[0, 1, 2])
    m = yaml.safe_load(path.read_text())
    m["verdict"] = {"warmup": 2, "guards": [{"metric": "noise_leak", "max": 0.1}]}
    path.write_text(yaml.safe_dump(m))
    uri = f"sqlite:///{in_tmp}/runs/mlflow.db"
    res = runner.invoke(app, ["--tracking-uri", uri, "sweep", str(path), "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "finished 3, diverged 0, crashed 0" in res.output
    report = runner.invoke(app, ["--tracking-uri", uri, "report", str(path), "--format", "json"])
    (v,) = json.loads(report.output)
    assert v["floor"] is None and v["baseline"] is not None and v["level"]
    assert any("guard noise_leak: not judged" in n and "no clean images" in n for n in v["notes"])


def _assert_refused(res: object, folder: Path, *needles: str) -> None:
    """Exit 2, one message naming the cause, no traceback, nothing written (no store, no MLflow run)."""
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and res.output.count("error:") == 1, res.output
    for needle in needles:
        assert needle in res.output, (needle, res.output)
    assert not (folder / "runs").exists()


def test_bad_data_exits_2_before_anything_is_written(in_tmp: Path, tiny: dict) -> None:
    """Each distinct data source is opened and checked before the sweep's parent run exists: NaN, Inf,
    shapes, counts, dtype, a missing dataset, no pairs, 2-D arrays, not HDF5, a directory; and the model's
    needs (3x3 images and two encoder levels, a single pair). They used to exit 1 after a FAILED child."""
    for data, message in [*bad_hdf5_files(in_tmp), *small_hdf5_files(in_tmp)]:
        cells = {"ok": {"lr": 0.001}, "bad": {"data": {"source": "hdf5", "path": str(data)}}}
        res = runner.invoke(app, ["sweep", str(_matrix(in_tmp, tiny, cells, seeds=[0]))])
        _assert_refused(res, in_tmp, data.name, message)


def test_an_unreadable_data_file_exits_2(in_tmp: Path, tiny: dict, monkeypatch) -> None:
    from model.data import Pairs, write_pairs

    images = torch.rand(8, 16, 16).numpy()
    write_pairs(in_tmp / "locked.h5", Pairs(images, images), source="t")
    (in_tmp / "locked.h5").chmod(0)
    if os.geteuid() == 0:  # root reads a chmod 000 file: say it cannot, for this file only
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p).name != "locked.h5" and access(p, mode))
    cells = {"bad": {"data": {"source": "hdf5", "path": str(in_tmp / "locked.h5")}}}
    res = runner.invoke(app, ["sweep", str(_matrix(in_tmp, tiny, cells, seeds=[0]))])
    _assert_refused(res, in_tmp, "locked.h5: cannot be read (permission denied)")


def test_images_too_small_for_one_cells_depth(in_tmp: Path, tiny: dict) -> None:
    """The data suits the base model (two levels: 4x4 at least) but not a cell with three levels."""
    import numpy as np

    from model.data import Pairs, write_pairs

    images = np.random.default_rng(0).random((8, 4, 4), dtype=np.float32)
    write_pairs(in_tmp / "four.h5", Pairs(images, images), source="t")
    tiny["data"] = {"source": "hdf5", "path": str(in_tmp / "four.h5")}
    deep = {"encoder_features": [4, 8, 8], "decoder_features": [8, 8, 4]}
    path = _matrix(in_tmp, tiny, {"two": {"lr": 0.001}}, seeds=[0])
    assert runner.invoke(app, ["sweep", str(path), "--dry-run"]).exit_code == 0
    path = _matrix(in_tmp, tiny, {"two": {"lr": 0.001}, "three": deep}, seeds=[0])
    res = runner.invoke(app, ["sweep", str(path), "--dry-run"])
    _assert_refused(res, in_tmp, "four.h5: images of 4x4 are too small", "3 levels", "at least 8x8")


def test_unreadable_matrices_and_values_exit_2(in_tmp: Path, tiny: dict) -> None:
    (in_tmp / "bin.yaml").write_bytes(b"name: t\n\xff\xfe\x00")
    (in_tmp / "deep.yaml").write_text("name: t\nbase: " + "[" * 20_000 + "]" * 20_000 + "\n")
    (in_tmp / "bomb.yaml").write_text(f"name: t\ncells:\n  c: {{lr: 0.1, note: {alias_bomb()}}}\n")
    (in_tmp / "dir.json").mkdir()
    (in_tmp / "no_base.yaml").write_text(
        yaml.safe_dump({"name": "t", "base": "dir.json", "axes": {"lr": [1]}})
    )
    seed = _matrix(in_tmp, tiny, {"a": {"lr": 0.001}}, seeds=[1180591620717411303424])
    for name, message in [
        ("bin.yaml", "bin.yaml: line 2: not UTF-8 text"),
        ("deep.yaml", "deep.yaml: line 2: nested more than 64 levels deep"),
        ("bomb.yaml", "bomb.yaml: line 3: the document stands for more than 100,000 values"),
        ("no_base.yaml", "dir.json: is a directory"),
        (seed.name, "seeds.0: a seed must be an integer from 0 to 2**63 - 1"),
    ]:
        _assert_refused(runner.invoke(app, ["sweep", name, "--dry-run"]), in_tmp, message)
    # a NaN noise used to "diverge" at epoch 0 and the sweep exited 0
    nan = _matrix(in_tmp, tiny, {"a": {"noise": float("nan")}}, seeds=[0])
    _assert_refused(runner.invoke(app, ["sweep", str(nan)]), in_tmp, "data.noise must be a finite number")


def test_a_million_runs_are_refused_within_a_second_unless_yes(in_tmp: Path, tiny: dict) -> None:
    values = [0.1 * (i + 1) for i in range(10)]
    names = ("lr", "recon_weight", "content_weight", "cross_weight", "skip_weight", "noise")
    path = in_tmp / "huge.yaml"
    path.write_text(yaml.safe_dump({"name": "huge", "base": tiny, "axes": {a: values for a in names}}))
    t = time.perf_counter()
    res = runner.invoke(app, ["sweep", str(path), "--dry-run"])
    assert time.perf_counter() - t < 1
    _assert_refused(
        res,
        in_tmp,
        "the matrix asks for 1,000,000 runs (6 axes of 10 values x 1 seed); above 10,000 pass --yes",
    )


def test_yes_lifts_the_run_limit(in_tmp: Path, tiny: dict, monkeypatch) -> None:
    monkeypatch.setattr("orchestrator.matrix.MAX_RUNS", 3)  # as 10,000, on a matrix that expands at once
    path = _matrix(in_tmp, tiny, {"a": {"lr": 0.001}, "b": {"lr": 0.002}}, seeds=[0, 1])
    res = runner.invoke(app, ["sweep", str(path), "--dry-run"])
    _assert_refused(res, in_tmp, "asks for 4 runs (2 cells x 2 seeds); above 3 pass --yes")
    res = runner.invoke(app, ["sweep", str(path), "--dry-run", "--yes"])
    assert res.exit_code == 0 and "4 to run" in res.output, res.output
