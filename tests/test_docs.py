"""The docs' promises stay backed: every test a page names (docs/guarantees.md) exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAMED_TEST = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_test_named_in_the_docs_exists() -> None:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    named = [(page, m) for page in pages for m in NAMED_TEST.finditer(page.read_text())]
    assert any(page.name == "guarantees.md" for page, _ in named)
    missing = [
        f"{page.name}: {m.group(1)}::{m.group(2)}"
        for page, m in named
        if not (REPO / m.group(1)).exists() or m.group(2) not in _test_names(REPO / m.group(1))
    ]
    assert not missing, missing
