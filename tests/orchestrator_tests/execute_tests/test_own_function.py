"""A matrix over a researcher's own training function, written to tmp_path (outside the project's
packages): real sweeps, real worker processes, real kills, a real store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.matrix import load_matrix
from orchestrator.target.function import load_function
from tests.conftest import kill_9_after_the_first_run
from tests.orchestrator_tests.execute_tests.test_distributed import _orch, postgres_url  # noqa: F401 - a fixture
from tests.orchestrator_tests.execute_tests.test_preempt import _curve, _env, _worker_pids

runner = CliRunner()
EPOCHS = 12

#: The user's code: SGD on y = 2x + noise in plain Python, with the checkpoint hook (its weight and its
#: RNG pickled before each epoch is yielded). ``heavy`` says whether orch's worker imported the built-in
#: model or torch for it (it must not); ``sleep``, ``crash_at`` and ``nan_at`` make runs slow or fail.
FUNCTION = """
import pickle
import random
import sys
import time


def fit(params, seed, epochs, *, checkpoint=None):
    rng = random.Random(seed)
    data = [(x, 2 * x + rng.gauss(0, params["noise"])) for x in [rng.uniform(-1, 1) for _ in range(64)]]
    w, start = 0.0, 0
    if checkpoint is not None and checkpoint.epoch is not None:
        w, state = pickle.loads(checkpoint.path.read_bytes())
        rng.setstate(state)
        start = checkpoint.epoch + 1
    for epoch in range(start, epochs + 1):
        if epoch > 0:
            for _ in range(8):
                x, y = rng.choice(data)
                w -= params["lr"] * 2 * (w * x - y) * x
            time.sleep(params.get("sleep", 0.0))
        if params.get("crash_at") == epoch:
            raise RuntimeError(f"boom at epoch {epoch}")
        if checkpoint is not None:
            checkpoint.path.write_bytes(pickle.dumps((w, rng.getstate())))
        loss = sum((w * x - y) ** 2 for x, y in data) / len(data)
        yield {
            "loss": float("nan") if params.get("nan_at") == epoch else loss,
            "loss_floor": params["noise"] ** 2,
            "heavy": float("model" in sys.modules or "torch" in sys.modules),
        }
