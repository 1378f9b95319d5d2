from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch

from model.config import load_config
from model.data import InMemoryPairs, Pairs
from model.data.phantom import generate_pairs
from model.diagnose import (
    TERMS,
    best_intensity_mapping,
    data_content,
    diagnose,
    domain_probe,
    gradient_norms,
    latent_stats,
    measure,
    plot_report,
    pool_latent,
    skip_reliance,
)
from model.trainer import Trainer
from model.unet import CrossDomainAE, Decoder

# ------------------------------------------------------------------------------------- skip reliance


def _model(tiny: dict[str, Any], up_mode: str, upsample: str = "transpose") -> CrossDomainAE:
    torch.set_num_threads(1)  # as the tiny config's trainer does: tiny convolutions gain nothing from more
    torch.manual_seed(0)
    cfg = load_config(tiny, [f"model.up_mode={up_mode}", f"model.upsample={upsample}"])
    return CrossDomainAE(cfg.model).eval()


def _make_ignore_skips(decoder: Decoder) -> None:
    """concat Up: zero the half of the first convolution that reads the skip."""
    with torch.no_grad():
        for up in decoder.ups:
            up.conv.conv1.weight[:, : up.skip_channels] = 0


def _make_copy_skips(decoder: Decoder) -> None:
    """Any Up: zero the latent path's upsampling, so the output is made of the shallowest skip alone."""
    with torch.no_grad():
        for up in decoder.ups:
            for p in up.up.parameters():
                p.zero_()
        decoder.outc.bias.zero_()


def _encode(model: CrossDomainAE, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    x_a, x_b = torch.rand(4, 1, 16, 16, generator=g), torch.rand(4, 1, 16, 16, generator=g)
    with torch.no_grad():
        return (*model.encoder(x_a), *model.encoder(x_b))


@pytest.mark.parametrize(
    ("up_mode", "upsample"), [("concat", "transpose"), ("add", "transpose"), ("add", "bilinear")]
)
def test_skip_reliance_is_1_for_a_decoder_made_of_its_skips(tiny: dict, up_mode: str, upsample: str) -> None:
    model = _model(tiny, up_mode, upsample)
    _make_copy_skips(model.decoder_a)
    z_a, skips_a, _, skips_b = _encode(model)
    assert skip_reliance(model.decoder_a, z_a, skips_a, None) == pytest.approx(1.0, abs=1e-6)
    # the untouched decoder uses both paths: strictly between the two extremes
    assert 0.0 < skip_reliance(model.decoder_b, z_a, skips_a, None) < 5.0
    assert skip_reliance(model.decoder_a, z_a, skips_a, skips_b) > 0.05


@pytest.mark.parametrize("up_mode", ["concat", "add"])
def test_skip_reliance_is_0_when_the_skips_carry_no_weight(tiny: dict, up_mode: str) -> None:
    model = _model(tiny, up_mode)
    z_a, skips_a, _, skips_b = _encode(model)
    for replacement in (None, skips_b):
        rel = skip_reliance(model.decoder_a, z_a, skips_a, replacement, skip_weight=0.0)
        assert rel == pytest.approx(0.0, abs=1e-5)


def test_skip_reliance_is_0_for_a_concat_decoder_that_ignores_its_skips(tiny: dict) -> None:
    model = _model(tiny, "concat")
    _make_ignore_skips(model.decoder_a)
    z_a, skips_a, _, skips_b = _encode(model)
    assert skip_reliance(model.decoder_a, z_a, skips_a, None) == pytest.approx(0.0, abs=1e-5)
    assert skip_reliance(model.decoder_a, z_a, skips_a, skips_b) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("up_mode", ["concat", "add"])
def test_measure_reports_reliance_of_copying_and_ignoring_decoders(tiny: dict, up_mode: str) -> None:
    tr = Trainer(load_config(tiny, [f"model.up_mode={up_mode}"]))
    _make_copy_skips(tr.model.decoder_a)
    if up_mode == "concat":
        _make_ignore_skips(tr.model.decoder_b)
    snap = measure(tr, eval_pairs=8, probe_pairs=8)
    assert snap.reliance["no_skip"]["decoder_a"] == pytest.approx(1.0, abs=1e-5)
    if up_mode == "concat":
        assert snap.reliance["no_skip"]["decoder_b"] == pytest.approx(0.0, abs=1e-5)
        assert snap.reliance["use_source"]["decoder_b"] == pytest.approx(0.0, abs=1e-5)
        # ignoring its skips, decoder_b reconstructs from the latent exactly as it does with them
        lo = snap.latent_only
        assert lo["latent_only_b"] == pytest.approx(lo["with_skips_b"], rel=1e-5)


# --------------------------------------------------------------------------------------------- probe


def test_probe_is_50_percent_on_identical_latents() -> None:
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(40, 16, 2, 2)), rng.normal(size=(20, 16, 2, 2))
    res = domain_probe(train, train.copy(), test, test.copy())
    assert res.accuracy == 0.5 and res.n_test == 40 and res.n_train == 80
    assert not res.informative


