"""The pairs of one split (train or validation) as batches of tensors on the run's device."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from model.data import InMemoryPairs, PairedSource, Pairs

__all__ = ["Batches"]


class Batches:
    """Batches of one split; preloaded on the device when the source is in memory."""

    def __init__(self, source: PairedSource, index: np.ndarray, device: torch.device) -> None:
        self.source, self.index, self.device = source, index, device
        self._tensors: dict[str, torch.Tensor] | None = None
        if isinstance(source, InMemoryPairs):
            self._tensors = self._to_tensors(source.read(index))

    def __len__(self) -> int:
        return len(self.index)

    def _to_tensors(self, p: Pairs) -> dict[str, torch.Tensor]:
        out = {"a": p.a, "b": p.b}
        if p.has_clean:
            out |= {"clean_a": p.clean_a, "clean_b": p.clean_b}
        return {
            k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).unsqueeze(1).to(self.device)
            for k, v in out.items()
        }  # (B, 1, H, W)

    def take(self, positions: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        """Pairs at ``positions`` within this split."""
        if self._tensors is not None:
            pos = torch.as_tensor(positions, device=self.device)
            return {k: v[pos] for k, v in self._tensors.items()}
        return self._to_tensors(self.source.read(self.index[np.asarray(positions)]))

    def sequential(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            yield self.take(np.arange(start, min(start + batch_size, len(self))))
