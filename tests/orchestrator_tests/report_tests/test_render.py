"""Every report format is written and read back: table, markdown, CSV, JSON, HTML, curve and image PNGs."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from rich.console import Console

from orchestrator.report.html import to_html
from orchestrator.report.plots import PALETTE, curves_figure, images_figure, plot_curves, plot_images
from orchestrator.report.render import VERDICT_SYMBOLS, change_text, headline, to_csv, to_json, to_markdown
from orchestrator.report.terminal import render_summary, render_table, render_wide
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
    assert (
        "- **no_skip**: flat: " in md and "stalled" in md
    )  # the reason says "flat" once, not "(flat): flat"
    assert "- **pure_n2n**: diverged: 2 of 3 seeds" in md  # a reason without its verdict word gets it
    assert "(flat): flat" not in md and ": falls: falls" not in md


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


# ---------------------------------------------------------------------------------------------------------
# One answer in every format, tables that fit, what an undecided cell measured (issue 29)

CONTEXT = {
    "commit": "0123abcd (with uncommitted changes)",
    "data": "synthetic phantoms 32x32, noise 0.1, 512 pairs",
    "budget": "11 epochs after epoch 0, 6 steps of 16 pairs an epoch",
}


def _printed(renderable: object, width: int) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def _flat(text: str) -> str:
    return " ".join(text.split())


def _table_lines(text: str) -> list[str]:
    """The header, rule and rows of the first table in ``text`` (up to the first blank line after it)."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.strip().startswith("cell "))
    end = next(i for i in range(head, len(lines)) if not lines[i].strip())
    return lines[head:end]


def test_every_format_carries_the_same_answer_and_context(verdicts: list[CellVerdict]) -> None:
    answer = headline(verdicts)
    assert len(answer) >= 2
    md = to_markdown(verdicts, title="t", context=CONTEXT)
    page = to_html(verdicts, title="t", context=CONTEXT)
    table = _flat(_printed(render_summary(verdicts, title="t", context=CONTEXT), 100))
    data = json.loads(to_json(verdicts, title="t", context=CONTEXT))
    for sentence in answer:
        assert sentence in md and html.escape(sentence) in page and _flat(sentence) in table
    for label, value in CONTEXT.items():
        assert f"- {label}: {value}" in md and html.escape(value) in page and _flat(value) in table
    for cell in data:  # the contract stays a list of cells; each carries the report's answer and context
        assert cell["report"] == {"title": "t", "answer": answer, "context": CONTEXT}
    assert [{k: v for k, v in c.items() if k != "report"} for c in data] == json.loads(to_json(verdicts))


@pytest.mark.parametrize("width", [80, 100])
def test_the_summary_keeps_names_verdicts_changes_and_marks_at_80_and_100_columns(
    verdicts: list[CellVerdict], width: int
) -> None:
    text = _printed(render_summary(verdicts, title="test_matrix: does cross fall?"), width)
    table = _table_lines(text)
    assert max(len(line) for line in table) <= width
    rows = {line.split()[0]: line for line in table[2:]}
    assert set(rows) == {v.cell for v in verdicts}  # every full name, one row each (nothing folded)
    for v in verdicts:
        row = rows[v.cell]
        assert v.verdict.value in row and (v.rel_change is None or f"{v.rel_change:+.1%}" in row)
        assert {True: "✓", False: "✗"}.get(v.agrees, "?") in row
    if width == 100:  # room for the interval, as wide as it is
        assert all(change_text(v).replace(", ", ",") in rows[v.cell] for v in verdicts)


def test_wide_folds_into_one_block_a_cell_where_every_column_does_not_fit(
    verdicts: list[CellVerdict],
) -> None:
    wide = _printed(render_wide(verdicts, title="t"), 400)
    header = next(line for line in wide.splitlines() if "guards failed" in line)
    assert "same_domain_skip" in header and "expected → seen" in header  # one table, every column
    narrow = _printed(render_wide(verdicts, title="t"), 100)
    assert max(len(line) for line in narrow.splitlines()) <= 100
    blocks = narrow.split("\n" + verdicts[1].cell + "\n")[1]  # no_skip's block, after its name's line
    assert "guards failed" in narrow and "change [CI]" in blocks.split("\n\n")[0]
    assert "│" not in narrow and "┃" not in narrow  # no table wrapped into noise


