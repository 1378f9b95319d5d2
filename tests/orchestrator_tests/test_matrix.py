from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from model.config import TrainerConfig
from orchestrator.matrix import MatrixError, load_matrix
from tests.conftest import alias_bomb, run_python

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, data: dict | str) -> Path:
    p = tmp_path / "m.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return p


def test_axes_cartesian_product_and_seeds(tmp_path: Path, tiny: dict) -> None:
    m = {
        "name": "t",
        "base": tiny,
        "seeds": [0, 1],
        "axes": {"recon_weight": [0.5, 0.05], "up_mode": ["concat", "add"]},
    }
    _, specs = load_matrix(_write(tmp_path, m))
    assert len(specs) == 2 * 2 * 2
    assert {s.cell for s in specs} == {
        "recon_weight=0.5,up_mode=concat", "recon_weight=0.5,up_mode=add",
        "recon_weight=0.05,up_mode=concat", "recon_weight=0.05,up_mode=add",
    }  # fmt: skip
    assert len({s.run_key for s in specs}) == 8
    s = next(s for s in specs if s.cell == "recon_weight=0.05,up_mode=add" and s.seed == 1)
    assert s.config.trainer.loss_weights.recon == 0.05 and s.config.model.up_mode == "add"
    assert s.config.trainer.seed == 1


def test_run_keys_are_stable_and_depend_on_config(tmp_path: Path, tiny: dict) -> None:
    m = {"name": "t", "base": tiny, "axes": {"lr": [0.001, 0.002]}}
    _, a = load_matrix(_write(tmp_path, m))
    _, b = load_matrix(_write(tmp_path, m))
    assert [s.run_key for s in a] == [s.run_key for s in b]
    assert a[0].run_key != a[1].run_key


def test_latent_width_sets_encoder_and_both_decoders(tmp_path: Path, tiny: dict) -> None:
    _, specs = load_matrix(_write(tmp_path, {"name": "t", "base": tiny, "axes": {"latent_width": [24]}}))
    model = specs[0].config.model
    assert (
        model.encoder.latent_channels
        == model.decoder_a.latent_channels
        == model.decoder_b.latent_channels
        == 24
    )


def test_cells_with_expectations_and_exclude(tmp_path: Path, tiny: dict) -> None:
    m = {
        "name": "t",
        "base": tiny,
        "seeds": [0],
        "cells": {
            "orig": {"cross_skip": "use_source", "expect": "fail", "note": "noise leak"},
            "nse": {"cross_skip": "no_skip", "same_domain_skip": False, "expect": "pass"},
        },
        "axes": {"lr": [0.001, 0.01]},
        "exclude": [{"cross_skip": "use_source", "lr": 0.01}],
    }
    _, specs = load_matrix(_write(tmp_path, m))
    assert [s.cell for s in specs] == ["orig/lr=0.001", "nse/lr=0.001", "nse/lr=0.01"]
    assert specs[0].expect == "fail" and specs[0].note == "noise leak"


def test_base_from_config_file_next_to_matrix(tmp_path: Path) -> None:
    (tmp_path / "base.json").write_text('{"trainer": {"epochs": 3}}')
    _, specs = load_matrix(_write(tmp_path, {"name": "t", "base": "base.json", "axes": {"lr": [0.1]}}))
    assert specs[0].config.trainer.epochs == 3


