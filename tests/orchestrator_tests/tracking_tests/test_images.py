"""Per-epoch image grids logged to MLflow with their columns named, and read back as they were."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from model.config import load_config
from model.trainer import EpochResult
from orchestrator.tracking import RunKind, Tracker, prepare_store, run_tags
from orchestrator.tracking.images import image_columns, label_grid, unlabel


@pytest.mark.parametrize(
    ("h", "w", "rows", "clean"), [(16, 16, 2, True), (128, 96, 4, True), (96, 128, 2, False)]
)
def test_a_labelled_grid_names_its_columns_and_gives_the_grid_back_exactly(
    h: int, w: int, rows: int, clean: bool
) -> None:
    columns = image_columns("x_a_from_b", clean=clean)
    assert columns is not None and len(columns) == (4 if clean else 3)
    grid = np.random.default_rng(0).random((rows * h, len(columns) * w))
    img, layout = label_grid(grid, columns)
    assert layout is not None and img.dtype == np.uint8
    band = img[: layout["header"]]
    assert img.shape == (layout["header"] + rows * h * layout["scale"], len(columns) * w * layout["scale"])
    assert band.mean() > 200 and band.min() < 100  # white, with the names written in dark
    for i in range(len(columns)):  # every column's name is written over its own column
        third = band[:, i * img.shape[1] // len(columns) : (i + 1) * img.shape[1] // len(columns)]
        assert third.min() < 100
    expected = (np.clip(grid, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(unlabel(img, layout), expected)


def test_grids_orch_does_not_know_are_logged_as_they_are() -> None:
    grid = np.random.default_rng(0).random((16, 50))  # 50 is no multiple of 3 columns
    img, layout = label_grid(grid, image_columns("x_a_from_b", clean=False))
    assert layout is None and img.shape == (16, 50)
    assert image_columns("attention_map", clean=True) is None
    assert label_grid(grid, None)[1] is None


def test_logged_image_grids_carry_their_column_names_and_read_back_bare(tmp_path: Path, tiny: dict) -> None:
    tracker = Tracker(prepare_store(f"sqlite:///{tmp_path}/store/mlflow.db"))
    tags = run_tags(RunKind.RUN, sweep="s", cell="c", seed=0, run_key="k")
    run_id = tracker.start_run("exp", load_config(tiny), name="c/seed0", tags=tags)
    grid = np.random.default_rng(1).random((2 * 16, 4 * 16))  # two pairs, four columns (clean images)
    tracker.log_epoch(run_id, EpochResult(0, {"cross": 0.5, "cross_clean": 0.4}, {"x_a_from_b": grid}))
    run = MlflowClient(tracker.uri).get_run(run_id)
    layout = json.loads(run.data.tags["orch.image_layout"])["x_a_from_b"]
    (png,) = (tmp_path / "store").rglob("x_a_from_b+step+0+*[0-9a-f].png")
    with Image.open(png) as img:
        logged = np.asarray(img)
    assert logged.shape == (layout["header"] + 32 * layout["scale"], 64 * layout["scale"])
    assert logged.shape[1] >= 4 * 90  # wide enough for "noisy target (a)" over a 16-pixel column
    bare = tracker.images(run_id, "x_a_from_b")
    np.testing.assert_array_equal(bare, (grid * 255).astype(np.uint8))