def test_probe_is_near_100_percent_on_separable_latents() -> None:
    rng = np.random.default_rng(1)
    a_tr, a_te = rng.normal(size=(40, 8, 3, 3)), rng.normal(size=(30, 8, 3, 3))
    shift = np.zeros((8, 3, 3))
    shift[2] = 1.5  # domain b lives in another part of channel 2
    b_tr, b_te = rng.normal(size=(40, 8, 3, 3)) + shift, rng.normal(size=(30, 8, 3, 3)) + shift
    res = domain_probe(pool_latent(torch.tensor(a_tr)), pool_latent(torch.tensor(b_tr)),
                       pool_latent(torch.tensor(a_te)), pool_latent(torch.tensor(b_te)))  # fmt: skip
    assert res.accuracy >= 0.95 and res.informative


def test_probe_is_near_chance_on_same_distribution_latents() -> None:
    rng = np.random.default_rng(2)
    a_tr, b_tr, a_te, b_te = (rng.normal(size=(60, 12)) for _ in range(4))
    res = domain_probe(a_tr, b_tr, a_te, b_te)
    assert abs(res.accuracy - 0.5) <= res.chance_margin


def test_measure_on_identical_domains_gives_zero_distance_and_chance_probe(tiny: dict) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((24, 16, 16)).astype(np.float32)
    tr = Trainer(load_config(tiny), InMemoryPairs(Pairs(x, x.copy())))
    snap = measure(tr, eval_pairs=8, probe_pairs=16)
    assert snap.latent.distance == 0.0 and snap.errors["content"] == 0.0
    assert snap.probe.accuracy == 0.5
    assert not snap.latent.collapsed


# ------------------------------------------------------------------------------------------- latents


def test_latent_stats_flag_a_collapsed_latent() -> None:
    g = torch.Generator().manual_seed(0)
    pattern = torch.rand(1, 8, 2, 2, generator=g)
    collapsed = pattern.expand(6, -1, -1, -1) + 1e-4 * torch.rand(6, 8, 2, 2, generator=g)
    stats = latent_stats(collapsed, collapsed + 1e-4)
    assert stats.collapsed and stats.distance < 1e-3
    varied = torch.rand(6, 8, 2, 2, generator=g)
    healthy = latent_stats(varied, varied + 0.01 * torch.rand(6, 8, 2, 2, generator=g))
    assert not healthy.collapsed and healthy.pair_ratio < 0.1
    unrelated = latent_stats(varied, torch.rand(6, 8, 2, 2, generator=g))
    assert 0.7 < unrelated.pair_ratio < 1.3
    assert latent_stats(torch.zeros(4, 3), torch.zeros(4, 3)).collapsed


# ----------------------------------------------------------------------------------------- gradients


