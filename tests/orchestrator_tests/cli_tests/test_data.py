"""``orch data synth`` / ``orch data inspect``: files written, tables printed, bad input -> exit 2."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from model.config import HDF5Data
from model.data.hdf5 import open_hdf5
from orchestrator.cli.data import data_app
from tests.conftest import bad_hdf5_files, small_hdf5_files

runner = CliRunner()


def _root() -> typer.Typer:
    """The data app mounted the way orchestrator.cli mounts it."""
    root = typer.Typer()

    @root.callback()
    def _main() -> None:
        pass

    root.add_typer(data_app, name="data")
    return root


def _synth(out: Path, *args: str) -> object:
    return runner.invoke(data_app, ["synth", str(out), "--pairs", "6", "--size", "16", *args])


def _raw(path: Path, **datasets: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
    return path


def _assert_clean_failure(result: object, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    err = result.stderr
    assert "Traceback" not in result.output and "Traceback" not in err
    assert err.count("error:") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def test_synth_writes_the_file_and_says_what(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    result = _synth(
        out, "--noise-a", "0.1", "--noise-b", "0.02", "--structural-difference", "0.5", "--seed", "3"
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout and "6 pairs of 16x16" in result.stdout
    src = open_hdf5(HDF5Data(source="hdf5", path=out))
    assert (src.n, src.height, src.has_clean, src.domains) == (6, 16, True, ("PD", "PDFS"))
    with h5py.File(out, "r") as f:
        assert (f.attrs["noise_a"], f.attrs["noise_b"], f.attrs["seed"]) == (0.1, 0.02, 3)
        assert f.attrs["structural_difference"] == 0.5 and f.attrs["source"] == "model.phantom"


def test_synth_through_the_root_app(tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    result = runner.invoke(
        _root(), ["data", "synth", str(out), "--pairs", "2", "--size", "8", "--noise", "0"]
    )
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["a"][()], f["clean_a"][()])


def test_synth_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious")
    _assert_clean_failure(_synth(out), str(out), "--force")
    assert out.read_bytes() == b"precious"
    assert _synth(out, "--force").exit_code == 0
    assert h5py.is_hdf5(out)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--pairs", "1"], "--pairs"),
        (["--size", "4"], "--size"),
        (["--noise", "-0.1"], "--noise"),
        (["--noise", "0.1", "--noise-a", "0.1"], "either --noise or --noise-a"),
        (["--noise-a", "0.1"], "--noise-a and --noise-b go together"),
        (["--noise-a", "0.1", "--noise-b", "-1"], "--noise"),
        (["--structural-difference", "2"], "--structural-difference"),
        (["--misregistration", "-0.5"], "--misregistration"),
        (["--fat-suppression", "1.5"], "--fat-suppression"),
        (["--fat-suppression-variation", "3"], "--fat-suppression-variation"),
    ],
)
def test_synth_bad_options_exit_2_and_write_nothing(tmp_path: Path, args: list[str], needle: str) -> None:
    _assert_clean_failure(_synth(tmp_path / "s.h5", *args), needle)
    assert list(tmp_path.iterdir()) == []


def test_synth_unparseable_option_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(data_app, ["synth", str(tmp_path / "s.h5"), "--pairs", "many"])
    assert result.exit_code == 2 and "--pairs" in result.stderr and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_synth_missing_directory_exits_2(tmp_path: Path) -> None:
    _assert_clean_failure(_synth(tmp_path / "no" / "s.h5"), "no such directory")
    assert list(tmp_path.iterdir()) == []


def test_inspect_prints_the_table_and_saves_a_preview_next_to_the_file(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    assert _synth(out).exit_code == 0
    result = runner.invoke(data_app, ["inspect", str(out)])
    assert result.exit_code == 0, result.output
    for needle in (
        "clean_a",
        "6x16x16",
        "float32",
        "PD / PDFS",
        "clean images: yes",
        "structural_difference",
    ):
        assert needle in result.stdout, needle
    preview = tmp_path / "s.preview.png"
    assert preview.read_bytes()[:4] == b"\x89PNG"
    assert str(preview) in result.stdout


def test_inspect_custom_keys_and_preview_path(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    path = _raw(tmp_path / "scan.h5", pd=x, pdfs=x / 2)
    png = tmp_path / "figs" / "p.png"
    result = runner.invoke(
        data_app, ["inspect", str(path), "--key-a", "pd", "--key-b", "pdfs", "--preview", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert "clean images: no" in result.stdout and png.is_file()
    result = runner.invoke(
        data_app, ["inspect", str(path), "--key-a", "pd", "--key-b", "pdfs", "--no-preview"]
    )
    assert result.exit_code == 0 and not (tmp_path / "scan.preview.png").exists()


def _bad_inputs(tmp: Path) -> list[tuple[list[str], Path, tuple[str, ...]]]:
    ok = np.ones((3, 8, 8), np.float32)
    nan = ok.copy()
    nan[2, 1, 1] = np.nan
    (tmp / "text.h5").write_text("not hdf5")
    return [
        ([], tmp / "missing.h5", ("missing.h5", "no such file")),
        ([], tmp / "text.h5", ("text.h5", "not an HDF5 file")),
        (["--key-a", "nope"], _raw(tmp / "key.h5", a=ok, b=ok), ("key.h5", "'nope'", "available: a, b")),
        ([], _raw(tmp / "shape.h5", a=ok, b=ok[:2]), ("shape.h5", "'b'", "same (N, H, W)")),
        ([], _raw(tmp / "nan.h5", a=ok, b=nan), ("nan.h5", "'b'", "1 NaN")),
        ([], _raw(tmp / "empty.h5", a=ok[:0], b=ok[:0]), ("empty.h5", "'a'", "empty")),
        ([], _raw(tmp / "flat.h5", a=ok[0], b=ok[0]), ("flat.h5", "'a'", "3-D")),
        (["--key-clean-a", "gt"], _raw(tmp / "gt.h5", a=ok, b=ok), ("gt.h5", "'gt'", "not found")),
    ]


def test_inspect_bad_inputs_exit_2_with_one_message_and_no_preview(tmp_path: Path) -> None:
    for args, path, needles in _bad_inputs(tmp_path):
        before = set(tmp_path.iterdir())
        result = runner.invoke(data_app, ["inspect", str(path), *args])
        _assert_clean_failure(result, *needles)
        assert set(tmp_path.iterdir()) == before, path.name  # no preview written


def test_inspect_rejects_a_preview_that_is_not_png(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    assert _synth(out).exit_code == 0
    _assert_clean_failure(
        runner.invoke(data_app, ["inspect", str(out), "--preview", str(tmp_path / "p.jpg")]), ".png"
    )
    assert not (tmp_path / "p.jpg").exists()


def test_inspect_refuses_what_a_sweep_refuses(tmp_path: Path) -> None:
    """The same files `orch sweep` and `orch train` refuse (tests/conftest.py); inspect knows no model, so
    3x3 images and a single pair pass here and are refused by train and sweep."""
    for path, message in bad_hdf5_files(tmp_path):
        _assert_clean_failure(
            runner.invoke(data_app, ["inspect", str(path), "--no-preview"]), path.name, message
        )
    for path, _ in small_hdf5_files(tmp_path):
        assert runner.invoke(data_app, ["inspect", str(path), "--no-preview"]).exit_code == 0