@pytest.mark.parametrize(
    ("matrix", "pattern"),
    [
        (
            {"name": "t", "axes": {"recon_wieght": [0.1]}},
            r"unknown axis 'recon_wieght'; did you mean 'recon_weight'",
        ),
        (
            {"name": "t", "axes": {"cross_skip": ["sometimes"]}},
            r"cross_skip='sometimes'.*'use_source' or 'no_skip'",
        ),
        ({"name": "t", "axes": {"recon_weight": [-1]}}, r"recon_weight=-1.*greater than or equal to 0"),
        ({"name": "t", "axes": {"lr": []}}, r"axis 'lr' has no values"),
        ({"name": "t"}, r"no points to run"),
        ({"name": "t", "axes": {"lr": [0.1]}, "exclude": [{"lr": 0.1}]}, r"no points to run"),
        ({"name": "t", "axis": {"lr": [0.1]}}, r"unknown key 'axis'; did you mean 'axes'"),
        ({"name": "t", "base": "nowhere.json", "axes": {"lr": [0.1]}}, r"no such config file 'nowhere.json'"),
        ({"name": "t", "seeds": [1, 1], "axes": {"lr": [0.1]}}, r"seeds must be distinct"),
        ({"name": "t", "cells": {"a": {"expect": "maybe"}}}, r"expect"),
        (
            {"name": "t", "axes": {"lr": [0.1]}, "budget": {"early_stop": True, "early_stop_patience": 0}},
            r"early_stop_patience.*greater than or equal to 1",
        ),
        ({"name": "t", "cells": {"a": {}, "b": {"lr": 0.001}}}, r"cells 'a' and 'b' resolve to the same"),
        (
            {"name": "t", "axes": {"norm": ["layer"]}},
            r"norm='layer'.*'batch', 'batch_per_path', 'batch_per_path_affine', 'group', 'instance' "
            r"or 'none'",
        ),
        ({"name": "t", "axes": {"content_loss": ["simsiam"]}}, r"'l1', 'cosine' or 'vicreg'"),
        ({"name": "t", "axes": {"content_schedule": ["step"]}}, r"'constant', 'linear' or 'cosine'"),
        ({"name": "t", "axes": {"content_weight_final": [-0.1]}}, r"greater than or equal to 0"),
        ({"name": "t", "axes": {"content_variance_weight": [-1]}}, r"greater than or equal to 0"),
        ({"name": "t", "axes": {"content_ramp_epochs": [0]}}, r"greater than or equal to 1"),
        (
            {"name": "t", "axes": {"lr": [0.1]}, "budget": {"epochs": 3}, "verdict": {"warmup": 3}},
            r"verdict.warmup \(3\) is not shorter than budget.epochs \(3\)",
        ),
    ],
)
def test_bad_matrices(tmp_path: Path, matrix: dict, pattern: str) -> None:
    with pytest.raises(MatrixError, match=pattern):
        load_matrix(_write(tmp_path, matrix))


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "name: t\naxes:\n  lr: [0.1\n")
    with pytest.raises(MatrixError, match=r"m\.yaml: line \d+"):
        load_matrix(p)


def test_duplicate_cell_names_rejected(tmp_path: Path) -> None:
    p = _write(tmp_path, "name: t\ncells:\n  a: {lr: 0.1}\n  a: {lr: 0.2}\n")
    with pytest.raises(MatrixError, match=r"duplicate key 'a'"):
        load_matrix(p)


def test_missing_file() -> None:
    with pytest.raises(MatrixError, match="no such matrix file"):
        load_matrix(Path("does/not/exist.yaml"))


@pytest.mark.parametrize("name", ["test_matrix", "plan_a", "plan_d", "remedies", "remedies_misregistered"])
def test_shipped_matrices_expand(name: str) -> None:
    matrix, specs = load_matrix(ROOT / "matrices" / f"{name}.yaml")
    assert len({s.seed for s in specs}) >= 3
    assert len(specs) == len({s.run_key for s in specs})


def test_test_matrix_is_the_notes_table() -> None:
    _, specs = load_matrix(ROOT / "matrices" / "test_matrix.yaml")
    rows = {}
    for s in specs:
        t = s.config.trainer
        rows[s.cell] = (
            t.same_domain_use_skip, t.cross_domain_strategy, t.loss_weights.recon, t.loss_weights.cross,
            s.config.model.encoder.latent_channels, s.expect,
        )  # fmt: skip
    assert rows == {
        "original": (True, "use_source", 0.5, 1.0, 256, "fail"),
        "no_skip": (True, "no_skip", 0.5, 1.0, 256, "fail"),
        "no_skip_everywhere": (False, "no_skip", 0.05, 1.0, 512, "pass"),
        "pure_n2n": (True, "no_skip", 0.2, 1.0, 256, "partial"),
    }


def test_config_key_ignores_later_fields_at_the_value_earlier_runs_used(tmp_path: Path) -> None:
    """trainer.precision was added after stores were written: float32 (what every earlier run used) leaves
    the config key as it was (the run key of stores written before code fingerprints); bfloat16 is a
    different run."""
    import hashlib
    import json

    from model.config import RunConfig
    from orchestrator.identity import KEY_NEUTRAL, config_key

    cfg = RunConfig()
    legacy = cfg.to_dict()
    for *parents, leaf in KEY_NEUTRAL:  # every field added later: precision, val_pairs, the remedies
        section = legacy
        for name in parents:
            section = section[name]
        del section[leaf]
    text = json.dumps(legacy, sort_keys=True, separators=(",", ":"))
    assert config_key(cfg) == hashlib.sha256(text.encode()).hexdigest()[:16]
    bf16 = RunConfig.model_validate({"trainer": {"precision": "bfloat16"}})
    assert config_key(bf16) != config_key(cfg)


