from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.config import load_config
from model.data import InMemoryPairs, Pairs
from model.metrics import noise_leak_terms
from model.norm import NORMS
from model.trainer import NonFiniteLossError, Trainer, fit, skip_weight_at


def _pairs(n: int = 24, size: int = 16, seed: int = 0) -> InMemoryPairs:
    """Blobs shared by both domains, different contrast, independent noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    clean = np.zeros((n, size, size), np.float32)
    for i in range(n):
        cy, cx, r = rng.uniform(0.3, 0.7, 3) * [1, 1, 0.5]
        clean[i] = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2) * rng.uniform(0.5, 1.0)
    clean_b = (0.4 * clean).astype(np.float32)
    noise = lambda: (0.05 * rng.standard_normal(clean.shape)).astype(np.float32)  # noqa: E731
    return InMemoryPairs(Pairs(clean + noise(), clean_b + noise(), clean, clean_b))


def _l1(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x - y).abs().mean())


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("strategy", ["use_source", "no_skip"])
@pytest.mark.parametrize("same_skip", [True, False])
def test_losses_are_the_notes_definitions(tiny: dict, strategy: str, same_skip: bool, norm: str) -> None:
    """Evaluation mode (running statistics): with batch_per_path each call names its path."""
    tiny["model"]["norm"] = norm
    tiny["trainer"] |= {"cross_domain_strategy": strategy, "same_domain_use_skip": same_skip}
    tr = Trainer(load_config(tiny), _pairs())
    tr.train_epoch(1)  # running statistics that differ from their initial values (and between paths)
    tr.model.eval()
    batch = tr.val.take(np.arange(4))
    x_a, x_b = batch["a"], batch["b"]
    with torch.no_grad():
        out = tr.forward(x_a, x_b, 1.0)
        m = tr.model
        z_a, s_a = m.encoder(x_a, paths=("a",))
        z_b, s_b = m.encoder(x_b, paths=("b",))
        sizes = [tuple(s.shape[-2:]) for s in s_a]
        ra = m.decoder_a(z_a, s_a if same_skip else None, sizes=sizes, path="same")
        rb = m.decoder_b(z_b, s_b if same_skip else None, sizes=sizes, path="same")
        ab = m.decoder_a(z_b, s_b if strategy == "use_source" else None, sizes=sizes, path="cross")
        ba = m.decoder_b(z_a, s_a if strategy == "use_source" else None, sizes=sizes, path="cross")
    content = _l1(z_a, z_b)
    recon = 0.5 * (_l1(ra, x_a) + _l1(rb, x_b))
    cross = 0.5 * (_l1(ab, x_a) + _l1(ba, x_b))
    lo = out.losses
    assert math.isclose(float(lo["content"]), content, rel_tol=1e-5)
    assert math.isclose(float(lo["recon"]), recon, rel_tol=1e-5)
    assert math.isclose(float(lo["cross"]), cross, rel_tol=1e-5)
    w = tr.config.trainer.loss_weights
    assert math.isclose(
        float(lo["total"]), w.content * content + w.recon * recon + w.cross * cross, rel_tol=1e-5
    )


def test_l1_on_hand_computed_tensor() -> None:
    """content = mean |z_a - z_b| exactly as the note writes it."""
    from model.metrics import l1

    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[1.5, 2.0], [1.0, 6.0]])
    assert float(l1(a, b)) == pytest.approx((0.5 + 0 + 2 + 2) / 4)


def test_few_epochs_reduce_recon(tiny: dict) -> None:
    tiny["trainer"] |= {"epochs": 6, "lr": 3e-3}
    result = fit(load_config(tiny), source=_pairs(48))
    assert result.status == "finished"
    recon = [e.metrics["train_recon"] for e in result.epochs[1:]]
    assert recon[-1] < 0.8 * recon[0]


def test_epoch_zero_is_before_any_update(tiny: dict) -> None:
    cfg = load_config(tiny)
    src = _pairs()
    tr = Trainer(cfg, src)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    first = next(iter(tr.run()))
    assert first.epoch == 0 and "train_total" not in first.metrics
    for k, v in tr.model.state_dict().items():
        if "num_batches_tracked" not in k:
            torch.testing.assert_close(v, before[k])


def test_same_seed_same_numbers(tiny: dict) -> None:
    a = fit(load_config(tiny), source=_pairs())
    b = fit(load_config(tiny), source=_pairs())
    assert [e.metrics["cross"] for e in a.epochs] == [e.metrics["cross"] for e in b.epochs]
    tiny["trainer"]["seed"] = 1
    c = fit(load_config(tiny), source=_pairs())
    assert [e.metrics["cross"] for e in a.epochs][1:] != [e.metrics["cross"] for e in c.epochs][1:]


def test_clean_metrics_and_images(tiny: dict) -> None:
    result = fit(load_config(tiny), source=_pairs())
    m = result.epochs[-1].metrics
    for name in ("cross_floor", "cross_clean", "cross_psnr_clean", "noise_leak", "recon_a", "cross_b"):
        assert math.isfinite(m[name])
    assert m["cross_floor"] == pytest.approx(0.05 * math.sqrt(2 / math.pi), rel=0.15)  # L1 of N(0, 0.05)
    grid = result.epochs[-1].images["x_a_from_b"]
    assert grid.shape == (2 * 16, 4 * 16) and 0 <= grid.min() and grid.max() <= 1


@pytest.mark.parametrize("gain", [0.0, 0.3, 1.0])
def test_noise_leak_is_the_fraction_of_source_noise_in_the_error(gain: float) -> None:
    """err = gain * source noise + structure independent of it -> noise_leak ~= gain."""
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(8, 1, 32, 32, generator=g) + 0.5
    noise = 0.05 * torch.randn(8, 1, 32, 32, generator=g)
    structure = 0.2 * torch.randn(8, 1, 32, 32, generator=g)
    num, den = noise_leak_terms(gain * noise + structure, noise, clean)
    assert float(num / den) == pytest.approx(gain, abs=0.05)


def test_noise_leak_ignores_anatomy_shaped_bias_in_dark_pixels() -> None:
    """Rician bias in the background follows the anatomy; an anatomy-shaped error must not read as leak."""
    g = torch.Generator().manual_seed(1)
    anatomy = (torch.rand(8, 1, 32, 32, generator=g) > 0.5).float()  # bright tissue / dark background
    bias = 0.04 * (1 - anatomy)  # noise magnitude bias only where it is dark
    noise = bias + 0.05 * torch.randn(8, 1, 32, 32, generator=g) * anatomy
    err = 0.5 * (1 - anatomy)  # a structural error, same shape as the bias
    num, den = noise_leak_terms(err, noise, anatomy)
    assert abs(float(num / den)) < 0.05


def test_nan_stops_with_term_epoch_and_step(tiny: dict) -> None:
    tiny["trainer"] |= {"lr": 1e30, "epochs": 3, "optimizer": "sgd"}
    result = fit(load_config(tiny), source=_pairs())
    assert result.status == "diverged"
    assert "non-finite" in result.reason and "epoch" in result.reason and "step" in result.reason


def test_nonfinite_error_names_term() -> None:
    err = NonFiniteLossError("cross", 3, 7)
    assert str(err) == "non-finite cross loss at epoch 3, step 7"


def test_adversarial_plan_d_trains(tiny: dict) -> None:
    tiny["trainer"]["loss_weights"] = {"adv": 0.1}
    result = fit(load_config(tiny), source=_pairs())
    assert result.status == "finished"
    assert "adv" in result.epochs[-1].metrics and "train_disc" in result.epochs[-1].metrics


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("constant", [1.0, 1.0, 1.0, 1.0, 1.0]), ("linear", [1.0, 1.0, 0.5, 0.0, 0.0]), ("cosine", None)],
)
def test_skip_weight_schedule(tiny: dict, schedule: str, expected: list | None) -> None:
    tiny["trainer"] |= {"epochs": 4, "skip_schedule": schedule}
    if schedule != "constant":
        tiny["trainer"] |= {"skip_weight_final": 0.0, "skip_decay_epochs": 3}
    tc = load_config(tiny).trainer
    got = [skip_weight_at(tc, e) for e in range(5)]
    if expected is not None:
        assert got == pytest.approx(expected)
    else:
        assert got[0] == got[1] == 1.0 and got[3] == pytest.approx(0.0) and 0 < got[2] < 1


@pytest.mark.parametrize(
    ("start", "final", "schedule", "expected"),
    [
        (1.0, 0.0, "constant", [1.0, 1.0, 1.0, 1.0, 1.0]),
        (1.0, 0.0, "linear", [1.0, 1.0, 0.5, 0.0, 0.0]),
        (0.0, 2.0, "linear", [0.0, 0.0, 1.0, 2.0, 2.0]),  # a ramp up (a warm-up of the content term)
        (1.0, 0.2, "cosine", [1.0, 1.0, 0.6, 0.2, 0.2]),  # half-way on a cosine is half-way too
    ],
)
def test_content_weight_schedule(
    tiny: dict, start: float, final: float, schedule: str, expected: list
) -> None:
    from model.trainer import content_weight_at

    tiny["trainer"] |= {"epochs": 4, "content_schedule": schedule, "loss_weights": {"content": start}}
    tiny["trainer"] |= {"content_weight_final": final, "content_ramp_epochs": 3}
    tc = load_config(tiny).trainer
    assert [content_weight_at(tc, e) for e in range(5)] == pytest.approx(expected)
    tiny["trainer"].pop("content_ramp_epochs")  # default: over all epochs
    tc = load_config(tiny).trainer
    assert content_weight_at(tc, 4) == pytest.approx(final if schedule != "constant" else start)


def test_trainer_weighs_the_content_term_with_the_epochs_scheduled_weight(tiny: dict) -> None:
    """Each epoch's training and validation totals use that epoch's content weight (1, 1, 0.5, 0)."""
    tiny["trainer"] |= {"epochs": 3, "content_schedule": "linear", "content_weight_final": 0.0}
    result = fit(load_config(tiny), source=_pairs())
    assert result.status == "finished"
    w = load_config(tiny).trainer.loss_weights
    for e, want in zip(result.epochs, [1.0, 1.0, 0.5, 0.0], strict=True):
        m = e.metrics
        assert m["content_weight"] == pytest.approx(want)
        assert m["total"] == pytest.approx(want * m["content"] + w.recon * m["recon"] + w.cross * m["cross"])
        if e.epoch > 0:
            parts = want * m["train_content"] + w.recon * m["train_recon"] + w.cross * m["train_cross"]
            assert m["train_total"] == pytest.approx(parts, rel=1e-5)
    tiny["trainer"]["content_schedule"] = "constant"  # the note's: no content_weight metric
    assert "content_weight" not in fit(load_config(tiny), source=_pairs()).epochs[-1].metrics


def _separate_step(
    model: torch.nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, tc
) -> dict[str, torch.Tensor]:
    """The note's step as its code reads: separate encoder and decoder calls, one per path (each naming
    its path, which only batch_per_path reads)."""
    z_a, s_a = model.encoder(x_a, paths=("a",))
    z_b, s_b = model.encoder(x_b, paths=("b",))
    sizes = [tuple(s.shape[-2:]) for s in s_a]
    same, use_src = tc.same_domain_use_skip, tc.cross_domain_strategy == "use_source"
    ra = model.decoder_a(z_a, s_a if same else None, sizes=sizes, path="same")
    rb = model.decoder_b(z_b, s_b if same else None, sizes=sizes, path="same")
    ab = model.decoder_a(z_b, s_b if use_src else None, sizes=sizes, path="cross")
    ba = model.decoder_b(z_a, s_a if use_src else None, sizes=sizes, path="cross")
    w = tc.loss_weights
    content = (z_a - z_b).abs().mean()
    recon = 0.5 * ((ra - x_a).abs().mean() + (rb - x_b).abs().mean())
    cross = 0.5 * ((ab - x_a).abs().mean() + (ba - x_b).abs().mean())
    return {
        "content": content,
        "recon": recon,
        "cross": cross,
        "total": w.content * content + w.recon * recon + w.cross * cross,
    }


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("up_mode", ["concat", "add"])
@pytest.mark.parametrize(
    "strategy,same_skip", [("use_source", True), ("no_skip", True), ("no_skip", False), ("use_source", False)]
)
def test_grouped_training_step_equals_separate_calls(
    tiny: dict, up_mode: str, strategy: str, same_skip: bool, norm: str
) -> None:
    """The trainer's batched passes (both domains in one encoder pass, a decoder's two paths in one), in
    its channels_last layout, give the separate calls' losses, gradients and BatchNorm running
    statistics (with batch_per_path: each path's) in PyTorch's default layout, in training mode, for
    every norm."""
    import copy

    tiny["model"] |= {"up_mode": up_mode, "norm": norm}
    tiny["trainer"] |= {"cross_domain_strategy": strategy, "same_domain_use_skip": same_skip}
    tr = Trainer(load_config(tiny), _pairs())
    conv = tr.model.encoder.inc.conv2.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    reference = copy.deepcopy(tr.model).to(memory_format=torch.contiguous_format)
    assert reference.encoder.inc.conv2.weight.is_contiguous()
    tr.model.train()
    reference.train()
    batch = tr.train.take(np.arange(8))
    for _ in range(2):  # twice: the second step starts from running statistics the first one left
        got = tr.forward(batch["a"], batch["b"], 1.0).losses
        want = _separate_step(reference, batch["a"], batch["b"], tr.config.trainer)
        for term in ("content", "recon", "cross", "total"):
            assert float(got[term]) == pytest.approx(float(want[term]), rel=1e-5), term
        tr.model.zero_grad()
        reference.zero_grad()
        got["total"].backward()
        want["total"].backward()
        for (name, p), q in zip(tr.model.named_parameters(), reference.parameters(), strict=True):
            assert p.grad is not None and q.grad is not None, name
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
        for (name, b), c in zip(tr.model.named_buffers(), reference.buffers(), strict=True):
            torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6, msg=name)


def test_bfloat16_autocast_tracks_float32(tiny: dict) -> None:
    """trainer.precision=bfloat16 runs the model's passes in bfloat16 and keeps losses float32: the epoch-0
    losses (same weights) agree with float32's to bfloat16's precision, and training stays finite."""
    results = {}
    for precision in ("float32", "bfloat16"):
        tiny["trainer"] |= {"precision": precision, "epochs": 2}
        results[precision] = fit(load_config(tiny), source=_pairs())
    assert results["bfloat16"].status == "finished"
    e0 = {p: r.epochs[0].metrics for p, r in results.items()}
    for term in ("recon", "cross", "content"):
        assert e0["bfloat16"][term] == pytest.approx(e0["float32"][term], rel=0.03), term
        assert isinstance(e0["bfloat16"][term], float)
