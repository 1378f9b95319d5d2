"""Paired two-domain images: one interface over the built-in phantoms, HDF5 files and fastMRI volumes.

- :mod:`model.data.base`: :class:`Pairs`, the :class:`PairedSource` interface, :class:`InMemoryPairs`,
  :class:`DataError` and the fixed train/validation split.
- :mod:`model.data.sources`: :func:`open_source`, the source a :class:`~model.config.DataConfig` describes.
- :mod:`model.data.phantom`: synthetic PD/PDFS knee phantoms with known clean images.
- :mod:`model.data.hdf5`: the paired HDF5 file contract (write, open, inspect, preview).
- :mod:`model.data.fastmri`: PD/PDFS pseudo-pairs from fastMRI knee volumes.
"""

from model.data.base import DataError, InMemoryPairs, PairedSource, Pairs, split_indices
from model.data.hdf5 import HDF5Pairs, inspect_file, open_hdf5, save_preview, write_pairs
from model.data.phantom import PhantomPairs, generate_pairs
from model.data.sources import SourceShape, open_source, probe_source, source_name, synthesise

__all__ = [
    "DataError",
    "HDF5Pairs",
    "InMemoryPairs",
    "PairedSource",
    "Pairs",
    "PhantomPairs",
    "SourceShape",
    "generate_pairs",
    "inspect_file",
    "open_hdf5",
    "open_source",
    "probe_source",
    "save_preview",
    "source_name",
    "split_indices",
    "synthesise",
    "write_pairs",
]
