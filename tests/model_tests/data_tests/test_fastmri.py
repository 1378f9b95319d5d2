"""fastMRI-style volumes: pseudo-pairing (sorted or CSV), crop / resize / normalisation, errors."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from model.config import FastMRIData
from model.data import DataError, InMemoryPairs, PairedSource, open_source
from model.data.fastmri import FastMRIPairs, center_crop, open_fastmri

PD, PDFS = "CORPD_FBK", "CORPDFS_FBK"


def _volume(
    path: Path, acquisition: str | None, slices: int, tag: float, *, hw: tuple[int, int] = (12, 10),
    key: str = "reconstruction_rss", with_max: bool = True,
) -> Path:  # fmt: skip
    """A volume whose pixel (s, i, j) is tag + s + 0.01 * i + 0.0001 * j (so reads can be traced)."""
    s, i, j = np.meshgrid(np.arange(slices), np.arange(hw[0]), np.arange(hw[1]), indexing="ij")
    data = (tag + s + 0.01 * i + 0.0001 * j).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset(key, data=data)
        f.create_dataset("kspace", data=np.zeros((slices, 2, 2), np.complex64))
        if acquisition is not None:
            f.attrs["acquisition"] = acquisition
        if with_max:
            f.attrs["max"] = float(data.max())
    return path


def _cfg(directory: Path, **kw: Any) -> FastMRIData:
    return FastMRIData(source="fastmri", directory=directory, **{"crop": 8, **kw})


def _expected(tag: float, slices: int, s: int, crop: int = 8, hw: tuple[int, int] = (12, 10)) -> np.ndarray:
    vol = (
        tag + np.arange(slices)[:, None, None] + 0.01 * np.arange(hw[0])[:, None] + 0.0001 * np.arange(hw[1])
    )
    return (center_crop(vol, (crop, crop))[s] / vol.max()).astype(np.float32)


@pytest.fixture
def knee_dir(tmp_path: Path) -> Path:
    # sorted: PD a(5 slices), b(3); PDFS c(4), d(3) -> pairs (a, c): 4 slices, (b, d): 3 slices
    _volume(tmp_path / "file_a.h5", PD, 5, 100.0)
    _volume(tmp_path / "file_b.h5", PD, 3, 200.0)
    _volume(tmp_path / "file_c.h5", PDFS, 4, 300.0)
    _volume(tmp_path / "file_d.h5", PDFS, 3, 400.0)
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


@pytest.mark.parametrize("shape", [(8, 8), (5, 3), (12, 10), (7, 9)])
def test_center_crop_matches_fastmri(shape: tuple[int, int]) -> None:
    x = np.arange(2 * 12 * 10).reshape(2, 12, 10)
    top, left = (12 - shape[0]) // 2, (10 - shape[1]) // 2
    np.testing.assert_array_equal(center_crop(x, shape), x[:, top : top + shape[0], left : left + shape[1]])


def test_center_crop_rejects_a_crop_that_does_not_fit() -> None:
    with pytest.raises(ValueError):
        center_crop(np.zeros((4, 4)), (5, 4))


def test_sorted_pairing_centre_aligns_slices_and_normalises_by_volume_max(knee_dir: Path) -> None:
    src = open_fastmri(_cfg(knee_dir))
    assert isinstance(src, InMemoryPairs)
    assert (src.n, src.height, src.width, src.has_clean, src.domains) == (7, 8, 8, False, ("PD", "PDFS"))
    got = src.read(np.arange(7))
    # pair (a, c): min 4 slices; a's offset (5 - 4) // 2 = 0, c's 0
    for i in range(4):
        np.testing.assert_allclose(got.a[i], _expected(100.0, 5, i), rtol=1e-6)
        np.testing.assert_allclose(got.b[i], _expected(300.0, 4, i), rtol=1e-6)
    for i in range(3):
        np.testing.assert_allclose(got.a[4 + i], _expected(200.0, 3, i), rtol=1e-6)
        np.testing.assert_allclose(got.b[4 + i], _expected(400.0, 3, i), rtol=1e-6)
    assert got.a.max() <= 1.0
    assert isinstance(open_source(_cfg(knee_dir)), InMemoryPairs)


def test_centre_alignment_with_an_offset(tmp_path: Path) -> None:
    _volume(tmp_path / "p.h5", PD, 7, 10.0)
    _volume(tmp_path / "q.h5", PDFS, 3, 20.0)
    got = open_fastmri(_cfg(tmp_path)).read(np.arange(3))
    for i in range(3):  # PD offset (7 - 3) // 2 = 2
        np.testing.assert_allclose(got.a[i], _expected(10.0, 7, 2 + i), rtol=1e-6)


@pytest.mark.parametrize("header", [True, False])
def test_pairing_csv_chooses_the_pairs(knee_dir: Path, header: bool) -> None:
    csv = knee_dir / "pairs.csv"
    rows = ["file_a.h5, file_d.h5", f"{knee_dir / 'file_b.h5'},file_c.h5", ""]
    csv.write_text("\n".join((["pd_file,pdfs_file"] if header else []) + rows))
    src = open_fastmri(_cfg(knee_dir, pairing=csv))
    assert src.n == 3 + 3
    got = src.read(np.array([0, 5]))
    np.testing.assert_allclose(got.a[0], _expected(100.0, 5, 1), rtol=1e-6)  # a offset (5 - 3) // 2 = 1
    np.testing.assert_allclose(got.b[0], _expected(400.0, 3, 0), rtol=1e-6)
    np.testing.assert_allclose(got.b[1], _expected(300.0, 4, 2), rtol=1e-6)  # c offset (4 - 3) // 2 = 0


def test_resize_to_size(knee_dir: Path) -> None:
    src = open_fastmri(_cfg(knee_dir, size=16))
    got = src.read(np.array([0]))
    assert got.a.shape == (1, 16, 16) and got.a.dtype == np.float32
    np.testing.assert_allclose(got.a.mean(), _expected(100.0, 5, 0).mean(), rtol=1e-3)


def test_streams_per_volume_when_bigger_than_the_cache(knee_dir: Path) -> None:
    whole = open_fastmri(_cfg(knee_dir)).read(np.arange(7))
    src = open_fastmri(_cfg(knee_dir, cache_mb=0))
    assert isinstance(src, FastMRIPairs) and isinstance(src, PairedSource) and not src.has_clean
    idx = np.array([6, 0, 3, 0, 5])
    got = src.read(idx)
    np.testing.assert_array_equal(got.a, whole.a[idx])
    np.testing.assert_array_equal(got.b, whole.b[idx])
    copy = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(copy.read(idx).b, whole.b[idx])
    src.close()


def test_volume_max_is_computed_when_the_attribute_is_absent(tmp_path: Path) -> None:
    _volume(tmp_path / "p.h5", PD, 2, 10.0, with_max=False)
    _volume(tmp_path / "q.h5", PDFS, 2, 20.0, with_max=False, key="reconstruction_esc")
    with pytest.raises(DataError, match=r"q\.h5: dataset 'reconstruction_rss' not found; available: "):
        open_fastmri(_cfg(tmp_path))
    _volume(tmp_path / "q.h5", PDFS, 2, 20.0, with_max=False)
    got = open_fastmri(_cfg(tmp_path, cache_mb=0)).read(np.array([1]))
    np.testing.assert_allclose(got.b[0], _expected(20.0, 2, 1), rtol=1e-6)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _volumes(directory: Path, *acquisitions: str) -> Path:
    for k, acq in enumerate(acquisitions):
        _volume(directory / f"v{k}.h5", acq, 2, 1.0)
    return directory


def _swapped_csv(directory: Path) -> Path:
    """A CSV whose PD column names a PDFS volume."""
    _volume(directory / "p.h5", PD, 2, 1.0)
    _volume(directory / "f.h5", PDFS, 2, 1.0)
    return _write(directory / "pairs.csv", "f.h5,p.h5\n")


@pytest.mark.parametrize(
    "setup, pattern",
    [
        (lambda d: (d / "nowhere", None), r"nowhere: no such data directory"),
        (lambda d: (d, None), r"no \.h5 volumes"),
        (
            lambda d: (_volume(d / "x.h5", PD, 2, 1.0).parent, None),
            r"1 PD \(CORPD_FBK\) and 0 PDFS .*pairing",
        ),
        (
            lambda d: (_volumes(d, PD, PD, PDFS), None),
            r"2 PD \(CORPD_FBK\) and 1 PDFS",
        ),
        (lambda d: (_volume(d / "x.h5", None, 2, 1.0).parent, None), r"x\.h5: no 'acquisition' attribute"),
        (lambda d: (_write(d / "x.h5", "junk").parent, None), r"x\.h5: not an HDF5 file"),
        (lambda d: (_volume(d / "x.h5", PD, 2, 1.0, hw=(6, 6)).parent, None), r"x\.h5: crop 8 is larger"),
        (lambda d: (d, d / "pairs.csv"), r"pairs\.csv: pairing CSV not found"),
        (lambda d: (d, _write(d / "pairs.csv", "pd,pdfs\n")), r"pairs\.csv: no \(PD file, PDFS file\) rows"),
        (
            lambda d: (d, _write(d / "pairs.csv", "a.h5,b.h5,c.h5\n")),
            r"pairs\.csv, line 1: expected 2 columns \(PD file, PDFS file\), got 3",
        ),
        (
            lambda d: (d, _write(d / "pairs.csv", "pd,pdfs\nghost.h5,other.h5\n")),
            r"pairs\.csv, line 2: PD file .*ghost\.h5 not found",
        ),
        (
            lambda d: (d, _swapped_csv(d)),
            r"pairs\.csv, line 1: .*f\.h5 is CORPDFS_FBK, but the PD column needs CORPD_FBK",
        ),
    ],
)
def test_bad_inputs_are_data_errors_naming_the_file(tmp_path: Path, setup: Any, pattern: str) -> None:
    directory, pairing = setup(tmp_path)
    with pytest.raises(DataError, match=pattern):
        open_fastmri(_cfg(directory, pairing=pairing))
