"""The types every data source shares: a batch of pairs, the source interface, the in-memory source.

A *source* holds N pairs of single-channel images of shape (H, W): domain ``a`` (PD) and ``b``
(PDFS), optionally with their clean (noise-free) versions. The trainer reads batches through
:meth:`PairedSource.read`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["DataError", "InMemoryPairs", "PairedSource", "Pairs", "split_indices"]


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
