"""The cross-domain autoencoder of docs/note.md as a standalone library: no tracking, no orchestration.

- :mod:`model.config`: :class:`RunConfig` (model + trainer + data), read from the note's JSON.
- :mod:`model.unet`: the shared encoder, the decoders' ``Up`` (concat: the original; add: plan A) and
  :class:`CrossDomainAE`, whose ``forward`` routes the skips.
- :mod:`model.norm`: the blocks' norms (``model.norm``) and how a grouped pass runs through them.
- :mod:`model.discriminator`: plan D's patch discriminator.
- :mod:`model.metrics`: L1, PSNR, the noise leak.
- :mod:`model.losses`: the content term's forms (``trainer.content_loss``).
- :mod:`model.trainer`: the losses and :func:`fit`, the only epoch loop.
- :mod:`model.data`: phantoms, HDF5 files, fastMRI volumes behind one interface.
- :mod:`model.diagnose`: the diagnostics.

Names that need torch are imported on first use, so that ``import model.config`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from model.config import ConfigError, RunConfig, load_config

__all__ = [
    "ConfigError",
    "CrossDomainAE",
    "EpochResult",
    "FitResult",
    "Passes",
    "RunConfig",
    "Trainer",
    "fit",
    "load_config",
]

_LAZY = {
    "CrossDomainAE": "model.unet",
    "Passes": "model.unet",
    "EpochResult": "model.trainer",
    "FitResult": "model.trainer",
    "Trainer": "model.trainer",
    "fit": "model.trainer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
