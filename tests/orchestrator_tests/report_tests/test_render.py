"""Every report format is written and read back: table, markdown, CSV, JSON, HTML, curve and image PNGs."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from orchestrator.report.html import to_html
from orchestrator.report.plots import plot_curves, plot_images
from orchestrator.report.render import (
    VERDICT_SYMBOLS,
    render_table,
    to_csv,
    to_json,
    to_markdown,
)
from orchestrator.verdict import CellData, CellVerdict, Guard, Verdict, VerdictSettings, judge_cell

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _curves(kind: str, seeds: int = 3, epochs: int = 12, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(epochs)
    out = []
    for _ in range(seeds):
        if kind == "falls":
            c = 0.4 + 1.1 * np.exp(-t / 5.0)
        else:
            c = np.full(epochs, 1.2)
            c[0] = 1.5
        out.append(c + rng.normal(0, 0.005, epochs))
    if kind == "nan":
        out[0][6:] = np.nan
        out[1][8:] = np.inf
    return out


@pytest.fixture
def cells() -> dict[str, list[np.ndarray]]:
    """The note's four rows, as curves."""
    return {
        "original": _curves("falls"),
        "no_skip": _curves("stalled"),
        "no_skip_everywhere": _curves("falls", seed=1),
        "pure_n2n": _curves("nan"),
    }


@pytest.fixture
def verdicts(cells: dict[str, list[np.ndarray]]) -> list[CellVerdict]:
    """Verdicts with axes, expectations, a floor, finals and a failing guard."""
    s = VerdictSettings(guards=[Guard(metric="cross_psnr_clean", min=20.0)])
    finals = {
        "cross_psnr_clean": [24.0, 25.0, 24.5],
        "noise_leak": [0.08, 0.07, 0.09],
        "cross_floor": [0.4] * 3,
    }
    axes = {
        "original": {"same_domain_skip": True, "cross_skip": "use_source", "recon_weight": 0.5},
        "no_skip": {"same_domain_skip": True, "cross_skip": "no_skip", "recon_weight": 0.5},
        "no_skip_everywhere": {"same_domain_skip": False, "cross_skip": "no_skip", "recon_weight": 0.05},
        "pure_n2n": {"same_domain_skip": True, "cross_skip": "no_skip", "recon_weight": 0.2},
    }
    expect = {"original": "fail", "no_skip": "fail", "no_skip_everywhere": "pass", "pure_n2n": "partial"}
    leak = {"original": [Guard(metric="noise_leak", max=0.02)]}
    return [
        judge_cell(
            CellData(
                name,
                curves=curves,
                axes=axes[name],
                expect=expect[name],
                finals=finals,
                guards=leak.get(name, ()),
                seeds=[0, 1, 2],
            ),
            s,
        )  # type: ignore[arg-type]
        for name, curves in cells.items()
    ]


def test_verdicts_fixture_covers_the_cases(verdicts: list[CellVerdict]) -> None:
    by = {v.cell: v for v in verdicts}
    assert by["original"].verdict is Verdict.FALLS and by["original"].agrees is True  # fail (noise leak)
    assert by["no_skip"].verdict is Verdict.FLAT and by["no_skip"].state == "stalled"
    assert by["no_skip_everywhere"].agrees is True
    assert by["pure_n2n"].verdict is Verdict.DIVERGED and by["pure_n2n"].seeds_failed == 2


def test_render_table(verdicts: list[CellVerdict]) -> None:
    table = render_table(verdicts, title="test_matrix: cross")
    assert table.row_count == 4
    headers = [c.header for c in table.columns]
    for h in (
        "cell",
        "same_domain_skip",
        "cross_skip",
        "recon_weight",
        "seeds",
        "start",
        "end",
        "change [CI]",
        "p",
        "verdict",
        "expected → seen",
        "agrees",
        "cross_psnr_clean",
        "noise_leak",
        "guards failed",
    ):
        assert h in headers
    console = Console(record=True, width=300, color_system=None)
    console.print(table)
    text = console.export_text()
    for name in ("original", "no_skip_everywhere", "pure_n2n", "test_matrix: cross"):
        assert name in text
    assert f"{VERDICT_SYMBOLS[Verdict.FLAT]} flat (stalled)" in text
    assert "1 ok, 2 failed" in text
    assert "noise_leak=0.08 (needs <=0.02)" in text
    assert "✓" in text


