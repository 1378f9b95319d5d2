"""PD / PDFS pseudo-pairs from a directory of fastMRI knee volumes.

fastMRI knee files hold one volume each: a reconstruction dataset (``reconstruction_rss`` for
multi-coil, ``reconstruction_esc`` for single-coil) of shape (slices, H, W) and an attribute
``acquisition``: ``CORPD_FBK`` (coronal PD) or ``CORPDFS_FBK`` (coronal PD, fat-suppressed). The two
contrasts come from different examinations, so no true pairs exist; this module builds *pseudo-pairs*:

1. volumes are paired PD with PDFS, from a pairing CSV (``data.pairing``: rows ``PD file, PDFS file``,
   header optional, paths relative to the data directory) or else in sorted file-name order of each
   acquisition (the counts must then be equal);
2. each volume pair gives ``min(slices_pd, slices_pdfs)`` slice pairs, centre-aligned (slice
   ``off_pd + i`` with ``off_pdfs + i``, each offset ``(slices - min) // 2``);
3. every slice is divided by its volume's maximum (the file's ``max`` attribute when present, as the
   fastMRI challenge uses it for the SSIM data range; else computed), centre-cropped to
   ``crop`` x ``crop`` exactly as fastMRI's ``center_crop``, and optionally resized to ``size``
   (bilinear, antialiased).

Slices are read per volume on demand; the whole set is loaded into memory when it fits ``cache_mb``.
"""

from __future__ import annotations

import csv
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from model.config import FastMRIData
from model.data.base import DataError, InMemoryPairs, PairedSource, Pairs

__all__ = ["ACQUISITIONS", "FastMRIPairs", "center_crop", "open_fastmri"]

ACQUISITIONS: dict[str, str] = {"PD": "CORPD_FBK", "PDFS": "CORPDFS_FBK"}
"""fastMRI ``acquisition`` attribute of each domain."""

_MIB = 2**20
_MAX_OPEN = 16  # file handles kept open per process


def center_crop(data: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre crop of the last two dimensions, as ``fastmri.data.transforms.center_crop``.

    Args:
        data: array of shape (..., H, W).
        shape: (h, w) with 0 < h <= H and 0 < w <= W.

    Returns:
        A view of shape (..., h, w).

    Raises:
        ValueError: the crop does not fit.
    """
    if not (0 < shape[0] <= data.shape[-2] and 0 < shape[1] <= data.shape[-1]):
        raise ValueError(f"crop {shape} does not fit an image of {data.shape[-2:]}")
    top = (data.shape[-2] - shape[0]) // 2
    left = (data.shape[-1] - shape[1]) // 2
    return data[..., top : top + shape[0], left : left + shape[1]]


@dataclass(frozen=True)
class _Volume:
    path: Path
    acquisition: str
    slices: int
    height: int
    width: int
    max: float | None  # the file's `max` attribute, if any


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _scan_volume(path: Path, key: str, crop: int) -> _Volume:
    """Read a volume's metadata and check it can be used.

    Raises:
        DataError: naming the file and the problem.
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise DataError(f"{path}: not an HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: cannot be read as HDF5 ({exc})") from None
    with f:
        acq = _text(f.attrs.get("acquisition"))
        if acq is None:
            raise DataError(f"{path}: no 'acquisition' attribute (expected CORPD_FBK or CORPDFS_FBK)")
        ds = f.get(key)
        if not isinstance(ds, h5py.Dataset):
            available = ", ".join(k for k in f if isinstance(f[k], h5py.Dataset)) or "none"
            raise DataError(f"{path}: dataset '{key}' not found; available: {available}")
        if ds.ndim != 3 or 0 in ds.shape:
            raise DataError(f"{path}: dataset '{key}' has shape {ds.shape}; expected (slices, H, W)")
        if not np.issubdtype(ds.dtype, np.floating):
            raise DataError(f"{path}: dataset '{key}' has dtype {ds.dtype}; expected a float dtype")
        if crop > ds.shape[1] or crop > ds.shape[2]:
            raise DataError(f"{path}: crop {crop} is larger than the images of '{key}' {ds.shape[1:]}")
        vmax = f.attrs.get("max")
        vmax = float(vmax) if vmax is not None and np.isfinite(vmax) and float(vmax) > 0 else None
        return _Volume(path, acq, ds.shape[0], ds.shape[1], ds.shape[2], vmax)


def _read_pairing(csv_path: Path, directory: Path) -> list[tuple[Path, Path, int]]:
    """(PD path, PDFS path, CSV line) per row of a pairing CSV; a header row is skipped.

    Raises:
        DataError: the CSV is missing, empty, or a row does not hold two file names.
    """
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: pairing CSV not found")
    rows: list[tuple[Path, Path, int]] = []
    with csv_path.open(newline="") as fh:
        for line, row in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in row if c.strip()]
            if not cells or cells[0].startswith("#"):
                continue
            looks_like_files = any(c.lower().endswith((".h5", ".hdf5")) for c in cells)
            if not rows and not looks_like_files and len(cells) == 2:
                continue  # header, e.g. "pd,pdfs"
            if len(cells) != 2:
                raise DataError(
                    f"{csv_path}, line {line}: expected 2 columns (PD file, PDFS file), got {len(cells)}: "
                    f"{','.join(row)!r}"
                )
            pd_file, fs_file = (Path(c) if Path(c).is_absolute() else directory / c for c in cells)
            rows.append((pd_file, fs_file, line))
    if not rows:
        raise DataError(f"{csv_path}: no (PD file, PDFS file) rows")
    return rows