# ------------------------------------------------------------------------------ bounds on what is read


def test_a_matrix_that_is_not_text_or_nests_too_deep(tmp_path: Path) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: t\n\xff\xfe\x00\x01")
    with pytest.raises(MatrixError, match=r"bin\.yaml: line 2: not UTF-8 text \(byte 0xff"):
        load_matrix(binary)
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: t\naxes:\n  lr: " + "[" * 20_000 + "]" * 20_000 + "\n")
    with pytest.raises(MatrixError, match=r"deep\.yaml: line 3: nested more than 64 levels deep"):
        load_matrix(deep)
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(MatrixError, match=r"folder\.yaml: is a directory, not a matrix file"):
        load_matrix(tmp_path / "folder.yaml")


def test_a_base_config_that_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "broken.json").symlink_to(tmp_path / "gone.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe{}")
    for base, pattern in [
        ("dir.json", r"base: .*dir\.json: is a directory"),
        ("broken.json", r"base: .*broken\.json: no such config file \(a broken link"),
        ("bin.json", r"base: .*bin\.json: line 1: not UTF-8 text"),
    ]:
        with pytest.raises(MatrixError, match=pattern):
            load_matrix(_write(tmp_path, {"name": "t", "base": base, "axes": {"lr": [0.1]}}))


@pytest.mark.parametrize(
    ("where", "line"),
    [
        ("description: {bomb}\naxes: {{lr: [0.1]}}", 2),
        ("cells:\n  c:\n    lr: 0.1\n    note: {bomb}", 5),
        ("axes:\n  lr: [0.1, {bomb}]", 3),
    ],
)
def test_an_alias_bomb_is_refused_within_a_second(tmp_path: Path, where: str, line: int) -> None:
    """Nine levels of nine aliases in a description, a note or an axis value used to run to MemoryError
    (100-180 s) through the error message's repr and the cell labels' json.dumps."""
    (tmp_path / "m.yaml").write_text("name: t\n" + where.format(bomb=alias_bomb()) + "\n")
    code = (
        "import time; from orchestrator.matrix import MatrixError, load_matrix\n"
        "t = time.perf_counter()\n"
        "try:\n    load_matrix('m.yaml')\nexcept MatrixError as exc:\n    print(exc)\n"
        "print(f'{time.perf_counter() - t:.3f}')\n"
    )
    out = run_python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    message, seconds = out.stdout.strip().splitlines()
    assert message.startswith(f"m.yaml: line {line}: the document stands for more than 100,000 values")
    assert float(seconds) < 1


def test_aliases_within_the_bound_still_load(tmp_path: Path, tiny: dict) -> None:
    text = (
        yaml.safe_dump({"name": "t", "seeds": [0], "axes": {"lr": [0.1]}})
        + "base: &b "
        + (yaml.safe_dump(tiny, default_flow_style=True))
    )
    text += "cells:\n  a: &c {lr: 0.001}\n  b: {<<: *c, recon_weight: 0.2}\n"
    _, specs = load_matrix(_write(tmp_path, text))
    assert [s.cell for s in specs] == ["a/lr=0.1", "b/lr=0.1"]


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MatrixError, match=r"line 2: alias \*a is inside its own anchor"):
        load_matrix(_write(tmp_path, "name: t\ndescription: &a [1, *a]\n"))


def test_run_count_without_expanding(tiny: dict) -> None:
    from orchestrator.matrix import Matrix, run_count

    ten = list(range(10))
    axes = {f"trainer.a{i}": ten for i in range(6)}
    assert run_count(Matrix(name="t", axes=axes)) == (10**6, "6 axes of 10 values x 1 seed")
    m = Matrix(
        name="t", seeds=[0, 1], axes={"lr": [1, 2], "up_mode": ["a", "b", "c"]}, cells={"x": {}, "y": {}}
    )
    assert run_count(m) == (24, "2 cells x 2 axes of 2 x 3 values x 2 seeds")
    assert run_count(Matrix(name="t", cells={"x": {}}))[0] == 1


