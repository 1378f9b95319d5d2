"""Shared fixtures: tiny configs so the real training path runs in a second."""

from __future__ import annotations

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
