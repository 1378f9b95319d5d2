"""The diagnostics of docs/note.md: why does the cross loss not fall?

:func:`diagnose` trains a config for a few steps and measures, at the start, at the end (and every
``every`` steps), one figure per suspect the note names:

- **Latents** (hypothesis 1): the distance between ``z_a`` and ``z_b`` (absolute, relative to ``|z|``
  and to unpaired latents), the spread of ``z`` over the batch (tiny distance *and* tiny spread = a
  collapsed latent), and a *domain probe*: the held-out accuracy of a linear classifier telling ``z_a``
  from ``z_b`` (50% = no domain information left in the latent).
- **Errors**: recon and cross per direction.
- **Gradients** (Problem 2): for each loss term separately, the gradient norm it sends to the encoder,
  each decoder and the discriminator, and the ratio cross / recon on each decoder.
- **Skip reliance** (Problem 1): the relative L1 change of a decoder's same-domain output when its skips
  are replaced by what the cross path gets (none under ``no_skip``, the other domain's under
  ``use_source``); 0 = the decoder ignores its skips, 1 = its output is all skip.
- **Latent-only capacity** (hypothesis 3): the recon error of each decoder fed the latent alone.
- **Data** (hypothesis 2): on data with clean images, how much of one domain's clean image the best
  per-pixel intensity mapping of the other's leaves unexplained.

Conventions (they matter for reading the numbers):

- Measurements use fixed pairs (the first validation pairs; gradients: the first training batch) so
  that start and end compare like with like.
- BatchNorm runs on batch statistics, as in a training step, and its running buffers are restored
  afterwards: measuring never changes the model, and a short run is not judged through running
  statistics that have barely warmed up.
- Gradient norms are L2 norms over a module's parameters. ``weighted`` is the gradient of
  ``weight * term`` as it enters the total loss (a weight of 0 gives exactly 0); ``unweighted`` is the
  gradient of the term alone (what it would send at weight 1).

Modules: :mod:`~model.diagnose.measures` (the measurements), :mod:`~model.diagnose.snapshot` (all of
them at one step), :mod:`~model.diagnose.readings` (what they mean), :mod:`~model.diagnose.run` (the
loop), :mod:`~model.diagnose.plots` (figures). Each is a plain library function usable from a notebook
(:func:`measure` on a trainer you already have, :func:`latent_stats`, :func:`domain_probe`,
:func:`gradient_norms`, :func:`skip_reliance`, :func:`data_content`, :func:`plot_report`); nothing here
imports tracking code.
"""

from model.diagnose.data_content import DataContent, best_intensity_mapping, data_content
from model.diagnose.measures import (
    MODULES,
    TERMS,
    VARIANTS,
    GradientNorms,
    LatentStats,
    ProbeResult,
    domain_probe,
    gradient_norms,
    latent_stats,
    pool_latent,
    skip_reliance,
)
from model.diagnose.plots import plot_report
from model.diagnose.readings import DiagnosisReport, Reading
from model.diagnose.run import diagnose
from model.diagnose.snapshot import Snapshot, measure

__all__ = [
    "MODULES",
    "TERMS",
    "VARIANTS",
    "DataContent",
    "DiagnosisReport",
    "GradientNorms",
    "LatentStats",
    "ProbeResult",
    "Reading",
    "Snapshot",
    "best_intensity_mapping",
    "data_content",
    "diagnose",
    "domain_probe",
    "gradient_norms",
    "latent_stats",
    "measure",
    "plot_report",
    "pool_latent",
    "skip_reliance",
]
