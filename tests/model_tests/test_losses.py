"""model.losses: the content term's forms on hand-computed tensors, and what the trainer logs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.config import load_config
from model.losses import CONTENT_LOSSES, STOP_GRADIENTS, content_loss, cosine_distance, variance_hinge
from model.metrics import l1
from model.trainer import Trainer, fit
from tests.model_tests.test_trainer import _pairs


def test_l1_is_the_notes_content() -> None:
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[1.5, 2.0], [1.0, 6.0]])
    assert float(content_loss("l1", a, b)) == pytest.approx((0.5 + 0 + 2 + 2) / 4)


def test_cosine_is_one_minus_the_cosine_of_each_pair_and_scale_free() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [2.0, 2.0]])  # orthogonal: 1 - 0; parallel: 1 - 1
    assert float(content_loss("cosine", a, b)) == pytest.approx((1.0 + 0.0) / 2)
    assert float(cosine_distance(3 * a, 0.5 * b)) == pytest.approx(0.5)
    # latents (B, C, h, w) are flattened per sample: a spatial map counts as one vector
    za = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])  # (1, 2, 1, 2)
    zb = torch.tensor([[[[1.0, 0.0]], [[1.0, 0.0]]]])
    assert float(cosine_distance(za, zb)) == pytest.approx(1 - 1 / math.sqrt(2))


def test_vicreg_is_l1_plus_the_variance_hinge_of_each_side() -> None:
    z_a = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # element 0 spread (std 1.41), element 1 collapsed
    z_b = torch.tensor([[0.0, 1.0], [2.0, 3.0]])  # both elements spread (std 1.41)
    hinge_a = (0.0 + (1.0 - math.sqrt(0.0 + 1e-4))) / 2  # max(0, 1 - sqrt(var + eps)) per element
    assert float(variance_hinge(z_a)) == pytest.approx(hinge_a)
    assert float(variance_hinge(z_b)) == 0.0
    invariance = (0 + 1 + 0 + 3) / 4
    assert float(content_loss("vicreg", z_a, z_b)) == pytest.approx(invariance + hinge_a)
    assert float(content_loss("vicreg", z_a, z_b, variance_weight=2.0)) == pytest.approx(
        invariance + 2 * hinge_a
    )


def test_variance_hinge_is_zero_for_spread_latents_and_positive_for_collapsed_ones() -> None:
    g = torch.Generator().manual_seed(0)
    spread = 5 * torch.randn(64, 8, 2, 2, generator=g)  # every element's std over the batch ~5 > 1
    collapsed = torch.ones(64, 8, 2, 2) + 1e-3 * torch.randn(64, 8, 2, 2, generator=g)
    assert float(variance_hinge(spread)) == 0.0
    assert float(variance_hinge(collapsed)) > 0.98
    assert float(variance_hinge(collapsed[:1])) == 0.0  # one sample: no spread to measure


def test_variance_hinge_gradient_spreads_a_collapsed_latent() -> None:
    g = torch.Generator().manual_seed(0)
    z = (torch.ones(16, 4) + 1e-2 * torch.randn(16, 4, generator=g)).requires_grad_()
    before = float(z.detach().std(0).mean())
    opt = torch.optim.SGD([z], lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        variance_hinge(z).backward()
        opt.step()
    assert float(z.detach().std(0).mean()) > 10 * before


def test_unknown_content_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="one of"):
        content_loss("simsiam", torch.zeros(2, 2), torch.zeros(2, 2))


@pytest.mark.parametrize("kind", CONTENT_LOSSES)
def test_trainer_logs_the_notes_content_and_trains_the_chosen_form(tiny: dict, kind: str) -> None:
    """``content`` stays the note's L1 (the diagnostic); another form is ``content_loss`` and is the
    content term of ``total``."""
    tiny["trainer"]["content_loss"] = kind
    tr = Trainer(load_config(tiny), _pairs())
    tr.model.train()
    batch = tr.train.take(np.arange(8))
    out = tr.forward(batch["a"], batch["b"], 1.0)
    with torch.no_grad():  # the same step's latents (training mode: batch statistics)
        z = tr.model(batch["a"], batch["b"])
    lo = {k: float(v.detach()) for k, v in out.losses.items()}
    assert lo["content"] == pytest.approx(float(l1(z.z_a, z.z_b)), rel=1e-5)
    trained = lo["content"]
    if kind == "l1":
        assert "content_loss" not in lo
    else:
        trained = float(content_loss(kind, z.z_a, z.z_b))
        assert lo["content_loss"] == pytest.approx(trained, rel=1e-5)
    w = tr.config.trainer.loss_weights
    assert lo["total"] == pytest.approx(w.content * trained + w.recon * lo["recon"] + w.cross * lo["cross"])
    result = fit(load_config(tiny), source=_pairs())
    assert result.status == "finished"
    last = result.epochs[-1].metrics
    assert ("content_loss" in last and "train_content_loss" in last) == (kind != "l1")
    assert math.isfinite(last["content"])


@pytest.mark.parametrize("kind", CONTENT_LOSSES)
@pytest.mark.parametrize("stop", STOP_GRADIENTS)
def test_stop_gradient_keeps_the_value_and_removes_one_branchs_gradient(kind: str, stop: str) -> None:
    """SimSiam's stop-gradient: the same value; ``a`` sends no invariance gradient into z_a, ``b`` none into
    z_b, ``symmetric`` half of the note's into each (VICReg's variance terms keep theirs)."""
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)

    def grads(stop_gradient: str, variance: float = 1.0) -> tuple[float, torch.Tensor, torch.Tensor]:
        a, b = z_a.clone().requires_grad_(), z_b.clone().requires_grad_()
        loss = content_loss(kind, a, b, variance_weight=variance, stop_gradient=stop_gradient)
        loss.backward()
        zero = torch.zeros_like(z_a)  # a detached branch gets no gradient at all
        return float(loss), zero if a.grad is None else a.grad, zero if b.grad is None else b.grad

    value, ga, gb = grads(stop, variance=0.0)
    note_value, note_ga, note_gb = grads("none", variance=0.0)
    assert value == pytest.approx(note_value)
    want_a = {"none": note_ga, "a": 0 * note_ga, "b": note_ga, "symmetric": 0.5 * note_ga}[stop]
    want_b = {"none": note_gb, "a": note_gb, "b": 0 * note_gb, "symmetric": 0.5 * note_gb}[stop]
    torch.testing.assert_close(ga, want_a)
    torch.testing.assert_close(gb, want_b)
    if kind == "vicreg" and stop == "a":  # the variance hinge still reaches z_a
        assert float(grads(stop)[1].abs().sum()) > 0


def test_unknown_stop_gradient_is_refused() -> None:
    with pytest.raises(ValueError, match="content_stop_gradient"):
        content_loss("l1", torch.zeros(2, 2), torch.zeros(2, 2), stop_gradient="z")


def test_trainer_with_a_stop_gradient_logs_the_same_content_and_trains_differently(tiny: dict) -> None:
    """Set, the field changes training (the encoder gets less of the content gradient) but not what is
    measured at a given state: the first pass's losses are the note's."""
    runs = {}
    for stop in ("none", "a"):
        tiny["trainer"]["content_stop_gradient"] = stop
        runs[stop] = fit(load_config(tiny), source=_pairs())
    first = [r.epochs[0].metrics for r in runs.values()]
    assert first[0]["content"] == first[1]["content"] and first[0]["total"] == first[1]["total"]
    assert "content_loss" not in runs["a"].epochs[-1].metrics  # l1 with a stop-gradient: still the note's
    last = [r.epochs[-1].metrics["cross"] for r in runs.values()]
    assert last[0] != pytest.approx(last[1], rel=1e-5)
