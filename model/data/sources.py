"""Open the data source a :class:`~model.config.DataConfig` describes: phantoms, an HDF5 file or fastMRI."""

from __future__ import annotations

from model.config import DataConfig, FastMRIData, HDF5Data, SyntheticData
from model.data.base import DataError, InMemoryPairs, PairedSource, Pairs
from model.data.fastmri import open_fastmri
from model.data.hdf5 import open_hdf5
from model.data.phantom import PhantomPairs, generate_pairs

__all__ = ["open_source", "synthesise"]


def open_source(cfg: DataConfig) -> PairedSource:
    """Open the data source ``cfg`` describes.

    Raises:
        DataError: a file is missing, malformed, or holds unusable values.
    """
    if isinstance(cfg, SyntheticData):
        ph = synthesise(cfg)
        return InMemoryPairs(Pairs(ph.a, ph.b, ph.clean_a, ph.clean_b))
    if isinstance(cfg, HDF5Data):
        return open_hdf5(cfg)
    if isinstance(cfg, FastMRIData):
        return open_fastmri(cfg)
    raise DataError(f"unknown data source {cfg!r}")


def synthesise(cfg: SyntheticData) -> PhantomPairs:
    """The phantom pairs ``cfg`` describes (what ``orch data synth`` writes and a synthetic run trains on)."""
    return generate_pairs(
        cfg.pairs,
        cfg.size,
        noise=cfg.noise_levels(),
        structural_difference=cfg.structural_difference,
        misregistration=cfg.misregistration,
        fat_suppression=cfg.fat_suppression,
        fat_suppression_variation=cfg.fat_suppression_variation,
        seed=cfg.seed,
    )
