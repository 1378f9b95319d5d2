"""Paired two-domain images: one interface over the built-in phantoms, HDF5 files and fastMRI volumes.

A *source* holds N pairs of single-channel images of shape (H, W): domain ``a`` (PD) and ``b``
(PDFS), optionally with their clean (noise-free) versions. The trainer reads batches through
:meth:`PairedSource.read`; :func:`open_source` builds the source a :class:`~model.config.DataConfig`
describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from model.config import DataConfig, FastMRIData, HDF5Data, SyntheticData

__all__ = ["DataError", "InMemoryPairs", "PairedSource", "Pairs", "open_source", "split_indices"]


class DataError(ValueError):
    """Data that cannot be trained on; the message names the file, the dataset and the problem."""


@dataclass(frozen=True)
class Pairs:
    """A batch of pairs; every array is float32 of shape (B, H, W)."""

    a: np.ndarray
    b: np.ndarray
    clean_a: np.ndarray | None = None
    clean_b: np.ndarray | None = None

    @property
    def has_clean(self) -> bool:
        return self.clean_a is not None and self.clean_b is not None


@runtime_checkable
class PairedSource(Protocol):
    """What the trainer needs from a data source."""

    n: int
    height: int
    width: int
    has_clean: bool
    domains: tuple[str, str]

    def read(self, index: np.ndarray) -> Pairs:
        """Pairs at ``index`` (any order, int array of shape (B,)), float32 (B, H, W) each."""
        ...


class InMemoryPairs:
    """A source held in memory as arrays of shape (N, H, W)."""

    def __init__(self, pairs: Pairs, domains: tuple[str, str] = ("PD", "PDFS")) -> None:
        if pairs.a.shape != pairs.b.shape or pairs.a.ndim != 3:
            raise DataError(f"domains a {pairs.a.shape} and b {pairs.b.shape} must both be (N, H, W)")
        self._pairs = pairs
        self.n, self.height, self.width = pairs.a.shape
        self.has_clean = pairs.has_clean
        self.domains = domains

    def read(self, index: np.ndarray) -> Pairs:
        p = self._pairs
        return Pairs(
            a=p.a[index],
            b=p.b[index],
            clean_a=None if p.clean_a is None else p.clean_a[index],
            clean_b=None if p.clean_b is None else p.clean_b[index],
        )


def open_source(cfg: DataConfig) -> PairedSource:
    """Open the data source ``cfg`` describes.

    Raises:
        DataError: a file is missing, malformed, or holds unusable values.
    """
    if isinstance(cfg, SyntheticData):
        from model.phantom import generate_pairs

        noise_a, noise_b = cfg.noise_levels()
        ph = generate_pairs(
            cfg.pairs,
            cfg.size,
            noise=(noise_a, noise_b),
            structural_difference=cfg.structural_difference,
            misregistration=cfg.misregistration,
            fat_suppression=cfg.fat_suppression,
            fat_suppression_variation=cfg.fat_suppression_variation,
            seed=cfg.seed,
        )
        return InMemoryPairs(Pairs(ph.a, ph.b, ph.clean_a, ph.clean_b))
    if isinstance(cfg, HDF5Data):
        from model.hdf5 import open_hdf5

        return open_hdf5(cfg)
    if isinstance(cfg, FastMRIData):
        from model.fastmri import open_fastmri

        return open_fastmri(cfg)
    raise DataError(f"unknown data source {cfg!r}")


def split_indices(n: int, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train/validation split of ``n`` pairs (the same for every run with the same data).

    Returns:
        (train, val) sorted int64 index arrays; both non-empty.
    """
    if n < 2:
        raise DataError(f"need at least 2 pairs to split into train and validation, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