def test_a_million_runs_are_refused_within_a_second_unless_asked(tmp_path: Path, tiny: dict) -> None:
    import time

    from orchestrator.matrix import MAX_RUNS

    values = [0.1 * (i + 1) for i in range(10)]
    axes = {
        a: values for a in ("lr", "recon_weight", "content_weight", "cross_weight", "skip_weight", "noise")
    }
    path = _write(tmp_path, {"name": "t", "base": tiny, "axes": axes})
    t = time.perf_counter()
    with pytest.raises(MatrixError) as err:
        load_matrix(path, max_runs=MAX_RUNS)
    assert time.perf_counter() - t < 1
    assert str(err.value) == (
        f"{path}: the matrix asks for 1,000,000 runs (6 axes of 10 values x 1 seed); above 10,000 pass --yes"
    )
    small = _write(tmp_path, {"name": "t", "base": tiny, "seeds": [0, 1], "axes": {"lr": values}})
    assert len(load_matrix(small, max_runs=20)[1]) == 20
    with pytest.raises(MatrixError, match="asks for 20 runs"):
        load_matrix(small, max_runs=19)


@pytest.mark.parametrize(
    ("matrix", "pattern"),
    [
        ({"seeds": [1180591620717411303424]}, r"seeds\.0: a seed must be an integer from 0 to 2\*\*63 - 1"),
        ({"seeds": [0, -1]}, r"seeds\.1: a seed must be"),
        ({"axes": {"noise": [float("nan")]}}, r"noise=nan.*data\.noise must be a finite number"),
        ({"axes": {"lr": [float("inf")]}}, r"lr=inf.*trainer\.lr: Input should be a finite number"),
        ({"verdict": {"min_change": float("nan")}}, r"verdict\.min_change: Input should be a finite number"),
        (
            {"verdict": {"guards": [{"metric": "x", "max": float("inf")}]}},
            r"verdict\.guards\.0\.max: .*finite",
        ),
        ({"axes": {"lr": {"low": 0.1, "high": float("inf")}}}, r"axes\.lr.*finite"),
        ({"search": {"sampler_seed": 2**40}}, r"search\.sampler_seed"),
    ],
)
def test_seeds_fit_the_generators_and_floats_are_finite(tmp_path: Path, matrix: dict, pattern: str) -> None:
    m = {"name": "t", "axes": {"lr": [0.1]}, **matrix}
    with pytest.raises(MatrixError, match=pattern):
        load_matrix(_write(tmp_path, m))


def test_a_long_value_is_cut_in_the_message(tmp_path: Path) -> None:
    with pytest.raises(MatrixError) as err:
        load_matrix(_write(tmp_path, {"name": "t", "axes": {"cross_skip": ["s" * 50_000]}}))
    assert "sss..." in str(err.value) and len(str(err.value)) < 1000


def test_remedy_fields_at_their_defaults_keep_the_config_keys_written_before_them() -> None:
    """The config keys of the default config and of the test matrix's seed-0 runs as the code before the
    remedies computed them (commit fdaf23a); each remedy away from the note's behaviour is a new run."""
    from model.config import RunConfig
    from orchestrator.identity import KEY_NEUTRAL, config_key

    assert config_key(RunConfig()) == "d29fcc280909b0f9"
    _, specs = load_matrix(ROOT / "matrices" / "test_matrix.yaml")
    keys = {s.cell: config_key(s.config) for s in specs if s.seed == 0}
    assert keys == {
        "original": "484ba7a4a45160be",
        "no_skip": "edbad77728d4f522",
        "no_skip_everywhere": "3588f1aa97a938cd",
        "pure_n2n": "51691758e02907d3",
    }
    changed = {
        ("model", "norm"): "group",
        ("trainer", "content_loss"): "vicreg",
        ("trainer", "content_variance_weight"): 2.0,
        ("trainer", "content_schedule"): "linear",
        ("trainer", "content_weight_final"): 0.5,
        ("trainer", "content_ramp_epochs"): 3,
    }
    for (section, field), value in changed.items():
        assert KEY_NEUTRAL[(section, field)] == RunConfig().to_dict()[section][field]
        other = RunConfig.model_validate({section: {field: value}})
        assert config_key(other) != config_key(RunConfig()), field


