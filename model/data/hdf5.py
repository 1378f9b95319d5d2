"""Paired slices in one HDF5 file: write, validate, open (in memory or streamed), inspect, preview.

The contract (``docs/data.md``): datasets ``a`` and ``b`` of float dtype and shape (N, H, W) with the
same N, H and W; optional ``clean_a`` and ``clean_b`` of the same shape; attrs ``domain_a``,
``domain_b`` (e.g. ``"PD"``, ``"PDFS"``) and ``source``. Dataset names are configurable
(:class:`~model.config.HDF5Keys`) so existing files can be read as they are.

:func:`open_hdf5` checks everything up front and raises :class:`~model.data.DataError` with a message
naming the file, the dataset and what is wrong. A file that fits in ``cache_mb`` is loaded into memory;
a bigger one is streamed by :class:`HDF5Pairs`, which keeps one file handle per process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from model.config import HDF5Data, HDF5Keys
from model.data.base import DataError, InMemoryPairs, PairedSource, Pairs

__all__ = ["HDF5Pairs", "inspect_file", "open_hdf5", "save_preview", "write_pairs"]

_SCAN_BYTES = 16 * 2**20  # slices read at a time when scanning a dataset for NaN / Inf
_MIB = 2**20


# -------------------------------------------------------------------------------------------- writing


def _attr_value(value: Any) -> Any:
    """An HDF5-storable attribute: numbers, strings and bools as they are, anything else as JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, default=str)


