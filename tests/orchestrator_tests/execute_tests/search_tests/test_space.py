"""The search space: distributions from a matrix's axes, pinned axes, parameters as a person reads them."""

from __future__ import annotations

from pathlib import Path

import optuna

from orchestrator.execute.search import format_params, search_space
from orchestrator.matrix import read_matrix
from tests.orchestrator_tests.execute_tests.search_tests.test_study import AXES, _matrix


def test_space_from_lists_ranges_and_choices(tmp_path: Path, tiny: dict) -> None:
    matrix, _ = read_matrix(_matrix(tmp_path, tiny, AXES))
    space = search_space(matrix).distributions
    assert space["recon_weight"] == optuna.distributions.FloatDistribution(0.01, 1.0, log=True)
    assert space["latent_width"] == optuna.distributions.CategoricalDistribution([8, 16])
    assert space["decoder_features"] == optuna.distributions.CategoricalDistribution(["[8, 4]", "[4, 4]"])
    whole, _ = read_matrix(_matrix(tmp_path, tiny, {"latent_width": {"low": 8, "high": 32, "log": True}}))
    assert search_space(whole).distributions["latent_width"] == optuna.distributions.IntDistribution(
        8, 32, log=True
    )


def test_where_pins_an_axis_and_cells_searches_around_one(tmp_path: Path, tiny: dict) -> None:
    matrix, _ = read_matrix(_matrix(tmp_path, tiny, AXES))
    space = search_space(matrix, where={"decoder_features": "[4, 4]", "recon_weight": "0.5"})
    assert sorted(space.distributions) == ["latent_width"]
    assert space.fixed == {"decoder_features": [4, 4], "recon_weight": 0.5}
    celled, _ = read_matrix(_matrix(tmp_path, tiny, AXES, cells={"wide": {"lr": 0.003}}))
    assert search_space(celled, cell="wide").fixed == {"lr": 0.003}


def test_params_read_to_three_significant_digits() -> None:
    assert format_params({"lr": 0.00032123456, "recon_weight": 0.1234567, "latent_width": 16}) == (
        "lr=3.21e-04, recon_weight=0.123, latent_width=16"
    )
