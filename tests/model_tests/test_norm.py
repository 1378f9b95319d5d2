"""model.norm: each norm does what model.norm says, and the default stays the note's BatchNorm."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from model.config import ModelConfig, load_config
from model.norm import NORMS, PathBatchNorm2d, group_norm_groups, make_norm
from model.trainer import Trainer
from model.unet import CrossDomainAE, DoubleConv
from tests.model_tests.test_trainer import _pairs

# The default trainer's losses on the first 8 training pairs of tests.model_tests.test_trainer._pairs(),
# two training steps then one evaluation, computed by the code before the remedies existed (commit
# fdaf23a, one thread): the default config must keep computing them.
BEFORE_REMEDIES = [
    {"content": 0.20489968359470367, "recon": 0.29781925678253174, "cross": 0.3119369447231293},
    {"content": 0.16697131097316742, "recon": 0.2804369330406189, "cross": 0.29052335023880005},
    {"content": 0.0007139117224141955, "recon": 0.2574605941772461, "cross": 0.25725531578063965},
]


def _norm_layers(model: nn.Module) -> list[nn.Module]:
    return [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in ("bn1", "bn2")]


@pytest.mark.parametrize(
    ("channels", "groups"), [(1, 1), (4, 4), (7, 7), (8, 8), (12, 6), (16, 8), (24, 8), (64, 8), (18, 6)]
)
def test_group_norm_groups_is_the_largest_divisor_up_to_8(channels: int, groups: int) -> None:
    assert group_norm_groups(channels) == groups
    assert isinstance(layer := make_norm("group", channels, ("a",)), nn.GroupNorm)
    assert layer.num_groups == groups and channels % layer.num_groups == 0


def test_each_norm_builds_its_layer_in_every_block() -> None:
    want = {
        "batch": nn.BatchNorm2d,
        "batch_per_path": PathBatchNorm2d,
        "batch_per_path_affine": PathBatchNorm2d,
        "group": nn.GroupNorm,
        "instance": nn.InstanceNorm2d,
        "none": nn.Identity,
    }
    for norm in NORMS:
        model = CrossDomainAE(ModelConfig(norm=norm))
        layers = _norm_layers(model)
        assert layers and all(type(m) is want[norm] for m in layers), norm
        convs = [m for m in model.modules() if isinstance(m, DoubleConv)]
        # without a norm the block's convolutions get the bias the norm's shift was
        assert all((c.conv1.bias is not None) == (norm == "none") for c in convs), norm
    inorm = _norm_layers(CrossDomainAE(ModelConfig(norm="instance")))[0]
    assert inorm.affine and not inorm.track_running_stats
    enc = CrossDomainAE(ModelConfig(norm="batch_per_path"))
    assert enc.encoder.inc.bn1.paths == ("a", "b")
    assert enc.decoder_a.ups[0].conv.bn1.paths == ("same", "cross")


def test_default_is_the_notes_batch_norm_with_its_checkpoint_keys(tiny: dict) -> None:
    """The default builds nn.BatchNorm2d everywhere, and the tiny model's state_dict has the keys and
    shapes it had before the remedies (a hash of them computed at commit fdaf23a): checkpoints load."""
    import hashlib

    assert ModelConfig().norm == "batch"
    state = Trainer(load_config(tiny), _pairs()).model.state_dict()
    assert all(type(m) is nn.BatchNorm2d for m in _norm_layers(CrossDomainAE(ModelConfig())))
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(state.items()))
    assert len(state) == 96 and hashlib.sha256(text.encode()).hexdigest()[:16] == "b78eef2d76a0ea20"


# every remedy field added after the first remedies, at its default: the note's numbers, to the digit
LATER_DEFAULTS = [
    {},
    {"trainer": {"content_stop_gradient": "none"}},
    {"trainer": {"lr_schedule": "constant", "lr_warmup_epochs": 0, "lr_final": 0.0}},
]


@pytest.mark.parametrize("defaults", LATER_DEFAULTS)
def test_default_trainer_computes_the_numbers_it_computed_before_the_remedies(
    tiny: dict, defaults: dict
) -> None:
    for section, values in defaults.items():
        tiny[section] |= values
    tr = Trainer(load_config(tiny), _pairs())
    batch = tr.train.take(np.arange(8))
    tr.model.train()
    got = []
    for _ in range(2):
        out = tr.forward(batch["a"], batch["b"], 1.0)
        got.append({k: float(out.losses[k].detach()) for k in ("content", "recon", "cross")})
        tr.optimizer.zero_grad()
        out.losses["total"].backward()
        tr.optimizer.step()
    tr.model.eval()
    with torch.no_grad():
        out = tr.forward(batch["a"], batch["b"], 1.0)
    got.append({k: float(out.losses[k]) for k in ("content", "recon", "cross")})
    assert "content_loss" not in out.losses
    for step, (g, want) in enumerate(zip(got, BEFORE_REMEDIES, strict=True)):
        for term, value in want.items():
            assert g[term] == pytest.approx(value, rel=1e-5), (step, term)


# ------------------------------------------------------------------------------------ batch_per_path


def _per_path_reference(layer: PathBatchNorm2d) -> dict[str, nn.BatchNorm2d]:
    """One nn.BatchNorm2d per path, each with the layer's (shared) affine parameters."""
    refs = {}
    for path in layer.paths:
        bn = nn.BatchNorm2d(layer.num_features)
        with torch.no_grad():
            bn.weight.copy_(layer.weight)
            bn.bias.copy_(layer.bias)
        refs[path] = bn
    return refs


