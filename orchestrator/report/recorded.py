"""The verdict settings a sweep recorded: an experiment judged by name is judged as its matrix says.

A sweep's (or a search's) parent run holds its matrix file, and its command line's overrides as the tag
``orch.edits``; ``orch report --experiment NAME`` reads the verdict settings of the newest one, so that a
matrix's ``verdict: {warmup: 8}`` holds whether its runs are judged through the matrix or by name.
"""

from __future__ import annotations

import json

from orchestrator.matrix import MatrixError, recorded_verdict
from orchestrator.tracking import Tracker
from orchestrator.verdict import VerdictSettings

__all__ = ["recorded_settings"]


def recorded_settings(tracking_uri: str, experiment: str) -> tuple[VerdictSettings, str]:
    """The verdict settings to judge ``experiment`` with, and where they come from: the matrix of its
    newest sweep or search that logged one (with that sweep's verdict overrides), else the defaults.

    Raises:
        orchestrator.tracking.TrackingError: the store cannot be read.
    """
    found = Tracker(tracking_uri).sweep_matrix(experiment)
    if found is None:
        return VerdictSettings(), "the defaults (no sweep of this experiment recorded a matrix)"
    run_id, text, tags = found
    try:
        edits = json.loads(tags.get("orch.edits") or "{}")
    except ValueError:
        edits = {}
    overrides = [str(o) for o in (edits.get("overrides") or [])] if isinstance(edits, dict) else []
    try:
        settings = recorded_verdict(text, f"the matrix of parent run {run_id}", overrides)
    except MatrixError as exc:
        return VerdictSettings(), f"the defaults ({exc})"
    shown = f" with {' '.join(overrides)}" if overrides else ""
    return settings, f"the matrix of parent run {run_id}{shown}"
