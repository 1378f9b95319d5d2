"""Paired HDF5 files: round trip, up-front validation, streaming bigger-than-cache files, inspection."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from model.config import HDF5Data, HDF5Keys
from model.data import DataError, InMemoryPairs, PairedSource, Pairs, open_source
from model.data.hdf5 import HDF5Pairs, inspect_file, open_hdf5, save_preview, write_pairs
from model.data.phantom import generate_pairs


@pytest.fixture(scope="module")
def phantom() -> Any:
    return generate_pairs(12, 24, noise=(0.1, 0.1), seed=2)


def _pairs(ph: Any, clean: bool = True) -> Pairs:
    return Pairs(ph.a, ph.b, ph.clean_a if clean else None, ph.clean_b if clean else None)


def _cfg(path: Path, **kw: Any) -> HDF5Data:
    return HDF5Data(source="hdf5", path=path, **kw)


def _raw(path: Path, datasets: dict[str, Any], attrs: dict[str, Any] | None = None) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return path


def test_round_trip_in_memory_with_attrs(tmp_path: Path, phantom: Any) -> None:
    path = tmp_path / "p.h5"
    write_pairs(path, _pairs(phantom), source="model.phantom", attrs=phantom.params)
    with h5py.File(path, "r") as f:
        assert f["a"].dtype == np.float32 and f["a"].chunks == (1, 24, 24)
        assert (f.attrs["domain_a"], f.attrs["domain_b"], f.attrs["source"]) == (
            "PD",
            "PDFS",
            "model.phantom",
        )
        assert f.attrs["noise_a"] == 0.1 and f.attrs["seed"] == 2
        assert f.attrs["tissues"].startswith("[")  # non-scalars are JSON
    src = open_hdf5(_cfg(path))
    assert isinstance(src, InMemoryPairs)
    assert (src.n, src.height, src.width, src.has_clean, src.domains) == (12, 24, 24, True, ("PD", "PDFS"))
    got = src.read(np.array([3, 0, 11]))
    np.testing.assert_array_equal(got.a, phantom.a[[3, 0, 11]])
    np.testing.assert_array_equal(got.clean_b, phantom.clean_b[[3, 0, 11]])
    assert isinstance(open_source(_cfg(path)), InMemoryPairs)  # reachable from the DataConfig too


def test_file_bigger_than_the_cache_is_streamed(tmp_path: Path, phantom: Any) -> None:
    path = tmp_path / "big.h5"
    write_pairs(path, _pairs(phantom), source="test", attrs={})
    src = open_hdf5(_cfg(path, cache_mb=0.01))  # 12 * 24 * 24 * 4 B * 4 datasets > 10 KiB
    assert isinstance(src, HDF5Pairs) and isinstance(src, PairedSource)
    assert src._file is None  # nothing opened (or loaded) until the first read
    idx = np.array([7, 2, 7, 0, 11, 5])  # unsorted, with a repeat
    got = src.read(idx)
    for name in ("a", "b", "clean_a", "clean_b"):
        np.testing.assert_array_equal(getattr(got, name), getattr(phantom, name)[idx])
        assert getattr(got, name).dtype == np.float32
    handle = src._file
    src.read(np.array([1]))
    assert src._file is handle  # one handle per process, reused
    copy = pickle.loads(pickle.dumps(src))
    assert copy._file is None
    np.testing.assert_array_equal(copy.read(idx).b, phantom.b[idx])
    assert src.read(np.array([], np.int64)).a.shape == (0, 24, 24)
    with pytest.raises(IndexError):
        src.read(np.array([12]))
    src.close()


def _read_in_child(src: HDF5Pairs, queue: Any) -> None:
    queue.put(src.read(np.array([4, 1])).a)


def test_streamed_source_reopens_its_file_after_fork(tmp_path: Path, phantom: Any) -> None:
    path = tmp_path / "fork.h5"
    write_pairs(path, _pairs(phantom), source="test", attrs={})
    src = open_hdf5(_cfg(path, cache_mb=0))
    src.read(np.array([0]))  # the parent holds an open handle
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_read_in_child, args=(src, queue))
    proc.start()
    got = queue.get(timeout=20)
    proc.join(timeout=20)
    assert proc.exitcode == 0
    np.testing.assert_array_equal(got, phantom.a[[4, 1]])
    np.testing.assert_array_equal(src.read(np.array([2])).a, phantom.a[[2]])


@pytest.mark.parametrize("cache_mb", [512, 0])
def test_clean_keys_are_optional(tmp_path: Path, phantom: Any, cache_mb: float) -> None:
    path = tmp_path / "noclean.h5"
    write_pairs(path, _pairs(phantom, clean=False), domains=("PD", "PDFS"), source="scanner", attrs={})
    src = open_hdf5(_cfg(path, cache_mb=cache_mb))
    assert not src.has_clean
    assert src.read(np.array([0])).clean_a is None


def test_explicit_clean_key_that_is_absent_is_an_error(tmp_path: Path, phantom: Any) -> None:
    path = tmp_path / "noclean.h5"
    write_pairs(path, _pairs(phantom, clean=False), source="scanner", attrs={})
    with pytest.raises(DataError, match=r"noclean\.h5.*'gt_a'.*not found; available: a, b"):
        open_hdf5(_cfg(path, keys=HDF5Keys(clean_a="gt_a")))


def test_custom_keys_and_default_domains(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((5, 8, 10)).astype(np.float64)
    path = _raw(tmp_path / "other.h5", {"pd": x, "pdfs": x / 2, "group/extra": np.zeros(3)})
    src = open_hdf5(_cfg(path, keys=HDF5Keys(a="pd", b="pdfs")))
    assert (src.n, src.height, src.width, src.has_clean, src.domains) == (5, 8, 10, False, ("a", "b"))
    np.testing.assert_allclose(src.read(np.array([4])).b, x[[4]] / 2, rtol=1e-6)
    assert src.read(np.array([4])).b.dtype == np.float32


def _bad_files(tmp: Path) -> list[tuple[Path, dict[str, Any], str]]:
    ok = np.ones((4, 6, 6), np.float32)
    nan = ok.copy()
    nan[3, 2, 2] = np.nan
    inf = ok.copy()
    inf[1, 0, 0] = np.inf
    (tmp / "text.h5").write_text("not hdf5")
    return [
        (tmp / "missing.h5", {}, r"missing\.h5: no such file"),
        (tmp / "text.h5", {}, r"text\.h5: not an HDF5 file"),
        (
            _raw(tmp / "nokey.h5", {"a": ok, "x": ok}),
            {},
            r"nokey\.h5: dataset 'b' .*not found; available: a, x",
        ),
        (
            _raw(tmp / "renamed.h5", {"a": ok, "b": ok}),
            {"keys": HDF5Keys(a="pd")},
            r"renamed\.h5: dataset 'pd' \(domain a\) not found; available: a, b",
        ),
        (_raw(tmp / "count.h5", {"a": ok, "b": ok[:3]}), {}, r"count\.h5: dataset 'b' has shape \(3, 6, 6\)"),
        (
            _raw(tmp / "hw.h5", {"a": ok, "b": np.ones((4, 6, 7))}),
            {},
            r"hw\.h5: dataset 'b' .*same \(N, H, W\)",
        ),
        (
            _raw(tmp / "2d.h5", {"a": ok[0], "b": ok[0]}),
            {},
            r"2d\.h5: dataset 'a' has shape \(6, 6\); expected 3-D",
        ),
        (
            _raw(tmp / "int.h5", {"a": ok.astype(np.int16), "b": ok}),
            {},
            r"int\.h5: dataset 'a' has dtype int16",
        ),
        (
            _raw(tmp / "nan.h5", {"a": ok, "b": nan}),
            {},
            r"nan\.h5: dataset 'b' holds 1 NaN and 0 Inf.*slice 3",
        ),
        (
            _raw(tmp / "inf.h5", {"a": inf, "b": ok}),
            {},
            r"inf\.h5: dataset 'a' holds 0 NaN and 1 Inf.*slice 1",
        ),
        (_raw(tmp / "empty.h5", {"a": ok[:0], "b": ok[:0]}), {}, r"empty\.h5: dataset 'a' is empty"),
        (
            _raw(tmp / "clean.h5", {"a": ok, "b": ok, "clean_a": ok, "clean_b": nan}),
            {},
            r"clean\.h5: dataset 'clean_b' holds 1 NaN",
        ),
    ]


def test_every_bad_file_is_a_data_error_naming_file_and_dataset(tmp_path: Path) -> None:
    for path, kw, pattern in _bad_files(tmp_path):
        with pytest.raises(DataError, match=pattern):
            open_hdf5(_cfg(path, **kw))
        if path.name not in ("missing.h5", "text.h5"):
            keys = kw.get("keys", HDF5Keys())
            problems = inspect_file(path, keys)["problems"]
            assert problems and any(re.search(pattern, p) for p in problems), path.name


def test_nan_scan_goes_block_by_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import model.data.hdf5 as mod

    monkeypatch.setattr(mod, "_SCAN_BYTES", 6 * 6 * 4 * 2)  # two slices per block
    x = np.ones((9, 6, 6), np.float32)
    x[7, 1, 1] = np.nan
    path = _raw(tmp_path / "late.h5", {"a": x, "b": np.ones_like(x)})
    with pytest.raises(DataError, match=r"first in slice 7"):
        open_hdf5(_cfg(path))


def test_write_pairs_rejects_mismatched_arrays_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    with pytest.raises(DataError, match=r"dataset 'b' has shape"):
        write_pairs(path, Pairs(np.zeros((2, 4, 4)), np.zeros((3, 4, 4))), source="x", attrs={})
    assert list(tmp_path.iterdir()) == []


def test_inspect_reports_shapes_ranges_and_attrs(tmp_path: Path, phantom: Any) -> None:
    path = tmp_path / "p.h5"
    write_pairs(path, _pairs(phantom), source="model.phantom", attrs=phantom.params)
    info = inspect_file(path)
    assert info["problems"] == [] and info["has_clean"]
    assert (info["pairs"], info["height"], info["width"]) == (12, 24, 24)
    assert info["domains"] == ["PD", "PDFS"]
    a = info["datasets"]["a"]
    assert a["shape"] == (12, 24, 24) and a["dtype"] == "float32" and a["nan"] == a["inf"] == 0
    assert a["min"] == pytest.approx(float(phantom.a.min())) and a["max"] == pytest.approx(
        float(phantom.a.max())
    )
    assert info["attrs"]["tissues"][0] == "background"  # JSON attrs decoded
    assert info["attrs"]["structural_difference"] == 0.0


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_save_preview_from_path_and_from_source(tmp_path: Path, phantom: Any) -> None:
    with_clean = tmp_path / "c.h5"
    write_pairs(with_clean, _pairs(phantom), source="t", attrs={})
    out = save_preview(with_clean, tmp_path / "sub" / "c.png", n=3)
    w4, h4 = _png_size(out)
    src = InMemoryPairs(_pairs(phantom, clean=False))
    w2, h2 = _png_size(save_preview(src, tmp_path / "s.png", n=3))
    assert w2 < w4 and h2 == h4  # two columns instead of four, same rows