"""

CELLS = {"learns": {"lr": 0.02}, "frozen": {"lr": 0.0}}


def _project(folder: Path, module: str, cells: dict | None = None, **extra) -> Path:
    """The user's module and a matrix over it; returns the matrix's path."""
    (folder / f"{module}.py").write_text(FUNCTION)
    matrix = {
        "name": module,
        "trainer": {"entrypoint": f"{module}:fit"},
        "base": {"noise": 0.1, "lr": 0.02},
        "seeds": [0, 1, 2],
        "cells": cells or CELLS,
        "verdict": {"metric": "loss"},
        "budget": {"epochs": EPOCHS},
        **extra,
    }
    path = folder / "m.yaml"
    path.write_text(yaml.safe_dump(matrix, sort_keys=False))
    return path


def _runs(client: MlflowClient, name: str) -> list:
    exp = client.get_experiment_by_name(name)
    return [] if exp is None else client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'run'")


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Commands run in tmp_path, on its default store (as a sweep started there in a subprocess)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _sweep(path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", "sweep", str(path), *extra]


def test_a_users_function_sweeps_on_2_workers_survives_kill_9_and_is_judged(
    tmp_path: Path, here: Path
) -> None:
    verdict = {"metric": "loss", "warmup": 4}  # not the default warm-up (3 of 13 epochs)
    path = _project(tmp_path, "userfit_kill", base={"noise": 0.1, "lr": 0.02, "sleep": 0.1}, verdict=verdict)
    _, specs = load_matrix(path)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    cmd = _sweep(path, "--workers", "2")
    kill_9_after_the_first_run(cmd, tmp_path, _env(), pause=0.5)  # mid-way
    before = _runs(client, "userfit_kill")
    assert any(r.info.status == "RUNNING" for r in before), "kill -9 should leave a run RUNNING"
    assert 1 <= sum(r.info.status == "FINISHED" for r in before) < len(specs)
    time.sleep(2.0)  # the orphaned workers see their coordinator gone at their next epoch and exit

    res = runner.invoke(
        app, ["sweep", str(path), "--workers", "2"]
    )  # in this process: no interpreter to start
    assert res.exit_code == 0, res.output
    after = _runs(client, "userfit_kill")
    finished = [r for r in after if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["orch.run_key"] for r in finished) == sorted(s.run_key for s in specs)
    assert not [r for r in after if r.info.status == "RUNNING"]
    for run in finished:  # nothing lost, nothing twice, and the worker never loaded the built-in model
        assert sorted(_curve(client, run.info.run_id, "loss")) == list(range(EPOCHS + 1))
        assert set(_curve(client, run.info.run_id, "heavy").values()) == {0.0}
        tags, params = run.data.tags, run.data.params
        assert tags["orch.entrypoint"] == "userfit_kill:fit" and tags["orch.epochs"] == str(EPOCHS)
        assert tags["orch.data"] == "none" and params["lr"] in ("0.02", "0.0") and "seed" not in params

    again = runner.invoke(app, ["sweep", str(path), "--workers", "2"])
    assert again.exit_code == 0 and "ran 0 " in again.output and "skipped 6" in again.output, again.output

    def report(*args: str) -> dict[str, dict]:
        res = runner.invoke(app, ["report", *args, "--format", "json"])
        assert res.exit_code == 0, res.output
        return {v["cell"]: v for v in json.loads(res.output)}

    verdicts = report(str(path))
    assert {c: v["verdict"] for c, v in verdicts.items()} == {"learns": "falls", "frozen": "flat"}
    assert verdicts["learns"]["floor"] == pytest.approx(0.01)  # the function's loss_floor entered the verdict
    assert verdicts["learns"]["warmup"] == 4

    # judged by name, the experiment is judged with the verdict settings its sweep's matrix recorded
    def said(got: dict[str, dict]) -> dict[str, tuple]:
        return {c: (v["verdict"], v["warmup"], v["rel_change"]) for c, v in got.items()}

    assert said(report("--experiment", "userfit_kill")) == said(verdicts)
    assert {
        v["warmup"] for v in report("--experiment", "userfit_kill", "--set", "verdict.warmup=5").values()
    } == {5}


def test_sigterm_of_a_worker_then_its_function_resumes_from_the_checkpoint_hook(
    tmp_path: Path, here: Path
) -> None:
    path = _project(tmp_path, "userfit_term", {"learns": {"lr": 0.02}}, seeds=[4])
    matrix = yaml.safe_load(path.read_text())
    matrix["base"]["sleep"] = 0.3
    path.write_text(yaml.safe_dump(matrix))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    proc = subprocess.Popen(
        _sweep(path, "--workers", "1"),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    while True:  # wait until the run has logged epoch 2, then preempt its worker
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before it was preempted"
        runs = _runs(client, "userfit_term") if (tmp_path / "runs" / "mlflow.db").exists() else []
        if runs and len(client.get_metric_history(runs[0].info.run_id, "loss")) >= 3:
            break
        time.sleep(0.1)
    run_id = runs[0].info.run_id
    (pid,) = _worker_pids(proc.pid)
    os.kill(pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 1
    killed = client.get_run(run_id)
    k = int(killed.data.tags["orch.checkpoint_epoch"])
    assert killed.info.status == "KILLED" and 2 <= k < EPOCHS and max(_curve(client, run_id, "loss")) == k

    again = runner.invoke(app, ["sweep", str(path)])
    assert again.exit_code == 0, again.output
    (run,) = _runs(client, "userfit_term")  # the same run, continued from the function's own state
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.data.tags["orch.resumed_from_epoch"] == str(k)
    logged = _curve(client, run_id, "loss")
    assert sorted(logged) == list(range(EPOCHS + 1))
    fit = load_function("userfit_term:fit", (str(tmp_path),))
    whole = [e["loss"] for e in fit({"noise": 0.1, "lr": 0.02, "sleep": 0.0}, 4, EPOCHS)]
    assert [logged[e] for e in range(EPOCHS + 1)] == pytest.approx(whole, rel=1e-12)  # as if never stopped


def test_a_crash_is_recorded_with_its_traceback_and_a_nan_is_a_diverged_run(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cells = {"ok": {"lr": 0.02}, "crash": {"crash_at": 2}, "nan": {"nan_at": 3}}
    path = _project(tmp_path, "userfit_fail", cells, seeds=[0], budget={"epochs": 4})
    uri = f"sqlite:///{tmp_path}/runs/mlflow.db"
    res = runner.invoke(app, ["--tracking-uri", uri, "sweep", str(path), "--workers", "2"])
    assert res.exit_code == 1, res.output
    client = MlflowClient(tracking_uri=uri)
    by_cell = {r.data.tags["orch.cell"]: r for r in _runs(client, "userfit_fail")}
    assert by_cell["ok"].data.tags["orch.status"] == "finished"
    crash = by_cell["crash"]
    assert crash.data.tags["orch.status"] == "crashed"
    assert crash.data.tags["orch.failure"] == "RuntimeError: boom at epoch 2"
    traceback = Path(client.download_artifacts(crash.info.run_id, "traceback.txt", str(tmp_path))).read_text()
    assert "Traceback" in traceback and "userfit_fail.py" in traceback
    nan = by_cell["nan"]
    assert nan.data.tags["orch.status"] == "diverged"
    assert nan.data.tags["orch.failure"] == "nan: non-finite loss nan at epoch 3"


PYDANTIC_FUNCTION = """
from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float
    width: int = 8