def test_a_cell_with_too_few_seeds_shows_what_it_measured_marked_undecided() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(12)
    curves = [0.2 + 0.3 * np.exp(-t / 4) + rng.normal(0, 0.003, 12) for _ in range(2)]
    v = judge_cell(
        CellData("two_seeds", curves=curves, finals={"cross_baseline": [0.5, 0.5]}, expect="pass"),
        VerdictSettings(),
    )
    assert (
        v.verdict is Verdict.INCONCLUSIVE and v.undecided and v.reason.startswith("too few seeds: 2 usable")
    )
    assert "measured, not enough to decide" in v.reason
    assert v.rel_change is not None and v.rel_change < -0.1 and v.end is not None and v.vs_baseline < 0
    assert v.ci is None and v.p_value is None and v.beats_baseline is None and v.agrees is None  # no claim
    data = v.to_dict()
    assert data["undecided"] is True and data["rel_change"] == pytest.approx(v.rel_change)
    text = _printed(render_summary([v]), 100)
    row = next(line for line in text.splitlines() if line.strip().startswith("two_seeds"))
    assert "? inconclusive" in row and f"{v.rel_change:+.1%}*" in row and f"{v.vs_baseline:+.0%}*" in row
    assert "* measured, but too few seeds or epochs to decide" in text
    assert "have too few seeds or epochs to decide (two_seeds)" in _flat(text)
    assert f"{v.rel_change:+.1%}\\*" in to_markdown([v]) and f"{v.rel_change:+.1%}*" in to_html([v])


def test_html_tables_scroll_in_their_box_with_numbers_right_aligned(verdicts: list[CellVerdict]) -> None:
    page = to_html(verdicts, title="t", context=CONTEXT)
    assert page.count('<div class="scroll"><table') == 2  # the short table and every column
    assert ".scroll{overflow-x:auto" in page and "td.num,th.num{text-align:right" in page
    columns = page.split('<table class="columns">')[1]
    heads = re.findall(r"<th( class=\"num\")?>([^<]*)</th>", columns)
    numeric = {h for cls, h in heads if cls}
    assert {"start", "end", "change [CI]", "p", "cross_psnr_clean", "noise_leak"} <= numeric
    assert "cell" not in numeric and "verdict" not in numeric


def test_the_curves_figure_has_its_title_inside_its_legend_outside_the_data_and_eight_colours() -> None:
    t = np.arange(13)
    curves = {f"cell_{k}_with_a_name": [1 + 0.1 * k + 0.5 * np.exp(-t / 3)] * 2 for k in range(8)}
    fig = curves_figure(curves, "cross", warmup=4, baseline_by_cell={"cell_0_with_a_name": 1.2}, title="t")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    title = fig._suptitle.get_window_extent(renderer)
    assert canvas.x0 <= title.x0 and title.x1 <= canvas.x1 and canvas.y0 <= title.y0 and title.y1 <= canvas.y1
    (ax,) = fig.axes
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert not box.overlaps(ax.get_window_extent(renderer))  # beside the axes: over no curve, band or warm-up
    assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1
    colours = [to_rgb(line.get_color()) for line in ax.get_lines() if line.get_label().startswith("cell_")]
    assert len(colours) == 8
    closest = min(np.abs(np.subtract(a, b)).sum() for i, a in enumerate(colours) for b in colours[i + 1 :])
    assert closest > 0.3  # no two cells in near-identical colours (three reds were: issue 29)
    assert [to_rgb(c) for c in PALETTE] == colours


@pytest.mark.parametrize(("h", "w", "samples"), [(128, 96, 4), (32, 32, 4), (16, 16, 2), (96, 128, 2)])
def test_image_grids_fill_the_canvas_with_titles_inside_and_column_names_apart(
    h: int, w: int, samples: int
) -> None:
    labels = ["source (b)", "a from b", "noisy target (a)", "clean target (a)"]
    rng = np.random.default_rng(0)
    grids = {f"cell_{k}": rng.random((samples * h, 4 * w)) for k in range(3)}
    captions = {c: "seed 0, last epoch" for c in grids}
    fig = images_figure(grids, column_labels={c: labels for c in grids}, captions=captions)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    image_area = 0.0
    for ax in fig.axes:
        title = ax.title.get_window_extent(renderer)
        assert (
            canvas.y0 <= title.y0 and title.y1 <= canvas.y1 and canvas.x0 <= title.x0 <= title.x1 <= canvas.x1
        )
        names = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
        assert [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()] == labels
        assert all(not a.overlaps(b) for i, a in enumerate(names) for b in names[i + 1 :])
        assert all(canvas.y0 <= n.y0 and n.y1 <= canvas.y1 for n in names)
        assert not any(n.overlaps(title) for n in names)
        image_area += (
            ax.get_images()[0].get_window_extent(renderer).width
            * ax.get_images()[0].get_window_extent(renderer).height
        )
    assert image_area / (canvas.width * canvas.height) > 0.4  # the images, not an empty canvas
