"""Shared fixtures: tiny configs so the real training path runs in a second."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

TINY: dict[str, Any] = {
    "model": {
        "encoder": {"features": [4, 8], "latent_channels": 16},
        "decoder_a": {"features": [8, 4], "latent_channels": 16},
        "decoder_b": {"features": [8, 4], "latent_channels": 16},
    },
    "trainer": {"epochs": 2, "batch_size": 8, "device": "cpu", "threads": 1, "image_samples": 2},
    "data": {"source": "synthetic", "pairs": 32, "size": 16},
}


@pytest.fixture
def tiny() -> dict[str, Any]:
    """A deep copy of the tiny run config mapping."""
    import copy

    return copy.deepcopy(TINY)


def write_config(folder: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as ``folder/tiny.json`` (what a user passes to `orch train` / `orch diagnose`)."""
    path = folder / "tiny.json"
    path.write_text(json.dumps(config))
    return path