def _grads(tiny: dict, overrides: list[str]) -> tuple:
    tr = Trainer(load_config(tiny, overrides))
    batch = tr.train.take(np.arange(8))
    out = tr.forward(batch["a"], batch["b"], 1.0)
    discs = [d for d in (tr.disc_a, tr.disc_b) if d is not None]
    modules = {"encoder": tr.model.encoder, "decoder_a": tr.model.decoder_a, "decoder_b": tr.model.decoder_b,
               "discriminator": discs or None}  # fmt: skip
    return tr, out, modules, gradient_norms(out.losses, tr.config.trainer.loss_weights.model_dump(), modules)


@pytest.mark.parametrize("term", ["content", "recon", "cross", "adv"])
def test_a_loss_weight_of_0_gives_a_zero_gradient_norm(tiny: dict, term: str) -> None:
    _, _, _, g = _grads(tiny, [f"trainer.loss_weights.{term}=0"])
    assert all(v == 0.0 for v in g.weighted[term].values())
    others = [t for t in ("content", "recon", "cross") if t != term]
    assert all(g.weighted[t]["encoder"] > 0 for t in others)
    if term in ("recon", "cross"):
        assert g.unweighted[term]["decoder_a"] > 0  # the term alone still has a gradient
    assert g.weighted["content"]["decoder_a"] == 0.0  # content only reaches the encoder
    assert "adv" not in g.present and g.total["discriminator"] == 0.0


def test_per_term_norms_add_up_to_the_gradient_training_applies(tiny: dict) -> None:
    tr, out, modules, g = _grads(tiny, ["trainer.loss_weights.adv=0.3", "trainer.loss_weights.recon=0.2"])
    assert "adv" in g.present and g.weighted["adv"]["discriminator"] > 0
    assert g.weighted["recon"]["decoder_a"] == pytest.approx(0.2 * g.unweighted["recon"]["decoder_a"])
    out.losses["total"].backward()
    for name, mod in modules.items():
        params = [p for m in ([mod] if isinstance(mod, torch.nn.Module) else mod) for p in m.parameters()]
        norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params if p.grad is not None))
        assert g.total[name] == pytest.approx(norm, rel=1e-4)
    ratio = g.ratio("decoder_a")
    assert ratio == pytest.approx(g.weighted["cross"]["decoder_a"] / g.weighted["recon"]["decoder_a"])
    assert -1.0 <= g.cosine["decoder_a"] <= 1.0


# ---------------------------------------------------------------------------------------------- data


def test_best_intensity_mapping_fits_any_intensity_function() -> None:
    x = np.random.default_rng(0).random((32, 32))
    for f in (np.sqrt, lambda v: 0.4 * v + 0.1, lambda v: np.where(v > 0.5, 0.1, v)):  # last: non-monotone
        assert np.abs(best_intensity_mapping(x, f(x)) - f(x)).mean() < 0.01 * np.abs(f(x)).mean() + 1e-3


def test_data_content_moves_with_structural_difference() -> None:
    same = generate_pairs(8, 32, fat_suppression=0.0, seed=0)
    differ = generate_pairs(8, 32, fat_suppression=0.0, structural_difference=1.0, seed=0)
    fs = generate_pairs(8, 32, seed=0)
    d_same, d_differ = data_content(same.clean_a, same.clean_b), data_content(differ.clean_a, differ.clean_b)
    assert d_same.known and d_same.same_content and d_same.residual["b_from_a"] < 0.01
    assert not d_differ.same_content
    assert d_differ.residual["b_from_a"] > d_same.residual["b_from_a"] + 0.02
    assert d_differ.differing["a_from_b"] > d_same.differing["a_from_b"] + 0.02
    # fat suppression merges tissues: neither contrast's intensities determine the other's
    assert not data_content(fs.clean_a, fs.clean_b).same_content
    unknown = data_content(None, None)
    assert not unknown.known and unknown.same_content is None and "unknown" in unknown.to_dict()["reading"]


