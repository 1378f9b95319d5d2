"""Which of a matrix's runs a report judges, and which of its cells it shows: :class:`Selection` (no
MLflow import: the command line builds one before it loads the store)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.tracking.vocabulary import TAG_CODE

if TYPE_CHECKING:
    from orchestrator.report.grouping import Grouping
    from orchestrator.tracking.records import RunRecord

__all__ = ["Selection"]


@dataclass(frozen=True)
class Selection:
    """Which of a matrix's runs a report judges, and which of its cells it shows.

    By default, the runs of the code and data installed now (their run keys are the matrix's). ``code``
    (a code fingerprint, or its first characters) or ``sweep`` (a sweep id, or its first characters)
    select runs of the matrix's configs made by other code or by one sweep, for comparison. ``cells`` and
    ``where`` (axis -> value) keep some cells; ``group_by`` judges one pseudo-cell per value of that axis
    (:mod:`~orchestrator.report.views`). ``grouping`` makes the cells of an experiment's runs from their
    params or tags instead of orch's tags (:mod:`~orchestrator.report.grouping`).
    """

    code: str | None = None
    sweep: str | None = None
    cells: Sequence[str] = ()
    where: Mapping[str, str] | None = None
    group_by: str | None = None
    grouping: Grouping | None = None

    def view(self) -> dict[str, Any]:
        """The cells shown, as a report's label records them."""
        view = {"cells": list(self.cells), "where": dict(self.where or {}), "group_by": self.group_by}
        if self.grouping is not None:  # only then: the labels of reports made before grouping stay theirs
            view["grouping"] = self.grouping.describe()
        return view

    @property
    def current(self) -> bool:
        return self.code is None and self.sweep is None

    def admits(self, rec: RunRecord) -> bool:
        return (self.code is None or rec.tags.get(TAG_CODE, "").startswith(self.code)) and (
            self.sweep is None or rec.sweep.startswith(self.sweep)
        )

    def describe(self) -> str:
        parts = [f"code {self.code}" if self.code else "", f"sweep {self.sweep}" if self.sweep else ""]
        if self.grouping is not None:
            parts.append(f"every run, {self.grouping.describe()}")
        return ", ".join(p for p in parts if p) or "the current code and data"
