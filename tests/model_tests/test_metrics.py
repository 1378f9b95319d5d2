"""The constant-prediction baselines against a hand computation, and the trainer logging them once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.config import load_config
from model.data import Pairs, split_indices, write_pairs
from model.data.phantom import generate_pairs
from model.metrics import BASELINES, constant_baselines
from model.trainer import fit


def _batches(pairs: Pairs, index: np.ndarray, size: int) -> list[dict[str, torch.Tensor]]:
    out = []
    for start in range(0, len(index), size):
        idx = index[start : start + size]
        batch = {"a": pairs.a[idx], "b": pairs.b[idx]}
        if pairs.has_clean:
            batch |= {"clean_a": pairs.clean_a[idx], "clean_b": pairs.clean_b[idx]}
        out.append({k: torch.from_numpy(v)[:, None] for k, v in batch.items()})
    return out


def test_baselines_are_the_mean_image_and_zero_predictions() -> None:
    ph = generate_pairs(40, 16, noise=(0.1, 0.2), seed=3)
    pairs = Pairs(ph.a, ph.b, ph.clean_a, ph.clean_b)
    train, val = split_indices(40, 0.25)
    got = constant_baselines(_batches(pairs, train, 7), _batches(pairs, val, 3))
    mean_a, mean_b = ph.a[train].mean(0), ph.b[train].mean(0)
    by_hand = 0.5 * (np.abs(mean_a - ph.a[val]).mean() + np.abs(mean_b - ph.b[val]).mean())
    assert got["cross_mean_image"] == pytest.approx(by_hand, rel=1e-5)
    zeros = 0.5 * (np.abs(ph.a[val]).mean() + np.abs(ph.b[val]).mean())
    assert got["cross_zeros"] == pytest.approx(zeros, rel=1e-5)
    assert got["cross_baseline"] == min(got["cross_mean_image"], got["cross_zeros"])
    assert 5 < got["cross_mean_image_psnr_clean"] < 40
    no_clean = Pairs(ph.a, ph.b)
    assert "cross_mean_image_psnr_clean" not in constant_baselines(
        _batches(no_clean, train, 7), _batches(no_clean, val, 3)
    )


def test_every_run_logs_its_baselines_at_epoch_zero(tiny: dict, tmp_path: Path) -> None:
    ph = generate_pairs(32, 16, seed=1)
    write_pairs(tmp_path / "own.h5", Pairs(ph.a, ph.b), source="own scanner")  # no clean images
    for data in (tiny["data"], {"source": "hdf5", "path": str(tmp_path / "own.h5")}):
        result = fit(load_config({**tiny, "data": data}, ["trainer.epochs=1"]))
        first, last = (e.metrics for e in result.epochs)
        assert {"cross_mean_image", "cross_zeros", "cross_baseline"} <= set(first)
        assert not set(BASELINES) & set(last)  # once per run
        assert ("cross_mean_image_psnr_clean" in first) == (data["source"] == "synthetic")