def test_render_table_empty() -> None:
    assert render_table([], title="nothing").row_count == 0
    assert to_json([]) == "[]"
    assert to_csv([]).startswith("cell,")


def test_markdown(verdicts: list[CellVerdict]) -> None:
    md = to_markdown(verdicts, title="test_matrix")
    lines = md.splitlines()
    assert lines[0] == "## test_matrix"
    table = [ln for ln in lines if ln.startswith("|")]
    assert len(table) == 2 + len(verdicts)
    assert len({ln.count(" | ") for ln in table if not ln.startswith("|---")}) == 1  # same column count
    assert "**no_skip** (flat)" in md and "stalled" in md
    assert "diverged" in md


def test_csv_parses(verdicts: list[CellVerdict]) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(verdicts))))
    assert [r["cell"] for r in rows] == [v.cell for v in verdicts]
    by = {r["cell"]: r for r in rows}
    assert by["no_skip"]["verdict"] == "flat" and by["no_skip"]["state"] == "stalled"
    assert by["original"]["axis.cross_skip"] == "use_source"
    assert float(by["no_skip_everywhere"]["rel_change"]) < float(by["no_skip_everywhere"]["ci_high"]) + 1e-12
    assert float(by["original"]["final.noise_leak"]) == pytest.approx(0.08)
    assert by["original"]["guards_failed"].startswith("noise_leak")
    assert by["pure_n2n"]["rel_change"] == "" and by["pure_n2n"]["seeds_failed"] == "2"
    assert by["no_skip_everywhere"]["agrees"] == "True"


def test_json_round_trips(verdicts: list[CellVerdict]) -> None:
    text = to_json(verdicts)
    data = json.loads(text)
    assert data == [json.loads(json.dumps(v.to_dict())) for v in verdicts]
    assert data[1]["verdict"] == "flat" and data[1]["state"] == "stalled"
    assert data[3]["rel_change"] is None

    def _no_constants(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    json.loads(text, parse_constant=_no_constants)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.imgs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))


def test_plots_and_html(
    tmp_path: Path, verdicts: list[CellVerdict], cells: dict[str, list[np.ndarray]]
) -> None:
    curves_png = plot_curves(
        cells, "cross", tmp_path / "fig" / "cross.png", floor_by_cell={"original": 0.4, "no_skip": None}
    )
    assert curves_png.read_bytes().startswith(PNG_MAGIC)
    rng = np.random.default_rng(0)
    images = {
        "gray": rng.random((32, 48)),
        "hwc": rng.random((32, 32, 3)),
        "chw": rng.random((3, 32, 32)),
        "stack": rng.random((4, 16, 16)),
        "nchw_uint8": rng.integers(0, 255, (2, 1, 16, 16)).astype(np.uint8),
    }
    images_png = plot_images(images, tmp_path / "x_a_from_b.png")
    assert images_png.read_bytes().startswith(PNG_MAGIC)

    page = to_html(verdicts, {"cross per epoch": curves_png, "x_a_from_b": images_png}, title="test <matrix>")
    parser = _Collect()
    parser.feed(page)
    # the short table (a row per cell and its reason under it), then every column folded away
    assert "table" in parser.tags and parser.tags.count("tr") == (1 + 2 * len(verdicts)) + (1 + len(verdicts))
    assert "After the warm-up, cross reads" in page and "<details>" in page
    assert len(parser.imgs) == 2
    assert all((img["src"] or "").startswith("data:image/png;base64,") for img in parser.imgs)
    assert "test &lt;matrix&gt;" in page
    for v in verdicts:
        assert v.cell in page
    (tmp_path / "report.html").write_text(page, encoding="utf-8")
    assert (tmp_path / "report.html").stat().st_size > 1000


def test_plot_curves_edge_cases(tmp_path: Path) -> None:
    ragged = {"a": [np.linspace(1, 0.5, 10), np.linspace(1, 0.6, 7)], "all_nan": [np.full(5, np.nan)]}
    assert plot_curves(ragged, "cross", tmp_path / "r.png", warmup=3).read_bytes().startswith(PNG_MAGIC)
    assert plot_curves({}, "cross", tmp_path / "empty.png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError):
        plot_images({"bad": np.zeros((2, 2, 2, 2, 2))}, tmp_path / "bad.png")
