from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from model.config import ConfigError, RunConfig, load_config
from tests.conftest import alias_bomb, run_python

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


# ------------------------------------------------------------------ files that are not what they claim


def _bad_files(tmp_path: Path) -> list[tuple[Path, str]]:
    (tmp_path / "bin.json").write_bytes(b'{"trainer": {"lr": "\xff\xfe"}}')
    (tmp_path / "bin.yaml").write_bytes(b"trainer:\n  lr: 0.1\n\x89PNG\r\n\x1a\n\xff\xd8")
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "broken.json").symlink_to(tmp_path / "nowhere.json")
    (tmp_path / "deep.json").write_text("[" * 20_000 + "]" * 20_000)
    (tmp_path / "deep.yaml").write_text("trainer:\n  lr: " + "[" * 20_000 + "]" * 20_000 + "\n")
    return [
        (tmp_path / "bin.json", r"bin\.json: line 1: not UTF-8 text \(byte 0xff at offset 20\)"),
        (tmp_path / "bin.yaml", r"bin\.yaml: line 3: not UTF-8 text \(byte 0x89"),
        (tmp_path / "dir.json", r"dir\.json: is a directory, not a config file"),
        (tmp_path / "broken.json", r"broken\.json: no such config file \(a broken link to .*nowhere\.json\)"),
        (tmp_path / "deep.json", r"deep\.json: line 1: nested more than 64 levels deep"),
        (tmp_path / "deep.yaml", r"deep\.yaml: line 2: nested more than 64 levels deep"),
    ]


def test_unreadable_files_are_config_errors_naming_the_file(tmp_path: Path) -> None:
    """Binary content, a directory, a broken link, 20,000-deep nesting: a ConfigError, not a
    UnicodeDecodeError or a RecursionError."""
    for path, pattern in _bad_files(tmp_path):
        with pytest.raises(ConfigError, match=pattern):
            load_config(path)


def test_a_file_that_cannot_be_read_says_why(tmp_path: Path, monkeypatch) -> None:
    p = tmp_path / "c.json"
    p.write_text("{}")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # root reads any file: simulate a chmod 000
    with pytest.raises(ConfigError, match=r"c\.json: cannot read the config file \(Permission denied\)"):
        load_config(p)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads a chmod 000 file")
def test_a_file_without_read_permission(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text("{}")
    p.chmod(0)
    with pytest.raises(ConfigError, match=r"c\.json: cannot read the config file \(Permission denied\)"):
        load_config(p)


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """Nine levels of nine aliases load as shared references; the error message's repr used to expand them
    until MemoryError (minutes). The loader counts what aliases stand for and stops past 100,000."""
    (tmp_path / "bomb.yaml").write_text(f"trainer:\n  lr: 0.1\nmodel: {alias_bomb()}\n")
    code = (
        "import time; from model.config import ConfigError, load_config\n"
        "t = time.perf_counter()\n"
        "try:\n    load_config('bomb.yaml')\nexcept ConfigError as exc:\n    print(exc)\n"
        "print(f'{time.perf_counter() - t:.3f}')\n"
    )
    out = run_python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    message, seconds = out.stdout.strip().splitlines()
    assert message.startswith("bomb.yaml: line 3: the document stands for more than 100,000 values")
    assert float(seconds) < 1


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("trainer.seed=1180591620717411303424", "trainer.seed"),
        ("trainer.seed=-1", "trainer.seed"),
        ("data.seed=9223372036854775808", "data.seed"),
    ],
)
def test_seeds_must_fit_torchs_generator(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"{field}: a seed must be an integer from 0 to 2\*\*63 - 1"):
        load_config(None, [override])
    load_config(None, [f"{field}={2**63 - 1}"])


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("data.noise=.nan", "data.noise"),
        ("data.noise=.inf", "data.noise"),
        ("data.noise={a: .nan, b: 0.1}", "data.noise"),
        ("trainer.lr=.inf", "trainer.lr"),
        ("trainer.loss_weights.recon=.nan", "trainer.loss_weights.recon"),
        ("trainer.skip_weight=.inf", "trainer.skip_weight"),
        ("data.fat_suppression=.nan", "data.fat_suppression"),
    ],
)
def test_every_float_is_finite_and_the_error_names_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^config: {re.escape(field)}\b.*finite number"):
        load_config(None, [override])


def test_quoted_values_are_cut() -> None:
    """A long value in an error message is cut with "..." (the message stays one readable line)."""
    with pytest.raises(ConfigError) as err:
        load_config({"model": {"up_mode": "x" * 100_000}})
    assert "model.up_mode" in str(err.value) and "xxx..." in str(err.value)
    assert len(str(err.value)) < 600