def test_path_batch_norm_is_one_batch_norm_per_path() -> None:
    """Training: each block normalised by its own batch statistics and counted in its own path's running
    statistics; evaluation: each block normalised with its path's running statistics."""
    g = torch.Generator().manual_seed(0)
    layer = PathBatchNorm2d(3, ("same", "cross"))
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5, generator=g)
        layer.bias.uniform_(-0.5, 0.5, generator=g)
    refs = _per_path_reference(layer)
    for order in (("same", "cross"), ("cross", "same"), ("cross",)):
        blocks = [torch.randn(4, 3, 5, 5, generator=g) * (2 if p == "cross" else 1) + 1 for p in order]
        got = layer(torch.cat(blocks), order)
        want = torch.cat([refs[p](b) for p, b in zip(order, blocks, strict=True)])
        torch.testing.assert_close(got, want)
    for path, ref in refs.items():
        torch.testing.assert_close(getattr(layer, f"running_mean_{path}"), ref.running_mean)
        torch.testing.assert_close(getattr(layer, f"running_var_{path}"), ref.running_var)
        assert int(getattr(layer, f"num_batches_tracked_{path}")) == int(ref.num_batches_tracked)
    assert not torch.allclose(layer.running_var_same, layer.running_var_cross)
    layer.eval()
    for ref in refs.values():
        ref.eval()
    x = torch.randn(2, 3, 5, 5, generator=g)
    both = layer(torch.cat([x, x]), ("same", "cross"))
    torch.testing.assert_close(both, torch.cat([refs["same"](x), refs["cross"](x)]))
    torch.testing.assert_close(layer(x, ("cross",)), refs["cross"](x))


def test_path_batch_norm_refuses_an_unnamed_or_unknown_path() -> None:
    layer = PathBatchNorm2d(2, ("a", "b"))
    x = torch.randn(4, 2, 3, 3)
    with pytest.raises(ValueError, match=r"path of every batch block, one of \['a', 'b'\]"):
        layer(x)
    with pytest.raises(ValueError, match="one of"):
        layer(x, ("a", "cross"))
    model = CrossDomainAE(ModelConfig(norm="batch_per_path"))
    with pytest.raises(ValueError, match="pass paths"):
        model.encoder(torch.randn(2, 1, 16, 16))


def test_batch_per_path_trains_exactly_as_batch_and_evaluates_each_path_on_its_own_statistics(
    tiny: dict,
) -> None:
    """Training normalises every path with its own batch statistics under either norm, so the weights
    follow the same trajectory; only the running statistics evaluation uses are split by path."""
    tiny["trainer"] |= {"cross_domain_strategy": "no_skip"}  # the decoder's two paths differ
    trainers = {}
    for norm in ("batch", "batch_per_path"):
        tiny["model"]["norm"] = norm
        trainers[norm] = Trainer(load_config(tiny), _pairs())
        trainers[norm].train_epoch(1)
    batch, per_path = trainers["batch"].model, trainers["batch_per_path"].model
    for (name, p), q in zip(batch.named_parameters(), per_path.parameters(), strict=True):
        assert torch.equal(p, q), name
    split = per_path.decoder_a.ups[0].conv.bn1
    assert not torch.allclose(split.running_mean_same, split.running_mean_cross)
    # the same weights, evaluated on different running statistics
    val = trainers["batch"].val.take(np.arange(6))
    with torch.inference_mode():
        outs = {}
        for norm, tr in trainers.items():
            tr.model.eval()
            outs[norm] = tr.forward(val["a"], val["b"], 1.0).losses
    assert float(outs["batch"]["cross"]) != pytest.approx(float(outs["batch_per_path"]["cross"]), rel=1e-4)