def _pair_volumes(cfg: FastMRIData) -> list[tuple[_Volume, _Volume]]:
    directory = Path(cfg.directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such data directory")
    if cfg.pairing is not None:
        pairs = []
        for pd_file, fs_file, line in _read_pairing(Path(cfg.pairing), directory):
            vols = []
            for file, domain in ((pd_file, "PD"), (fs_file, "PDFS")):
                if not file.is_file():
                    raise DataError(f"{cfg.pairing}, line {line}: {domain} file {file} not found")
                vol = _scan_volume(file, cfg.key, cfg.crop)
                if vol.acquisition != ACQUISITIONS[domain]:
                    raise DataError(
                        f"{cfg.pairing}, line {line}: {file} is {vol.acquisition}, but the {domain} column "
                        f"needs {ACQUISITIONS[domain]}"
                    )
                vols.append(vol)
            pairs.append((vols[0], vols[1]))
        return pairs
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".h5", ".hdf5") and p.is_file())
    if not files:
        raise DataError(f"{directory}: no .h5 volumes")
    vols = [_scan_volume(p, cfg.key, cfg.crop) for p in files]
    pd = [v for v in vols if v.acquisition == ACQUISITIONS["PD"]]
    fs = [v for v in vols if v.acquisition == ACQUISITIONS["PDFS"]]
    if not pd or not fs or len(pd) != len(fs):
        raise DataError(
            f"{directory}: {len(pd)} PD ({ACQUISITIONS['PD']}) and {len(fs)} PDFS ({ACQUISITIONS['PDFS']}) "
            f"volumes; sorted-order pairing needs equal, non-zero counts (give data.pairing, a CSV of "
            f"PD file, PDFS file, to choose the pairs)"
        )
    return list(zip(pd, fs, strict=True))