def test_remedy_axes_set_their_config_fields(tmp_path: Path, tiny: dict) -> None:
    axes = {
        "norm": ["batch_per_path"],
        "content_loss": ["cosine"],
        "content_variance_weight": [3.0],
        "content_schedule": ["cosine"],
        "content_weight_final": [0.25],
        "content_ramp_epochs": [5],
    }
    _, specs = load_matrix(_write(tmp_path, {"name": "t", "base": tiny, "axes": axes}))
    t = specs[0].config.trainer
    assert specs[0].config.model.norm == "batch_per_path"
    assert (t.content_loss, t.content_variance_weight, t.content_schedule) == ("cosine", 3.0, "cosine")
    assert (t.content_weight_final, t.content_ramp_epochs) == (0.25, 5)


# ------------------------------------------------------------------------------ command-line edits


def test_overrides_change_the_matrix_before_it_is_validated(tmp_path: Path, tiny: dict) -> None:
    (tmp_path / "base.json").write_text(json.dumps(tiny))
    path = _write(tmp_path, {"name": "t", "base": "base.json", "seeds": [0], "axes": {"lr": [0.001]}})
    _, before = load_matrix(path)
    matrix, specs = load_matrix(
        path, overrides=["budget.epochs=5", "seeds=[0, 1, 2]", "base.trainer.batch_size=4"]
    )
    assert matrix.budget.epochs == 5 and [s.seed for s in specs] == [0, 1, 2]
    assert specs[0].config.trainer.batch_size == 4 and specs[0].config.trainer.epochs == 5
    assert specs[0].run_key != before[0].run_key  # another config, another run


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("budgt.epochs=5", "a matrix has no field 'budgt'; did you mean 'budget'?"),
        ("budget.epocs=5", "did you mean 'budget.epochs'"),
        ("base.trainer.lrr=0.1", "did you mean 'trainer.lr'"),
        ("seeds=[0, 0]", "seeds must be distinct"),
        ("seeds=[0,", "seeds"),
        ("nonsense", "expected key=value"),
    ],
)
def test_a_bad_override_names_the_field(tmp_path: Path, tiny: dict, override: str, message: str) -> None:
    path = _write(tmp_path, {"name": "t", "base": tiny, "axes": {"lr": [0.001]}})
    with pytest.raises(MatrixError, match=re.escape(message)):
        load_matrix(path, overrides=[override])


def test_select_specs_by_cell_and_axis(tmp_path: Path, tiny: dict) -> None:
    from orchestrator.matrix import select_specs

    m = {"name": "t", "base": tiny, "axes": {"lr": [0.001, 0.002], "up_mode": ["concat", "add"]}}
    _, specs = load_matrix(_write(tmp_path, m))
    assert {s.cell for s in select_specs(specs, where={"up_mode": "add", "lr": "2e-3"})} == {
        "lr=0.002,up_mode=add"
    }
    assert len(select_specs(specs, cells=["lr=0.001,up_mode=concat"])) == 1
    with pytest.raises(MatrixError, match="no cell named 'lr=0.3'"):
        select_specs(specs, cells=["lr=0.3"])
    with pytest.raises(MatrixError, match="no cell has the axis 'upmode'; did you mean 'up_mode'"):
        select_specs(specs, where={"upmode": "add"})


def test_cells_and_where_take_comma_lists(tmp_path: Path, tiny: dict) -> None:
    from orchestrator.matrix import parse_where, select_specs

    cells = {"a": {}, "b": {"lr": 0.002}, "c": {"lr": 0.003, "up_mode": "add"}}
    _, specs = load_matrix(_write(tmp_path, {"name": "t", "base": tiny, "cells": cells}))
    assert {s.cell for s in select_specs(specs, cells=["a,b"])} == {"a", "b"}
    assert {s.cell for s in select_specs(specs, cells=["a", "b,c"])} == {"a", "b", "c"}
    with pytest.raises(MatrixError, match="no cell named 'd'"):
        select_specs(specs, cells=["a,d"])
    assert parse_where(["lr=0.003,up_mode=add"]) == {"lr": "0.003", "up_mode": "add"}
    assert parse_where(["decoder_features=[8, 4],lr=0.1"]) == {"decoder_features": "[8, 4]", "lr": "0.1"}
    assert {s.cell for s in select_specs(specs, where=parse_where(["lr=0.003,up_mode=add"]))} == {"c"}