def test_affine_per_path_normalises_each_path_with_its_own_gain_and_shift() -> None:
    """``batch_per_path_affine``: per-path statistics as ``batch_per_path``, and a gradient that reaches only
    the affine parameters of the path that produced it."""
    g = torch.Generator().manual_seed(1)
    layer = PathBatchNorm2d(3, ("same", "cross"), affine_per_path=True)
    assert not hasattr(layer, "weight") and {n for n, _ in layer.named_parameters()} == {
        "weight_same", "bias_same", "weight_cross", "bias_cross"}  # fmt: skip
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(0.5, 1.5, generator=g)
    refs = {}
    for path in layer.paths:
        refs[path] = nn.BatchNorm2d(3)
        with torch.no_grad():
            refs[path].weight.copy_(getattr(layer, f"weight_{path}"))
            refs[path].bias.copy_(getattr(layer, f"bias_{path}"))
    blocks = [torch.randn(4, 3, 5, 5, generator=g) for _ in range(2)]
    got = layer(torch.cat(blocks), ("same", "cross"))
    torch.testing.assert_close(got, torch.cat([refs["same"](blocks[0]), refs["cross"](blocks[1])]))
    layer(blocks[1], ("cross",)).sum().backward()
    assert layer.weight_same.grad is None and layer.weight_cross.grad is not None
    layer.eval()
    torch.testing.assert_close(layer(blocks[0], ("same",)), refs["same"].eval()(blocks[0]))


def test_affine_per_path_starts_as_batch_per_path_and_then_trains_differently(tiny: dict) -> None:
    """Set, the remedy changes training: the first pass computes batch_per_path's numbers (every affine
    starts at 1 and 0), and after an epoch the two models' losses differ."""
    tiny["trainer"] |= {"cross_domain_strategy": "no_skip"}
    trainers = {}
    for norm in ("batch_per_path", "batch_per_path_affine"):
        tiny["model"]["norm"] = norm
        trainers[norm] = Trainer(load_config(tiny), _pairs())
    batch = trainers["batch_per_path"].train.take(np.arange(8))
    first = {
        n: float(tr.forward(batch["a"], batch["b"], 1.0).losses["total"].detach())
        for n, tr in trainers.items()
    }
    assert first["batch_per_path"] == pytest.approx(first["batch_per_path_affine"], rel=1e-6)
    for tr in trainers.values():
        tr.train_epoch(1)
    after = {n: tr.evaluate(1)["cross"] for n, tr in trainers.items()}
    assert after["batch_per_path"] != pytest.approx(after["batch_per_path_affine"], rel=1e-4)


# ------------------------------------------------------------------------------------ per-sample norms


@pytest.mark.parametrize("norm", ["group", "instance", "none"])
def test_per_sample_norms_do_not_mix_the_batch_and_evaluate_as_they_train(norm: str) -> None:
    """A sample's output does not depend on the rest of its batch, and evaluation computes what training
    does (no running statistics): the grouped passes are trivially the separate ones."""
    torch.manual_seed(0)
    model = CrossDomainAE(ModelConfig(norm=norm, encoder={"features": [4, 8], "latent_channels": 16},
                                      decoder_a={"features": [8, 4], "latent_channels": 16},
                                      decoder_b={"features": [8, 4], "latent_channels": 16}))  # fmt: skip
    x_a, x_b = torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)
    model.train()
    whole = model(x_a, x_b)
    alone = model(x_a[:1], x_b[:1])
    for field in ("z_a", "recon_a", "a_from_b", "b_from_a"):
        torch.testing.assert_close(getattr(alone, field), getattr(whole, field)[:1], rtol=1e-5, atol=1e-6)
    state = copy.deepcopy(model.state_dict())
    model.eval()
    evaluated = model(x_a, x_b)
    for field in ("z_b", "recon_b", "a_from_b"):
        torch.testing.assert_close(getattr(evaluated, field), getattr(whole, field))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key])