def fit(params: Params, seed: int, epochs: int):
    for epoch in range(epochs + 1):
        yield {"loss": params.lr / (1 + epoch), "width": params.width}
"""


def test_the_functions_own_pydantic_model_catches_typos_before_anything_runs(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "typed_fit.py").write_text(PYDANTIC_FUNCTION)
    uri = f"sqlite:///{tmp_path}/runs/mlflow.db"

    def sweep(cells: dict, **extra) -> object:
        m = {"name": "typed", "trainer": {"entrypoint": "typed_fit:fit"}, "base": {"lr": 0.1}, "cells": cells}
        m |= {"verdict": {"metric": "loss"}, "budget": {"epochs": 3}} | extra
        (tmp_path / "m.yaml").write_text(yaml.safe_dump(m))
        return runner.invoke(
            app, ["--tracking-uri", uri, "sweep", str(tmp_path / "m.yaml"), "--workers", "1"]
        )

    for cells, extra, message in (
        ({"a": {"lrr": 0.2}}, {}, "cell 'a' (lrr=0.2): unknown key 'lrr'; did you mean 'lr'?"),
        ({"a": {"width": "wide"}}, {}, "width: Input should be a valid integer"),
        ({"a": {}}, {"trainer": {"entrypoint": "typed_fit:train"}}, "typed_fit has no function 'train'"),
        ({"a": {}}, {"trainer": {"entrypoint": "untyped:fit"}}, "cannot import 'untyped'"),
        ({"a": {}}, {"verdict": {}}, "verdict.metric: name the metric your function yields"),
        ({"a": {}}, {"budget": {"epochs": 3, "scale": 2}}, "budget.scale set the built-in model's steps"),
    ):
        res = sweep(cells, **extra)
        assert res.exit_code == 2 and message in res.output, (message, res.output)
        assert not (tmp_path / "runs").exists()
    res = sweep({"a": {"width": 16}})  # the function got its model, validated: it reads params.lr
    assert res.exit_code == 0, res.output
    (run,) = _runs(MlflowClient(tracking_uri=uri), "typed")
    # the run's params are its cell's axes (what varies); its whole params are config.json, its budget a tag
    assert run.data.tags["orch.status"] == "finished" and run.data.params == {"width": "16"}
    assert run.data.tags["orch.epochs"] == "3" and run.data.tags["orch.entrypoint"] == "typed_fit:fit"
    config = MlflowClient(tracking_uri=uri).download_artifacts(run.info.run_id, "config.json", str(tmp_path))
    assert json.loads(Path(config).read_text()) == {"lr": 0.1, "width": 16}


def test_the_fingerprint_covers_the_module_or_its_whole_package_not_its_comments(tmp_path: Path) -> None:
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text("from userpkg.helpers import rate\n" + FUNCTION)
    (package / "helpers.py").write_text("def rate():\n    return 1.0\n")
    m = {"name": "pkg", "trainer": {"entrypoint": "userpkg.train:fit"}, "base": {"noise": 0.1, "lr": 0.02}}
    m |= {"cells": {"a": {}}, "verdict": {"metric": "loss"}, "budget": {"epochs": 3}}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(m))

    def keys() -> tuple[str, str]:
        (spec,) = load_matrix(path)[1]
        return spec.identity.code, spec.config_key

    code, config = keys()
    (package / "helpers.py").write_text(
        "def rate():\n    # a comment, and formatting\n    return 1.0  # same\n"
    )
    assert keys() == (code, config)  # comments and formatting are not code
    (package / "helpers.py").write_text("def rate():\n    return 2.0\n")
    assert keys() == (keys()[0], config) and keys()[0] != code  # any file of the package is


def test_search_ablate_and_early_stop_take_a_functions_matrix(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = ["--tracking-uri", f"sqlite:///{tmp_path}/runs/mlflow.db"]
    path = _project(tmp_path, "userfit_more", seeds=[0, 1], budget={"epochs": 10, "early_stop": True})
    res = runner.invoke(app, [*uri, "ablate", str(path), "--from", "learns", "--to", "frozen"])
    assert res.exit_code == 0, res.output
    assert "lr: 0.02 -> 0.0" in res.output
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/runs/mlflow.db")
    stopped = [r for r in _runs(client, "userfit_more") if r.data.tags.get("orch.status") == "stopped"]
    assert stopped and all("early stop" in r.data.tags["orch.early_stop"] for r in stopped)

    searched = yaml.safe_load(path.read_text()) | {"name": "userfit_search", "cells": {}}
    searched["axes"] = {"lr": {"low": 0.005, "high": 0.05, "log": True}}
    searched["budget"] = {"epochs": 6}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(searched))
    res = runner.invoke(app, [*uri, "search", str(tmp_path / "s.yaml"), "--trials", "2", "--workers", "2"])
    assert res.exit_code == 0, res.output
    exp = client.get_experiment_by_name("userfit_search")
    trials = client.search_runs([exp.experiment_id], "tags.`orch.kind` = 'trial'")
    assert len(trials) == 4 and all(r.data.tags["orch.status"] == "finished" for r in trials)


def test_a_functions_sweep_across_machines_runs_each_item_once(postgres_url: str, tmp_path: Path) -> None:  # noqa: F811
    """A coordinator and an `orch worker` sharing a PostgreSQL queue, as on two machines."""
    path = _project(tmp_path, "userfit_pg", seeds=[0, 1], budget={"epochs": 4})
    uri = f"sqlite:///{tmp_path}/shared/mlflow.db"
    common = ["--storage", postgres_url, "--heartbeat", "1"]
    coord = _orch("--tracking-uri", uri, "sweep", str(path), "--workers", "0", *common, cwd=tmp_path)
    worker = _orch("--tracking-uri", uri, "worker", str(path), "--workers", "2", *common, cwd=tmp_path)
    out, _ = coord.communicate(timeout=300)
    assert coord.returncode == 0, out
    w_out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0 and "worker done: ran 4" in w_out, w_out
    runs = _runs(MlflowClient(tracking_uri=uri), "userfit_pg")
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
    assert len({r.data.tags["orch.run_key"] for r in runs}) == 4