def test_budget_scale_multiplies_the_steps_per_epoch_under_new_keys(tmp_path: Path, tiny: dict) -> None:
    m = {
        "name": "t",
        "base": tiny,
        "axes": {"lr": [0.001, 0.002]},
        "budget": {"epochs": 3, "steps_per_epoch": 2},
    }
    path = _write(tmp_path, m)
    _, plain = load_matrix(path)
    _, one = load_matrix(path, overrides=["budget.scale=1"])
    _, twice = load_matrix(path, overrides=["budget.scale=2"])
    _, half = load_matrix(path, overrides=["budget.scale=0.5"])
    assert [s.run_key for s in one] == [s.run_key for s in plain]  # at 1, the keys written before scale
    assert [s.config.trainer.steps_per_epoch for s in twice] == [4, 4]
    assert [s.config.trainer.steps_per_epoch for s in half] == [1, 1]
    assert {s.config.trainer.epochs for s in twice} == {3}  # the epochs (and the verdict's window) stay
    assert not {s.run_key for s in twice} & {s.run_key for s in plain}
    # a scaled run is the run of its steps: the same key as asking for those steps directly
    _, direct = load_matrix(path, overrides=["budget.steps_per_epoch=4"])
    assert [s.run_key for s in direct] == [s.run_key for s in twice]


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"scale": 2}, "give budget.steps_per_epoch"),
        (
            {"scale": 0.3, "steps_per_epoch": 6},
            "budget.scale 0.3 x 6 steps per epoch = 1.8, not a whole number",
        ),
        ({"scale": 0, "steps_per_epoch": 6}, "budget.scale"),
        ({"scale": -1, "steps_per_epoch": 6}, "budget.scale"),
    ],
)
def test_a_budget_scale_without_whole_steps_is_refused(
    tmp_path: Path, tiny: dict, budget: dict, message: str
) -> None:
    with pytest.raises(MatrixError, match=re.escape(message)):
        load_matrix(_write(tmp_path, {"name": "t", "base": tiny, "axes": {"lr": [0.001]}, "budget": budget}))


def test_the_remedies_matrices_are_the_note_s_cells_with_remedies_added() -> None:
    """Each remedies cell is one of the test matrix's cells (the one with its skips, weights and widths) with
    only remedy fields changed (norm, content loss and weight with its schedule, learning-rate schedule), and
    the data's misregistration and every validation pair measured; the note's controls keep their run key."""
    from orchestrator.identity import config_key

    note_matrix, note_specs = load_matrix(ROOT / "matrices" / "test_matrix.yaml")
    notes = {s.cell: s for s in note_specs if s.seed == 0}
    trainer_remedies = ("content_loss", "content_schedule", "content_weight_final", "lr_schedule", "seed")
    defaults = TrainerConfig()
    for name, misregistration in (("remedies", 0.0), ("remedies_misregistered", 0.5)):
        matrix, specs = load_matrix(ROOT / "matrices" / f"{name}.yaml")
        assert matrix.verdict == note_matrix.verdict and matrix.budget.epochs == 24
        assert matrix.seeds == [0, 1, 2, 3, 4]
        for s in specs:
            c = s.config
            assert c.data.misregistration == misregistration and c.trainer.val_pairs is None
            bare = c.model_copy(
                update={
                    "model": c.model.model_copy(update={"norm": "batch"}),
                    "trainer": c.trainer.model_copy(
                        update={
                            **{k: getattr(defaults, k) for k in trainer_remedies},
                            "val_pairs": 64,
                            "loss_weights": c.trainer.loss_weights.model_copy(update={"content": 1.0}),
                        }
                    ),
                    "data": c.data.model_copy(update={"misregistration": 0.0}),
                }
            ).to_dict()
            matches = [cell for cell, n in notes.items() if n.config.to_dict() == bare]
            assert len(matches) == 1, f"{name}/{s.cell} is no test-matrix cell with remedies added"
        controls = [s for s in specs if s.cell in ("original", "no_skip_everywhere")]
        assert controls and {s.expect for s in controls} == {"fail"}  # the note's defaults stall
        for s in controls:  # the remedy fields are key-neutral at their defaults
            if name == "remedies" and s.seed == 0:
                c = s.config
                c64 = c.model_copy(update={"trainer": c.trainer.model_copy(update={"val_pairs": 64})})
                assert config_key(c64) == notes[s.cell].config_key
