"""The README followed as a new user would: fresh venv, set-up command, sweep, mlflow server, HTML report
opened in headless Chromium. Slow (a real install); .ci/run runs it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.browser import chromium, page_layout

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "runs" / "journey"


def _readme_setup() -> str:
    """The set-up part of the README's first command (the part before the main job)."""
    text = (REPO / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    first = block[0]
    assert "&& orch sweep matrices/test_matrix.yaml" in first, "README's first command must run the main job"
    return first.split("&& orch sweep", 1)[0].strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_readme_journey(tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip("headless Chromium not installed (Debian's chromium package; .ci/run installs it)")
    work = tmp_path / "orch"
    shutil.copytree(
        REPO,
        work,
        ignore=shutil.ignore_patterns(".git", ".venv*", "runs", "__pycache__", "*.egg-info", ".*_cache"),
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MLFLOW_TRACKING_URI", "PYTHONPATH")
    }
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)

    def sh(cmd: str, timeout: int = 900) -> str:
        res = subprocess.run(
            ["bash", "-c", f"set -e; {cmd}"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert res.returncode == 0, f"{cmd}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        return res.stdout

    sh(_readme_setup() + " >/dev/null")  # the README's set-up, in a fresh virtual environment
    matrix = yaml.safe_load((work / "matrices" / "test_matrix.yaml").read_text())
    small = {  # the main job's matrix, shrunk to seconds
        **matrix,
        "name": "journey",
        "seeds": matrix["seeds"][:3],
        "base": {**matrix["base"], "data": {**matrix["base"]["data"], "pairs": 48, "size": 16}},
        "budget": {"epochs": 6, "steps_per_epoch": 2},
        "verdict": {**matrix["verdict"], "warmup": 2},  # a warm-up shorter than the budget, as orch requires
    }
    for cell in small["cells"].values():
        cell["latent_width"] = 32
        if "decoder_features" in cell:
            cell["decoder_features"] = [32, 16, 8]
    small["base"]["model"] = {
        "encoder": {"features": [4, 8, 16]},
        "decoder_a": {"features": [16, 8, 4]},
        "decoder_b": {"features": [16, 8, 4]},
    }
    (work / "journey.yaml").write_text(yaml.safe_dump(small, sort_keys=False))
    out = sh(". .venv/bin/activate && orch sweep journey.yaml --workers 2")
    n_runs = len(small["cells"]) * len(small["seeds"])
    assert f"ran {n_runs} (finished {n_runs}" in out and "no_skip_everywhere" in out

    # what `mlflow ui` shows, asked through the tracking server's REST API
    port = _free_port()
    serve = (
        ". .venv/bin/activate && exec mlflow server --backend-store-uri sqlite:///runs/mlflow.db "
        f"--default-artifact-root runs/artifacts --host 127.0.0.1 --port {port} --workers 1"
    )
    server = subprocess.Popen(
        ["bash", "-c", serve], cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        deadline = time.monotonic() + 120
        while True:
            try:
                exp = _get(f"{api}/experiments/get-by-name?experiment_name=journey")["experiment"]
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not answer"
                time.sleep(1)
        runs = _get(f"{api}/runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 100})[
            "runs"
        ]
        children = [r for r in runs if any(t["key"] == "orch.cell" for t in r["data"].get("tags", []))]
        assert len(children) == n_runs
        tags = {t["key"]: t["value"] for t in children[0]["data"]["tags"]}
        assert {"orch.sweep", "orch.cell", "orch.seed", "orch.run_key"} <= set(tags)
        hist = _get(f"{api}/metrics/get-history?run_id={children[0]['info']['run_id']}&metric_key=cross")
        assert [m["step"] for m in hist["metrics"]] == [0, 1, 2, 3, 4, 5, 6]
        # the answer where mlflow ui shows it: the experiment's description is the matrix's; the sweep's
        # parent run is named for its sweep id, its description is the report, its metrics the cells'
        assert {t["key"]: t["value"] for t in exp.get("tags", [])}["mlflow.note.content"] == (
            small["description"].strip()
        )
        (parent,) = [r for r in runs if {"key": "orch.kind", "value": "sweep"} in r["data"]["tags"]]
        ptags = {t["key"]: t["value"] for t in parent["data"]["tags"]}
        assert parent["info"]["run_name"] == f"sweep-{ptags['orch.sweep']}"
        assert "journey: does cross fall" in ptags["mlflow.note.content"]
        logged = {m["key"] for m in parent["data"].get("metrics", [])}
        assert {f"cell.{c}.end" for c in small["cells"]} <= logged, logged
        # a child's params are the axes that differ between the cells (latent_width is the same in all)
        params = {p["key"] for p in children[0]["data"].get("params", [])}
        assert (
            params
            and "latent_width" not in params
            and params <= {a for c in small["cells"].values() for a in c}
        )
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)

    html = work / "runs" / "journey" / "report.html"
    sh(f". .venv/bin/activate && orch report journey.yaml --format html --out {html}")
    text = html.read_text()
    assert "<table" in text and text.count("<img") >= 2 and "no_skip_everywhere" in text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1600,2200", "--hide-scrollbars"]
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", html.as_uri()], check=True, capture_output=True, timeout=120
    )
    shutil.copy(html, ARTIFACTS / "report.html")
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    assert sorted(p.name for p in html.parent.iterdir()) == ["report.html"]  # one file: figures embedded

    # in a narrow window the tables scroll in their own box, numbers right-aligned; the page does not
    layout = page_layout(browser, html, tmp_path, width=800)
    assert layout["page"] <= layout["window"], layout
    assert any(t["width"] > layout["window"] for t in layout["tables"])  # "All columns" is wider
    for table in layout["tables"]:
        assert table["scroller"] is not None and table["scroller"]["right"] <= layout["window"], table
        assert set(table["numeric"]) == {"right"}, table
