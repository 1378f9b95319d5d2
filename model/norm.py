"""The normalisation inside every UNet block (``model.norm``), and how a grouped pass runs through it.

Each ``DoubleConv`` of the encoder and the decoders is (conv 3x3 => norm => ReLU) * 2. A *path* is one
of the passes the model makes through a module: the encoder's are the two domains (``a``, ``b``), a
decoder's the same-domain reconstruction (``same``) and the cross output (``cross``). A grouped pass
stacks equal batch blocks, one per path (``paths`` names them in order). The choices:

- ``batch`` (the note's, the default): ``nn.BatchNorm2d`` (Ioffe & Szegedy 2015). In training every
  block is normalised with its own batch statistics (:func:`group_batch_norm`, as separate calls
  would); the running statistics that evaluation uses are one set per layer, so they average every
  path through it: both domains in the encoder, the same-domain and the cross path in a decoder.
- ``batch_per_path``: :class:`PathBatchNorm2d`, BatchNorm with one set of running statistics per path
  and one shared affine transform. Training computes exactly ``batch``'s numbers (each block is already
  normalised with its own batch statistics); evaluation normalises each path with its own running
  statistics instead of the mixture, the statistics-only half of domain-specific batch normalisation
  (Chang et al. 2019, "Domain-Specific Batch Normalization for Unsupervised Domain Adaptation"; AdaBN,
  Li et al. 2016). The encoder gets per-domain statistics too, for the same reason: in training it
  normalises each domain with that domain's batch statistics, so running statistics shared by the two
  domains are the same train/eval mismatch as the decoders' (see docs/remedies.md).
- ``batch_per_path_affine``: :class:`PathBatchNorm2d` with one affine transform per path as well:
  domain-specific batch normalisation in full (Chang et al. 2019 separate both the statistics and the
  affine parameters per domain). Unlike ``batch_per_path`` it changes training, since each path learns
  its own gain and shift: in a decoder the cross output gets a normalisation of its own.
- ``group``: ``nn.GroupNorm`` (Wu & He 2018, "Group Normalization") with :func:`group_norm_groups`
  groups: the largest divisor of the channel count not above 8 (8 for every width that is a multiple
  of 8, as all shipped matrices' widths are).
- ``instance``: ``nn.InstanceNorm2d(affine=True)`` (Ulyanov et al. 2016, "Instance Normalization");
  no running statistics, so evaluation normalises as training does.
- ``none``: ``nn.Identity``; the block's convolutions get a bias instead (the norm's shift is gone).

``group``, ``instance`` and ``none`` treat each sample on its own, so a grouped pass is trivially the
separate passes. Every layer is created on the module's device when the model is moved, and every
operation exists on CUDA.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DECODER_PATHS",
    "ENCODER_PATHS",
    "GROUP_NORM_MAX_GROUPS",
    "NORMS",
    "PathBatchNorm2d",
    "group_batch_norm",
    "group_norm_groups",
    "make_norm",
    "normalise",
]

#: The values of ``model.norm``.
NORMS = ("batch", "batch_per_path", "batch_per_path_affine", "group", "instance", "none")
#: The encoder's paths: the two domains.
ENCODER_PATHS = ("a", "b")
#: A decoder's paths: the same-domain reconstruction and the cross output.
DECODER_PATHS = ("same", "cross")
#: ``group``: at most this many groups per GroupNorm.
GROUP_NORM_MAX_GROUPS = 8


def group_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """``bn`` applied to each of the ``groups`` equal batch blocks of ``x`` as if called on them in turn.

    In training mode each block is normalised with its own batch statistics and the running statistics
    are updated block after block, as separate calls would (the blocks are contiguous views, so only the
    result is copied). In eval mode (running statistics) a block's result does not depend on the others,
    so one call does it.
    """
    if groups == 1 or not bn.training:
        return bn(x)
    return torch.cat([bn(block) for block in x.chunk(groups)])


def group_norm_groups(channels: int, most: int = GROUP_NORM_MAX_GROUPS) -> int:
    """The largest divisor of ``channels`` not above ``most`` (GroupNorm needs a divisor)."""
    return next(g for g in range(min(most, channels), 0, -1) if channels % g == 0)


class PathBatchNorm2d(nn.Module):
    """BatchNorm2d with one set of running statistics per path and one shared affine transform (or, with
    ``affine_per_path``, one per path).

    Buffers ``running_mean_<path>``, ``running_var_<path>`` and ``num_batches_tracked_<path>`` per path;
    parameters ``weight`` and ``bias`` as ``nn.BatchNorm2d``'s (``weight_<path>`` and ``bias_<path>`` with
    ``affine_per_path``). Called on a batch that stacks one equal block per entry of ``paths``: in training
    each block is normalised with its own batch statistics and updates its path's running statistics
    (``nn.BatchNorm2d``'s numbers, block by block); in evaluation each block is normalised with its path's
    running statistics.
    """

    def __init__(
        self,
        num_features: int,
        paths: Sequence[str],
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine_per_path: bool = False,
    ):
        super().__init__()
        self.num_features, self.paths, self.eps, self.momentum = num_features, tuple(paths), eps, momentum
        self.affine_per_path = affine_per_path
        for suffix in [f"_{path}" for path in self.paths] if affine_per_path else [""]:
            self.register_parameter(f"weight{suffix}", nn.Parameter(torch.ones(num_features)))
            self.register_parameter(f"bias{suffix}", nn.Parameter(torch.zeros(num_features)))
        for path in self.paths:
            self.register_buffer(f"running_mean_{path}", torch.zeros(num_features))
            self.register_buffer(f"running_var_{path}", torch.ones(num_features))
            self.register_buffer(f"num_batches_tracked_{path}", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        affine = ", affine_per_path=True" if self.affine_per_path else ""
        return f"{self.num_features}, paths={self.paths}, eps={self.eps}, momentum={self.momentum}{affine}"

    def forward(self, x: torch.Tensor, paths: Sequence[str | None] | None = None) -> torch.Tensor:
        """Normalise ``x`` (B, C, H, W), whose batch stacks one equal block per path in ``paths``.

        Raises:
            ValueError: a block's path is missing (None) or not one of this layer's.
        """
        paths = tuple(paths) if paths else (None,)
        if not set(paths) <= set(self.paths):
            raise ValueError(
                f"per-path BatchNorm needs the path of every batch block, one of {list(self.paths)}; "
                f"got {list(paths)} (pass paths=... to the encoder, path=... to a decoder)"
            )
        if len(paths) == 1 or (not self.training and len(set(paths)) == 1):
            return self._one(x, paths[0])
        return torch.cat([self._one(block, p) for block, p in zip(x.chunk(len(paths)), paths, strict=True)])

    def _one(self, x: torch.Tensor, path: str) -> torch.Tensor:
        """``x`` (B, C, H, W) normalised on ``path``'s statistics, as ``nn.BatchNorm2d.forward`` does."""
        if self.training:
            tracked = getattr(self, f"num_batches_tracked_{path}")
            tracked.add_(1)
        suffix = f"_{path}" if self.affine_per_path else ""
        return F.batch_norm(
            x,
            getattr(self, f"running_mean_{path}"),
            getattr(self, f"running_var_{path}"),
            getattr(self, f"weight{suffix}"),
            getattr(self, f"bias{suffix}"),
            self.training,
            self.momentum,
            self.eps,
        )


def make_norm(kind: str, channels: int, paths: Sequence[str]) -> nn.Module:
    """The normalisation layer ``kind`` (one of :data:`NORMS`) for ``channels`` channels; ``paths`` are
    the passes through it (used by the per-path norms only)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "batch_per_path":
        return PathBatchNorm2d(channels, paths)
    if kind == "batch_per_path_affine":
        return PathBatchNorm2d(channels, paths, affine_per_path=True)
    if kind == "group":
        return nn.GroupNorm(group_norm_groups(channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, not {kind!r}")


def normalise(norm: nn.Module, x: torch.Tensor, paths: Sequence[str | None] | None = None) -> torch.Tensor:
    """``norm`` applied to ``x`` (B, C, H, W), whose batch stacks one equal block per entry of ``paths``
    (default: one block), with the numbers of calling it on each block in turn.

    BatchNorm normalises each block with its own statistics (:func:`group_batch_norm`);
    :class:`PathBatchNorm2d` also routes each block to its path's running statistics; every other norm
    treats each sample on its own, so one call does it.
    """
    if isinstance(norm, PathBatchNorm2d):
        return norm(x, paths)
    if isinstance(norm, nn.BatchNorm2d):
        return group_batch_norm(norm, x, len(paths) if paths else 1)
    return norm(x)
