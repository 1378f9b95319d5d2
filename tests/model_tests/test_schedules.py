"""model.schedules: the learning rate's warm-up and cosine, and what the trainer does with them."""

from __future__ import annotations

import math

import pytest

from model.config import load_config
from model.schedules import lr_at, lr_moves
from model.trainer import Trainer, fit
from tests.model_tests.test_trainer import _pairs


def _cfg(tiny: dict, **trainer: object):
    tiny["trainer"] |= {"epochs": 4, "lr": 0.01, **trainer}
    return load_config(tiny).trainer


def test_constant_without_warmup_is_the_notes_rate(tiny: dict) -> None:
    tc = _cfg(tiny)
    assert not lr_moves(tc)
    assert {lr_at(tc, e, s, 5) for e in range(1, 5) for s in range(5)} == {0.01}


def test_warmup_rises_linearly_then_holds(tiny: dict) -> None:
    tc = _cfg(tiny, lr_warmup_epochs=2)
    assert lr_moves(tc)
    got = [lr_at(tc, e, s, 4) for e in (1, 2, 3) for s in range(4)]
    assert got[:8] == pytest.approx([0.01 * k / 8 for k in range(1, 9)])  # 1/8 .. 8/8 of lr
    assert got[8:] == pytest.approx([0.01] * 4)


def test_cosine_falls_from_lr_after_the_warmup_to_lr_final_at_the_last_step(tiny: dict) -> None:
    tc = _cfg(tiny, lr_schedule="cosine", lr_warmup_epochs=1, lr_final=0.001)
    assert lr_at(tc, 1, 3, 4) == pytest.approx(0.01)  # the warm-up's end: lr
    assert lr_at(tc, 4, 3, 4) == pytest.approx(0.001)  # the last step: lr_final
    mid = 0.001 + 0.009 * 0.5 * (1 + math.cos(math.pi * 0.5))  # epoch 2.5 of the 3 after the warm-up
    assert lr_at(tc, 3, 1, 4) == pytest.approx(mid)
    rates = [lr_at(tc, e, s, 4) for e in range(2, 5) for s in range(4)]
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))


def test_the_curve_is_in_epochs_so_more_steps_per_epoch_follow_it(tiny: dict) -> None:
    """``budget.scale`` multiplies the steps per epoch: the rate at a given point of an epoch is the same."""
    tc = _cfg(tiny, lr_schedule="cosine", lr_warmup_epochs=0.5)
    for epoch in (1, 2, 4):
        assert lr_at(tc, epoch, 1, 4) == pytest.approx(lr_at(tc, epoch, 3, 8))


def test_trainer_sets_the_scheduled_rate_and_logs_it(tiny: dict) -> None:
    tiny["trainer"] |= {"epochs": 3, "steps_per_epoch": 2, "lr_schedule": "cosine", "lr_final": 0.0}
    tr = Trainer(load_config(tiny), _pairs())
    tr.train_epoch(3)  # the last epoch: its last update uses lr_final
    assert tr.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    result = fit(load_config(tiny), source=_pairs())
    rates = [e.metrics["lr"] for e in result.epochs]
    assert rates[0] > rates[1] > rates[2] and rates[3] == pytest.approx(0.0, abs=1e-12)
    tiny["trainer"]["lr_schedule"] = "constant"  # the note's: the optimiser's rate untouched, not logged
    assert "lr" not in fit(load_config(tiny), source=_pairs()).epochs[-1].metrics


def test_a_schedule_changes_training(tiny: dict) -> None:
    base = fit(load_config(tiny), source=_pairs()).epochs[-1].metrics["cross"]
    tiny["trainer"] |= {"lr_schedule": "cosine", "lr_warmup_epochs": 1}
    scheduled = fit(load_config(tiny), source=_pairs()).epochs[-1].metrics["cross"]
    assert scheduled != pytest.approx(base, rel=1e-5)
