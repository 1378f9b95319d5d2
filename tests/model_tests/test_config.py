from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.config import ConfigError, RunConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["original", "no_skip", "no_skip_everywhere", "pure_n2n"])
def test_note_configs_load(name: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.json")
    assert isinstance(cfg, RunConfig)


def test_note_table_values() -> None:
    """The four shipped configs are the note's table, row by row."""
    table = {
        "original": (True, "use_source", 0.5, 1.0, 256),
        "no_skip": (True, "no_skip", 0.5, 1.0, 256),
        "no_skip_everywhere": (False, "no_skip", 0.05, 1.0, 512),
        "pure_n2n": (True, "no_skip", 0.2, 1.0, 256),
    }
    for name, (same, cross_skip, recon, cross, latent) in table.items():
        c = load_config(CONFIGS / f"{name}.json")
        got = (
            c.trainer.same_domain_use_skip,
            c.trainer.cross_domain_strategy,
            c.trainer.loss_weights.recon,
            c.trainer.loss_weights.cross,
            c.model.encoder.latent_channels,
        )
        assert got == (same, cross_skip, recon, cross, latent), name
    assert load_config(CONFIGS / "no_skip_everywhere.json").model.decoder_a.features == [512, 256, 128]


def test_misspelt_key_names_nearest(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"trainer": {"loss_weigths": {"recon": 0.1}}}))
    with pytest.raises(ConfigError, match=r"trainer\.loss_weigths.*did you mean 'trainer\.loss_weights'"):
        load_config(p)


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"trainer": {"lr": "fast"}}, r"trainer\.lr"),
        ({"trainer": {"cross_domain_strategy": "sometimes"}}, r"cross_domain_strategy.*use_source"),
        ({"model": {"encoder": {"latent_channels": 512}}}, r"decoder_a\.latent_channels \(256\).*512"),
        ({"model": {"decoder_b": {"features": [8, 4]}}}, r"decoder_b\.features has 2 levels"),
        (
            {"trainer": {"skip_weight": 0.0, "cross_domain_strategy": "use_source"}},
            r"skip_weight is 0.*use_source",
        ),
        ({"trainer": {"loss_weights": {"recon": -1}}}, r"loss_weights\.recon"),
        ({"data": {"source": "s3"}}, r"data"),
    ],
)
def test_inconsistent_settings_rejected(data: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(data)


def test_overrides_parse_values_and_reject_unknown_paths() -> None:
    c = load_config(
        None, ["trainer.loss_weights.recon=0.2", "data.size=32", "trainer.same_domain_use_skip=false"]
    )
    assert (
        c.trainer.loss_weights.recon == 0.2 and c.data.size == 32 and c.trainer.same_domain_use_skip is False
    )
    with pytest.raises(ConfigError, match=r"did you mean 'trainer\.loss_weights\.recon'"):
        load_config(None, ["trainer.loss_weights.recn=0.2"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["trainer.lr"])


@pytest.mark.parametrize(
    ("text", "pattern"), [("{not json", "invalid JSON at line 1"), ("[1, 2]", "mapping")]
)
def test_malformed_files(tmp_path: Path, text: str, pattern: str) -> None:
    p = tmp_path / "c.json"
    p.write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        load_config(p)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.json")


def test_resolved_config_round_trips() -> None:
    """What a run stores (config.json, worker payloads) validates back to the same config."""
    for name in ("original", "no_skip_everywhere"):
        cfg = load_config(
            CONFIGS / f"{name}.json", ["trainer.skip_schedule=cosine", "data.noise={a: 0.1, b: 0.2}"]
        )
        assert RunConfig.model_validate(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("clean", [True, False])
def test_a_config_behaves_the_same_after_any_round_trip(tmp_path, tiny: dict, clean: bool) -> None:  # noqa: ANN001
    """What a sweep's worker, a run's config.json and a checkpoint hold is the full dump of the config: the
    source it opens must be the one the user's own config opens (an HDF5 file without clean images
    included)."""
    import pickle

    from model.data import Pairs, open_source, write_pairs
    from model.data.phantom import generate_pairs

    ph = generate_pairs(16, 16, seed=0)
    path = tmp_path / "d.h5"
    write_pairs(
        path, Pairs(ph.a, ph.b, ph.clean_a if clean else None, ph.clean_b if clean else None), source="t"
    )
    sources = [tiny["data"], {"source": "hdf5", "path": str(path)}]
    for data in sources:
        cfg = load_config({**tiny, "data": data})
        for copy in (RunConfig.model_validate(cfg.to_dict()), pickle.loads(pickle.dumps(cfg))):
            a, b = open_source(cfg.data), open_source(copy.data)
            assert (a.n, a.height, a.has_clean) == (b.n, b.height, b.has_clean)
