from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import CheckpointError, load_checkpoint
from model.config import ConfigError, load_config
from model.trainer import fit


def _same_epochs(a: list, b: list) -> None:
    assert [e.epoch for e in a] == [e.epoch for e in b]
    for x, y in zip(a, b, strict=True):
        keys = set(x.metrics) - {"epoch_seconds"}
        assert keys == set(y.metrics) - {"epoch_seconds"}
        for k in keys:
            assert math.isclose(x.metrics[k], y.metrics[k], rel_tol=1e-5, abs_tol=1e-7), (x.epoch, k)


@pytest.mark.parametrize("adv", [0.0, 0.1])
def test_interrupted_after_epoch_k_and_resumed_equals_uninterrupted(
    tmp_path: Path, tiny: dict, adv: float
) -> None:
    """Stopped half-way through epoch 3, the run resumes from epoch 2's checkpoint: epochs 3 and 4 and the
    final weights are those of the run that was never stopped (Adam's moments, BatchNorm buffers, the data
    order's generator and the discriminators included)."""
    tiny["trainer"] |= {"epochs": 4, "seed": 7, "batch_size": 4}
    tiny["trainer"]["loss_weights"] = {"adv": adv}
    config = load_config(tiny)
    whole = fit(config)
    assert whole.status == "finished"

    ckpt = tmp_path / "ckpt" / "last.pt"
    asked = []

    def on_step(epoch: int, step: int, steps: int) -> None:
        if epoch == 3 and step == 2:
            asked.append(True)  # a SIGTERM arrives in the middle of epoch 3

    first = fit(config, checkpoint=ckpt, on_step=on_step, stop=lambda: bool(asked))
    assert first.status == "interrupted" and first.trainer.epoch == 2
    assert [e.epoch for e in first.epochs] == [0, 1, 2]
    assert load_checkpoint(ckpt).epoch == 2  # the partial epoch 3 was abandoned, not saved
    # what ran in between must not matter: the checkpoint holds every generator's state
    torch.manual_seed(123), np.random.seed(5), random.seed(9)

    second = fit(config, resume=ckpt, checkpoint=ckpt)
    assert second.status == "finished"
    _same_epochs(first.epochs + second.epochs, whole.epochs)
    for name, value in whole.trainer.model.state_dict().items():
        torch.testing.assert_close(second.trainer.model.state_dict()[name], value, rtol=1e-5, atol=1e-6)
    assert load_checkpoint(ckpt).epoch == 4


def test_a_checkpoint_keeps_the_callers_bookkeeping_and_refuses_another_config(
    tmp_path: Path, tiny: dict
) -> None:
    config = load_config(tiny)
    ckpt = tmp_path / "last.pt"
    seen: list[int] = []
    fit(config, checkpoint=ckpt, on_epoch=lambda r: seen.append(r.epoch), extra=lambda: {"seen": list(seen)})
    assert load_checkpoint(ckpt).extra == {"seen": [0, 1, 2]}
    other = load_config(tiny, ["trainer.lr=0.01"])
    with pytest.raises(ConfigError, match="another config"):
        fit(other, resume=ckpt)


def test_an_unreadable_checkpoint_is_one_message(tmp_path: Path, tiny: dict) -> None:
    config = load_config(tiny)
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        fit(config, resume=bad)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        fit(config, resume=tmp_path / "missing.pt")
    old = tmp_path / "old.pt"
    torch.save({"config": config.to_dict(), "model": {}}, old)  # what `orch train` wrote before
    with pytest.raises(CheckpointError, match="not a resumable checkpoint"):
        load_checkpoint(old)
