"""Run identity: the code and data a run used are part of its key; comments and formatting are not."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from model.config import load_config
from model.data import Pairs, write_pairs
from model.data.phantom import generate_pairs
from orchestrator.identity import code_fingerprint, config_key, data_fingerprint, identify

MODEL = Path(__file__).resolve().parents[2] / "model"


def test_code_fingerprint_follows_the_code_not_its_comments(tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(MODEL, copy, ignore=shutil.ignore_patterns("__pycache__"))
    fingerprint = code_fingerprint.__wrapped__  # uncached: the copy is edited in this process
    assert fingerprint(copy) == code_fingerprint()
    unet = copy / "unet.py"
    text = unet.read_text()
    reworded = text.replace('"""The note\'s shared', '"""A reworded docstring:\n\nThe shared')
    assert reworded != text
    unet.write_text(reworded + "\n# a comment\n")
    assert fingerprint(copy) == code_fingerprint()  # docstrings, comments and blank lines do not count
    edited = text.replace("kernel_size=3, padding=1", "kernel_size=3, padding=1, dilation=1", 1)
    assert edited != text
    unet.write_text(edited)
    assert fingerprint(copy) != code_fingerprint()


def test_data_fingerprint_follows_the_file_content_and_is_cached(
    tmp_path: Path, tiny: dict, monkeypatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ph = generate_pairs(8, 16, seed=0)
    path = tmp_path / "d.h5"
    write_pairs(path, Pairs(ph.a, ph.b), source="t")
    cfg = load_config({**tiny, "data": {"source": "hdf5", "path": str(path)}})
    first = data_fingerprint(cfg)
    assert (tmp_path / "cache" / "orch" / "data_fingerprints.json").exists()
    assert data_fingerprint(cfg) == first
    ph2 = generate_pairs(8, 16, seed=1)
    time.sleep(0.01)
    write_pairs(path, Pairs(ph2.a, ph2.b), source="t")
    os.utime(path)
    assert data_fingerprint(cfg) != first
    # the built-in phantoms are known by their settings; the config key does not depend on the data's bytes
    synthetic = load_config(tiny)
    other = load_config(tiny, ["data.seed=5"])
    assert data_fingerprint(synthetic) != data_fingerprint(other)
    assert identify(synthetic).config_key == config_key(synthetic)
    assert identify(synthetic).run_key != identify(other).run_key
