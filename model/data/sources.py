"""Open the data source a :class:`~model.config.DataConfig` describes: phantoms, an HDF5 file or fastMRI."""

from __future__ import annotations

from dataclasses import dataclass

from model.config import DataConfig, FastMRIData, HDF5Data, SyntheticData
from model.data.base import DataError, InMemoryPairs, PairedSource, Pairs
from model.data.fastmri import open_fastmri
from model.data.hdf5 import open_hdf5
from model.data.phantom import PhantomPairs, generate_pairs

__all__ = ["SourceShape", "open_source", "probe_source", "source_name", "synthesise"]


@dataclass(frozen=True)
class SourceShape:
    """What a run must know of its data before training: where it is, its pairs and their image size."""

    where: str  # the file or folder (or the phantoms) for messages
    n: int
    height: int
    width: int

    @classmethod
    def of(cls, cfg: DataConfig, source: PairedSource) -> SourceShape:
        """The shape of ``source``, opened from ``cfg``."""
        return cls(source_name(cfg), source.n, source.height, source.width)


def source_name(cfg: DataConfig) -> str:
    """How messages name the data ``cfg`` describes: its file or folder, or the synthetic phantoms."""
    if isinstance(cfg, HDF5Data):
        return str(cfg.path)
    if isinstance(cfg, FastMRIData):
        return str(cfg.directory)
    return "data (synthetic phantoms)"


def probe_source(cfg: DataConfig) -> SourceShape:
    """Open and check the source ``cfg`` describes as a run opens it, without loading it into memory.

    An HDF5 file gets every check of :func:`~model.data.open_hdf5` (and ``orch data inspect``): file,
    datasets, 3-D float arrays of one shape, no NaN or Inf (scanned block by block); fastMRI volumes are
    read for their metadata; the phantoms are valid by construction and only sized here.

    Raises:
        DataError: the source cannot be used; the message names the file, the dataset and the problem.
    """
    if isinstance(cfg, SyntheticData):
        return SourceShape(source_name(cfg), cfg.pairs, cfg.size, cfg.size)
    source = open_source(cfg.model_copy(update={"cache_mb": 0}))  # streamed: checked, not loaded
    try:
        return SourceShape.of(cfg, source)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


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