class FastMRIPairs:
    """Pseudo-pairs read slice by slice from fastMRI volumes; one set of file handles per process.

    ``volumes`` are the volume files; pair ``i`` is slice ``slice_a[i]`` of volume ``vol_a[i]`` (PD) with
    slice ``slice_b[i]`` of volume ``vol_b[i]`` (PDFS).
    """

    has_clean = False
    domains = ("PD", "PDFS")

    def __init__(
        self,
        volumes: list[_Volume],
        vol_a: np.ndarray,
        slice_a: np.ndarray,
        vol_b: np.ndarray,
        slice_b: np.ndarray,
        *,
        key: str,
        crop: int,
        size: int | None,
    ) -> None:
        self.volumes = volumes
        self._index = {"a": (vol_a, slice_a), "b": (vol_b, slice_b)}
        self.key, self.crop, self.size = key, crop, size
        self.n = len(vol_a)
        self.height = self.width = size or crop
        self._files: OrderedDict[int, h5py.File] = OrderedDict()
        self._max: dict[int, float] = {i: v.max for i, v in enumerate(volumes) if v.max is not None}
        self._pid: int | None = None

    def _file(self, vol: int) -> h5py.File:
        if self._pid != os.getpid():  # forked or unpickled: the parent's handles are not ours
            self._files, self._pid = OrderedDict(), os.getpid()
        f = self._files.get(vol)
        if f is None:
            f = self._files[vol] = h5py.File(self.volumes[vol].path, "r")
            if len(self._files) > _MAX_OPEN:
                self._files.popitem(last=False)[1].close()
        self._files.move_to_end(vol)
        return f

    def _volume_max(self, vol: int) -> float:
        if vol not in self._max:
            ds = self._file(vol)[self.key]
            vmax = max(float(np.max(ds[i : i + 8])) for i in range(0, ds.shape[0], 8))
            self._max[vol] = vmax if vmax > 0 else 1.0
        return self._max[vol]

    def _slices(self, vol: int, slices: np.ndarray) -> np.ndarray:
        """Normalised, cropped, resized slices (increasing indices) of one volume: float32 (k, h, w)."""
        data = np.asarray(self._file(vol)[self.key][slices], np.float32)  # (k, H, W)
        data = center_crop(data, (self.crop, self.crop)) / np.float32(self._volume_max(vol))
        if self.size is not None and self.size != self.crop:
            import torch  # only resizing needs it; keeps `import model.data` light
            import torch.nn.functional as F

            t = torch.from_numpy(np.ascontiguousarray(data))[:, None]  # (k, 1, crop, crop)
            t = F.interpolate(
                t, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
            data = t[:, 0].numpy()  # (k, size, size)
        return np.ascontiguousarray(data, np.float32)

    def _domain(self, which: str, index: np.ndarray) -> np.ndarray:
        vols, slices = self._index[which]
        out = np.empty((len(index), self.height, self.width), np.float32)
        v_sel, s_sel = vols[index], slices[index]
        for vol in np.unique(v_sel):
            rows = np.nonzero(v_sel == vol)[0]
            unique, inverse = np.unique(s_sel[rows], return_inverse=True)
            out[rows] = self._slices(int(vol), unique)[inverse]
        return out

    def read(self, index: np.ndarray) -> Pairs:
        """Pairs at ``index`` (int array (B,), any order), float32 (B, H, W) each."""
        index = np.asarray(index, np.int64).reshape(-1)
        if index.size and (index.min() < -self.n or index.max() >= self.n):
            raise IndexError(f"index out of range for {self.n} pairs")
        index = np.where(index < 0, index + self.n, index)
        return Pairs(a=self._domain("a", index), b=self._domain("b", index))

    def close(self) -> None:
        """Close this process's file handles."""
        if self._pid == os.getpid():
            for f in self._files.values():
                f.close()
        self._files = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"], state["_pid"] = OrderedDict(), None
        return state

    def __len__(self) -> int:
        return self.n


def open_fastmri(cfg: FastMRIData) -> PairedSource:
    """PD / PDFS pseudo-pairs from the fastMRI volumes in ``cfg.directory``.

    Returns:
        An :class:`~model.data.InMemoryPairs` when all pairs fit in ``cfg.cache_mb`` MiB as float32,
        else a :class:`FastMRIPairs` reading slices per volume on demand. ``has_clean`` is False and
        the domains are ``("PD", "PDFS")``; images are float32 of shape (N, size or crop, size or crop).

    Raises:
        DataError: the directory is missing or holds no volumes; a volume is not HDF5, lacks the
            dataset or the ``acquisition`` attribute, or is smaller than the crop; the PD and PDFS
            counts differ without a pairing CSV; or a CSV row is malformed or names a missing file or a
            volume of the wrong acquisition (the message names the CSV line and the file).
    """
    pairs = _pair_volumes(cfg)
    volumes: list[_Volume] = []
    where: dict[Path, int] = {}
    cols: list[list[int]] = [[], [], [], []]
    for pd, fs in pairs:
        ids = []
        for vol in (pd, fs):
            if vol.path not in where:
                where[vol.path] = len(volumes)
                volumes.append(vol)
            ids.append(where[vol.path])
        k = min(pd.slices, fs.slices)
        cols[0] += [ids[0]] * k
        cols[1] += list(range((pd.slices - k) // 2, (pd.slices - k) // 2 + k))
        cols[2] += [ids[1]] * k
        cols[3] += list(range((fs.slices - k) // 2, (fs.slices - k) // 2 + k))
    src = FastMRIPairs(
        volumes, *(np.asarray(c, np.int64) for c in cols), key=cfg.key, crop=cfg.crop, size=cfg.size
    )
    if 2 * src.n * src.height * src.width * 4 <= cfg.cache_mb * _MIB:
        batch = src.read(np.arange(src.n))
        src.close()
        return InMemoryPairs(batch, domains=FastMRIPairs.domains)
    return src
