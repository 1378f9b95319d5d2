"""Terminal layouts that fit the console's width: the first of several views that fits, and per-item
blocks of ``label: value`` pairs for a table too wide to read as one.

Both decide at render time, from the width rich gives them (a terminal's, or ``COLUMNS`` when piped), so
the same report reads at 80, 100 or 160 columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderableType
from rich.measure import Measurement
from rich.text import Text

__all__ = ["Blocks", "Fitted", "natural_width"]


def natural_width(console: Console, options: ConsoleOptions, renderable: RenderableType) -> int:
    """The width ``renderable`` takes when nothing constrains it (a table: its columns unwrapped)."""
    return Measurement.get(console, options.update_width(10_000), renderable).maximum


class Fitted:
    """The first of ``layouts`` (each a function making a renderable) that fits the width unwrapped; the
    last one when none does (it must read at any width: folding, or :class:`Blocks`)."""

    def __init__(self, *layouts: Callable[[], RenderableType]) -> None:
        if not layouts:
            raise ValueError("Fitted needs at least one layout")
        self.layouts = layouts

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        for make in self.layouts[:-1]:
            view = make()
            if natural_width(console, options, view) <= options.max_width:
                yield view
                return
        yield self.layouts[-1]()


@dataclass(frozen=True)
class Blocks:
    """One block per item: its name (bold), then its ``(label, value)`` pairs as ``label: value`` packed
    into indented lines up to the width, a pair never split between lines (one longer than a line folds).

    Attributes:
        items: (name, style of the name, pairs) per item.
        title: A line above the blocks.
        indent: Spaces before each pair line.
    """

    items: Sequence[tuple[str, str, Sequence[tuple[str, str]]]]
    title: str | None = None
    indent: int = 2

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        width = max(20, options.max_width)
        if self.title:
            yield Text(self.title, style="bold")
        for name, style, pairs in self.items:
            yield Text(name, style=style or "bold")
            line = Text(" " * self.indent)
            for label, value in pairs:
                pair = Text.assemble((f"{label}:", "dim"), " ", value)
                if line.cell_len > self.indent and line.cell_len + 3 + pair.cell_len > width:
                    yield _folded(line)
                    line = Text(" " * self.indent)
                line.append_text(Text("   ") if line.cell_len > self.indent else Text(""))
                line.append_text(pair)
            if line.cell_len > self.indent:
                yield _folded(line)


def _folded(text: Text) -> Text:
    text.no_wrap, text.overflow = False, "fold"
    return text
