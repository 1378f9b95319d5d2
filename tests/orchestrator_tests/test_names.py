"""Names where they become paths: one folder a name, safe, short and stable."""

from __future__ import annotations

import pytest

from orchestrator.names import MAX_FOLDER_NAME, folder_name


@pytest.mark.parametrize("name", ["test_matrix", "a/b", "remedies (v2)", "é" * 60])
def test_a_short_name_is_its_own_folder(name: str) -> None:
    assert folder_name(name) == name.replace("/", "_")


@pytest.mark.parametrize("name", ["n" * 300, "é" * 61, ".", "..", "", "a\0b", "/" * 200])
def test_any_other_name_gets_a_safe_stable_folder(name: str) -> None:
    folder = folder_name(name)
    assert folder == folder_name(name) and folder not in ("", ".", "..")
    assert "/" not in folder and "\0" not in folder and len(folder.encode()) <= MAX_FOLDER_NAME
    assert folder != folder_name(name + "x")