# ------------------------------------------------------------------------------------------ diagnose


def test_diagnose_reports_every_item_and_leaves_json(tiny: dict) -> None:
    rep = diagnose(load_config(tiny), 5, every=2, eval_pairs=8, probe_pairs=16)
    assert rep.status == "finished" and rep.steps_done == 5
    assert [s.step for s in rep.snapshots] == [0, 2, 4, 5]
    assert [r["step"] for r in rep.train_losses] == [1, 2, 3, 4, 5]
    items = " | ".join(r.item for r in rep.readings)
    for needle in ("latent distance", "latent spread", "domain probe", "recon PD", "cross PD from PDFS",
                   "grad cross/recon on decoder_a", "skip reliance decoder_b", "latent-only recon PDFS",
                   "gradient per term", "data: same content"):  # fmt: skip
        assert needle in items
    assert all(r.reading for r in rep.readings)
    doc = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert set(doc["snapshots"][0]) >= {
        "latent",
        "probe",
        "errors",
        "gradients",
        "skip_reliance",
        "latent_only",
    }
    assert doc["snapshots"][-1]["gradients"]["weighted"]["adv"]["encoder"] == 0.0
    assert doc["data"]["known"] is True and doc["config"]["trainer"]["steps_per_epoch"] is None
    assert all(math.isfinite(v) for v in rep.end.flat().values())
    assert "grad.weighted.cross.decoder_a" in rep.end.flat()
    assert set(plot_report(rep)) == {"gradients", "latents", "skip_reliance", "curves", "data"}


def test_measure_changes_nothing_in_the_model(tiny: dict) -> None:
    tr = Trainer(load_config(tiny, ["trainer.loss_weights.adv=0.1"]))
    tr.model.eval()
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    first = measure(tr, eval_pairs=8, probe_pairs=8)
    second = measure(tr, eval_pairs=8, probe_pairs=8)
    assert not tr.model.training and not any(m.training for m in tr.model.modules())
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert first.errors == second.errors and first.gradients == second.gradients
    assert all(p.grad is None for p in tr.model.parameters())


def test_diagnose_stops_at_a_diverged_step(tiny: dict) -> None:
    rep = diagnose(load_config(tiny, ["trainer.lr=1e30", "trainer.optimizer=sgd"]), 4, eval_pairs=8,
                   probe_pairs=8)  # fmt: skip
    assert rep.status == "diverged" and "non-finite" in rep.reason
    assert rep.snapshots[-1].step < rep.steps_done or len(rep.snapshots) == 1
    assert rep.readings[0].item == "training" and rep.readings[0].alert
    json.dumps(rep.to_dict(), allow_nan=False)


def test_diagnose_without_clean_images_says_unknown(tiny: dict) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((24, 16, 16)).astype(np.float32)
    rep = diagnose(load_config(tiny), 1, source=InMemoryPairs(Pairs(x, 0.5 * x)), eval_pairs=8, probe_pairs=8)
    (data,) = [r for r in rep.readings if r.item.startswith("data")]
    assert data.end == "unknown" and "unknown" in data.reading
    assert "data" not in plot_report(rep)


@pytest.mark.parametrize(("steps", "every"), [(0, None), (-1, None), (2, 0), (1.5, None)])
def test_diagnose_rejects_bad_steps(tiny: dict, steps: Any, every: Any) -> None:
    with pytest.raises(ValueError, match="whole number"):
        diagnose(load_config(tiny), steps, every=every)


def test_terms_cover_the_trainers_losses() -> None:
    assert set(TERMS) == {"content", "recon", "cross", "adv"}


def test_the_library_imports_no_tracking_or_orchestration_code() -> None:
    code = (
        "import sys, model.diagnose; "
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " & {'mlflow', 'optuna', 'orchestrator', 'matplotlib'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