def write_pairs(
    path: str | Path,
    pairs: Pairs,
    *,
    domains: tuple[str, str] = ("PD", "PDFS"),
    source: str,
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Write ``pairs`` to a new HDF5 file following the data contract.

    The file is written next to ``path`` under a temporary name and renamed when complete, so a
    failure leaves nothing behind; an existing ``path`` is replaced.

    Args:
        path: the file to write.
        pairs: arrays of shape (N, H, W) each; written as float32, chunked one slice per chunk.
            ``clean_a`` / ``clean_b`` are written when present.
        domains: names of domain a and b (attrs ``domain_a``, ``domain_b``).
        source: what made the data (attr ``source``), e.g. ``"model.data.phantom"``.
        attrs: further attributes (e.g. every generator parameter); values that are not numbers,
            strings or bools are stored JSON-encoded.

    Raises:
        DataError: the arrays are not (N, H, W) with matching shapes, or N is 0.
    """
    path = Path(path)
    arrays = {"a": pairs.a, "b": pairs.b}
    if pairs.has_clean:
        arrays.update(clean_a=pairs.clean_a, clean_b=pairs.clean_b)
    shape = np.shape(pairs.a)
    for key, arr in arrays.items():
        if np.ndim(arr) != 3 or np.shape(arr) != shape:
            raise DataError(
                f"{path}: dataset '{key}' has shape {np.shape(arr)}, expected (N, H, W) = {shape}"
            )
    if shape[0] == 0:
        raise DataError(f"{path}: no pairs to write")
    reserved = {"domain_a": domains[0], "domain_b": domains[1], "source": source}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            for key, arr in arrays.items():
                f.create_dataset(key, data=np.asarray(arr, np.float32), chunks=(1, *shape[1:]))
            for key, value in {**dict(attrs or {}), **reserved}.items():
                f.attrs[key] = _attr_value(value)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------- checks


def _open_file(path: Path) -> h5py.File:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: cannot be read (permission denied)")
    try:
        if not h5py.is_hdf5(path):
            raise DataError(f"{path}: not an HDF5 file")
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: cannot be read as HDF5 ({exc})") from None


def _datasets(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _blocks(ds: h5py.Dataset) -> Iterator[tuple[int, np.ndarray]]:
    """(first slice index, block of slices) over a 3-D dataset, about _SCAN_BYTES at a time."""
    per = max(1, _SCAN_BYTES // max(1, int(np.prod(ds.shape[1:])) * ds.dtype.itemsize))
    for lo in range(0, ds.shape[0], per):
        yield lo, ds[lo : lo + per]


def _nonfinite(ds: h5py.Dataset) -> tuple[int, int, int | None]:
    """NaN count, Inf count and the first slice holding either, scanning block by block."""
    nan = inf = 0
    first: int | None = None
    for lo, block in _blocks(ds):
        bad_nan, bad_inf = np.isnan(block), np.isinf(block)
        nan += int(bad_nan.sum())
        inf += int(bad_inf.sum())
        if first is None and (nan or inf):
            rows = np.nonzero((bad_nan | bad_inf).reshape(len(block), -1).any(axis=1))[0]
            first = lo + int(rows[0])
    return nan, inf, first


def _problems(
    f: h5py.File, path: Path, keys: HDF5Keys, explicit: set[str], *, scan: bool = True
) -> tuple[list[str], bool]:
    """Everything wrong with ``f`` under ``keys``, one message per problem, and whether clean data is usable.

    ``explicit`` names the clean keys that must be there (:func:`_required_clean`); the default clean keys
    that are absent just mean no clean data.
    """
    problems: list[str] = []
    available = ", ".join(_datasets(f)) or "none"
    shape: tuple[int, ...] | None = None
    shape_key = ""
    clean_ok = True
    roles = [("a", keys.a), ("b", keys.b), ("clean_a", keys.clean_a), ("clean_b", keys.clean_b)]
    for role, key in roles:
        optional = role.startswith("clean")
        if key is None:
            clean_ok = clean_ok and not optional
            continue
        obj = f.get(key)
        if obj is None:
            if optional and role not in explicit:
                clean_ok = False
                continue
            problems.append(f"{path}: dataset '{key}' (domain {role}) not found; available: {available}")
            clean_ok = clean_ok and not optional
            continue
        if not isinstance(obj, h5py.Dataset):
            problems.append(f"{path}: '{key}' (domain {role}) is a group, not a dataset")
            continue
        if obj.ndim != 3:
            problems.append(f"{path}: dataset '{key}' has shape {obj.shape}; expected 3-D (N, H, W)")
            continue
        if not np.issubdtype(obj.dtype, np.floating):
            problems.append(f"{path}: dataset '{key}' has dtype {obj.dtype}; expected a float dtype")
            continue
        if 0 in obj.shape:
            problems.append(f"{path}: dataset '{key}' is empty (shape {obj.shape})")
            continue
        if shape is None:
            shape, shape_key = obj.shape, key
        elif obj.shape != shape:
            problems.append(
                f"{path}: dataset '{key}' has shape {obj.shape} but '{shape_key}' has {shape}; "
                "paired datasets need the same (N, H, W)"
            )
            continue
        if scan:
            try:
                nan, inf, first = _nonfinite(obj)
            except OSError as exc:  # e.g. external storage that is gone
                problems.append(f"{path}: dataset '{key}' cannot be read ({exc})")
                continue
            if nan or inf:
                problems.append(
                    f"{path}: dataset '{key}' holds {nan} NaN and {inf} Inf values (first in slice {first})"
                )
    return problems, clean_ok


def _required_clean(keys: HDF5Keys) -> set[str]:
    """The clean roles whose dataset must exist: those renamed from their default (``clean_a``, ``clean_b``).

    Decided by the names alone, not by which fields a config set, so that a config behaves the same after
    any round trip (a worker's copy, ``config.json``, a checkpoint): the default names are optional.
    """
    return {role for role in ("clean_a", "clean_b") if getattr(keys, role) not in (None, role)}


def _domains(f: h5py.File) -> tuple[str, str]:
    def text(v: Any, default: str) -> str:
        if v is None:
            return default
        return v.decode() if isinstance(v, bytes) else str(v)

    return text(f.attrs.get("domain_a"), "a"), text(f.attrs.get("domain_b"), "b")


# ---------------------------------------------------------------------------------------------- source


class HDF5Pairs:
    """Pairs streamed from an HDF5 file, one open handle per process.

    The handle is opened on the first :meth:`read` and reopened in a forked or unpickled copy (the
    source stores the path and the pid that opened it), so it is safe to hand to worker processes.
    """

    def __init__(
        self,
        path: Path,
        keys: HDF5Keys,
        *,
        n: int,
        height: int,
        width: int,
        has_clean: bool,
        domains: tuple[str, str],
    ) -> None:
        self.path = Path(path)
        self.keys = keys
        self.n, self.height, self.width = n, height, width
        self.has_clean = has_clean
        self.domains = domains
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")  # a forked child must not share the parent's handle
            self._pid = os.getpid()
        return self._file

    def read(self, index: np.ndarray) -> Pairs:
        """Pairs at ``index`` (int array (B,), any order, repeats allowed), float32 (B, H, W) each."""
        index = np.asarray(index, np.int64).reshape(-1)
        if index.size and (index.min() < -self.n or index.max() >= self.n):
            raise IndexError(f"{self.path}: index out of range for {self.n} pairs")
        index = np.where(index < 0, index + self.n, index)
        unique, inverse = np.unique(index, return_inverse=True)  # h5py needs increasing indices
        f = self._handle()

        def take(key: str | None) -> np.ndarray:
            block = f[key][unique] if unique.size else np.empty((0, self.height, self.width))
            return np.asarray(block, np.float32)[inverse]  # (B, H, W) in the requested order

        return Pairs(
            a=take(self.keys.a),
            b=take(self.keys.b),
            clean_a=take(self.keys.clean_a) if self.has_clean else None,
            clean_b=take(self.keys.clean_b) if self.has_clean else None,
        )

    def close(self) -> None:
        """Close this process's handle (a later read reopens it)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (
            f"HDF5Pairs({str(self.path)!r}, n={self.n}, {self.height}x{self.width}, clean={self.has_clean})"
        )


def open_hdf5(cfg: HDF5Data) -> PairedSource:
    """Open the paired slices ``cfg`` describes, after checking the whole file.

    Returns:
        An :class:`~model.data.InMemoryPairs` when every dataset used fits in ``cfg.cache_mb`` MiB as
        float32, else an :class:`HDF5Pairs` that reads slices on demand.

    Raises:
        DataError: the file is missing or not HDF5; a dataset is missing (the message lists the
            available ones), not 3-D, not float, empty, of a different shape than its pair, or holds
            NaN / Inf values; or a clean key renamed in ``cfg.keys`` (not ``clean_a`` / ``clean_b``) is
            absent.
    """
    path = Path(cfg.path)
    explicit = _required_clean(cfg.keys)
    with _open_file(path) as f:
        problems, clean_ok = _problems(f, path, cfg.keys, explicit)
        if problems:
            raise DataError("; ".join(problems))
        n, height, width = f[cfg.keys.a].shape
        domains = _domains(f)
        keys = [cfg.keys.a, cfg.keys.b] + ([cfg.keys.clean_a, cfg.keys.clean_b] if clean_ok else [])
        if len(keys) * n * height * width * 4 <= cfg.cache_mb * _MIB:
            arrays = [np.asarray(f[k][()], np.float32) for k in keys]
            return InMemoryPairs(Pairs(*arrays), domains=domains)
    return HDF5Pairs(path, cfg.keys, n=n, height=height, width=width, has_clean=clean_ok, domains=domains)


# ---------------------------------------------------------------------------------------- inspection


def _attr_plain(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _stats(ds: h5py.Dataset) -> dict[str, Any]:
    info: dict[str, Any] = {"shape": tuple(ds.shape), "dtype": str(ds.dtype), "chunks": ds.chunks}
    if ds.ndim == 0 or ds.size == 0 or not np.issubdtype(ds.dtype, np.number):
        return info
    try:
        return {**info, **_value_stats(ds)}
    except OSError:  # unreadable (e.g. external storage that is gone): _problems says so where it matters
        return info


def _value_stats(ds: h5py.Dataset) -> dict[str, Any]:
    """min, max, mean of the finite values and the NaN / Inf counts, reading block by block."""
    lo, hi, total, count, nan, inf = np.inf, -np.inf, 0.0, 0, 0, 0
    blocks = _blocks(ds) if ds.ndim >= 2 else iter([(0, ds[()])])
    for _, block in blocks:
        block = np.asarray(block, np.float64)
        finite = np.isfinite(block)
        nan += int(np.isnan(block).sum())
        inf += int(np.isinf(block).sum())
        if finite.any():
            vals = block[finite]
            lo, hi = min(lo, float(vals.min())), max(hi, float(vals.max()))
            total += float(vals.sum())
            count += vals.size
    return {
        "min": lo if count else None,
        "max": hi if count else None,
        "mean": total / count if count else None,
        "nan": nan,
        "inf": inf,
    }


def inspect_file(path: str | Path, keys: HDF5Keys = HDF5Keys()) -> dict[str, Any]:  # noqa: B008
    """Describe an HDF5 file of paired slices without loading it whole.

    Returns:
        ``{"path", "datasets": {name: {shape, dtype, chunks, min, max, mean, nan, inf}}, "attrs",
        "keys": {role: name}, "pairs": N | None, "height", "width", "has_clean", "domains",
        "problems": [message, ...]}``; ``problems`` is empty when :func:`open_hdf5` would accept the
        file with these keys (same checks, same messages; a clean key renamed in ``keys`` must
        exist).

    Raises:
        DataError: the file is missing or not HDF5.
    """
    path = Path(path)
    explicit = _required_clean(keys)
    with _open_file(path) as f:
        problems, clean_ok = _problems(f, path, keys, explicit)
        datasets = {name: _stats(f[name]) for name in _datasets(f)}
        a = f.get(keys.a)
        shape = a.shape if isinstance(a, h5py.Dataset) and a.ndim == 3 else (None, None, None)
        return {
            "path": str(path),
            "datasets": datasets,
            "attrs": {k: _attr_plain(v) for k, v in f.attrs.items()},
            "keys": {"a": keys.a, "b": keys.b, "clean_a": keys.clean_a, "clean_b": keys.clean_b},
            "pairs": shape[0],
            "height": shape[1],
            "width": shape[2],
            "has_clean": clean_ok and not problems,
            "domains": list(_domains(f)),
            "problems": problems,
        }


def _spread(n_total: int, n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_total - 1, num=min(n, n_total)).round().astype(np.int64))


def save_preview(
    path_or_source: str | Path | PairedSource,
    out_png: str | Path,
    n: int = 4,
    *,
    keys: HDF5Keys | None = None,
) -> Path:
    """Save a PNG grid of ``n`` evenly spaced pairs: rows = pairs, columns a / b (/ clean_a / clean_b).

    Both images of a pair share one grey scale (0 to the 99.5th percentile of the pair), so a darker
    domain looks darker.

    Args:
        path_or_source: an HDF5 file (opened with ``keys``, streamed) or any paired source.
        out_png: where to write the PNG (parent folders are created).
        n: number of pairs shown.
        keys: dataset names when ``path_or_source`` is a path.

    Returns:
        The path written.

    Raises:
        DataError: the file cannot be opened as paired data.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(path_or_source, str | Path):
        cfg = HDF5Data(source="hdf5", path=Path(path_or_source), keys=keys or HDF5Keys(), cache_mb=0)
        src: PairedSource = open_hdf5(cfg)
    else:
        src = path_or_source
    idx = _spread(src.n, max(1, n))
    batch = src.read(idx)
    cols: list[tuple[str, np.ndarray]] = [(src.domains[0], batch.a), (src.domains[1], batch.b)]
    if batch.has_clean:
        cols += [(f"clean {src.domains[0]}", batch.clean_a), (f"clean {src.domains[1]}", batch.clean_b)]
    fig = Figure(figsize=(2.2 * len(cols), 2.2 * len(idx)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(len(idx), len(cols), squeeze=False))
    for r, i in enumerate(idx):
        vmax = float(np.percentile(np.concatenate([c[r].ravel() for _, c in cols]), 99.5)) or 1.0
        for k, (title, arr) in enumerate(cols):
            ax = axes[r, k]
            ax.imshow(arr[r], cmap="gray", vmin=0.0, vmax=vmax, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if k == 0:
                ax.set_ylabel(f"pair {int(i)}", fontsize=8)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
