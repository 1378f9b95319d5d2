"""What a report is about, in words: the runs, the sweep, the code, the data, the budget, the thresholds.

Every displayed format shows the same lines (:func:`report_context`); they are read from the store's tags
and from the cells' resolved configs (a matrix's, else each run's logged params), never written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.report.collect import CellData, Selection
from orchestrator.tracking import Tracker
from orchestrator.tracking.vocabulary import TAG_GIT_COMMIT, TAG_GIT_DIRTY, TAG_SWEEP
from orchestrator.verdict import CellVerdict, VerdictSettings

__all__ = ["describe_budget", "describe_data", "report_context"]


def report_context(
    tracker: Tracker,
    experiment: str,
    parent: str | None,
    settings: VerdictSettings,
    verdicts: Sequence[CellVerdict],
    select: Selection,
    cells: Sequence[CellData] = (),
) -> dict[str, str]:
    """Label -> text lines: experiment, runs judged, sweep and date, commit (clean or with uncommitted
    changes), data, budget (epochs, steps per epoch), window, thresholds, and where to see the runs."""
    exp_id = tracker.experiment_id(experiment, create=False) or ""
    out = {"experiment": f"{experiment} (id {exp_id})", "runs judged": select.describe()}
    if parent:
        tags, start = tracker.run_tags_and_start(parent)
        out["sweep"] = f"{tags.get(TAG_SWEEP, '?')} (parent run {parent})"
        out["date"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(start / 1000))
        commit = tags.get(TAG_GIT_COMMIT) or tags.get("mlflow.source.git.commit")
        if commit:
            dirty = _DIRTY.get(tags.get(TAG_GIT_DIRTY, ""))
            out["commit"] = commit + (f" ({dirty})" if dirty else "")
    data = _per_cell(cells, describe_data)
    if data:
        out["data"] = data
    epochs = verdicts[0].epochs - 1 if verdicts and verdicts[0].window else None
    budget = _per_cell(cells, lambda c: describe_budget(c, epochs))
    if budget:
        out["budget"] = budget
    elif epochs is not None:
        out["budget"] = f"{epochs} epochs after epoch 0"
    if verdicts and verdicts[0].window:
        first, last = verdicts[0].window
        out["window"] = f"epochs {first}-{last} (warm-up: the first {verdicts[0].warmup})"
    out["thresholds"] = (
        f"min change {settings.min_change:.0%}, {settings.confidence:.0%} bootstrap interval, "
        f"at least {settings.min_seeds} seeds and {settings.min_window} window epochs"
    )
    uri = tracker.uri
    if uri.startswith("http"):
        out["MLflow"] = f"{uri.rstrip('/')}/#/experiments/{exp_id}"
    else:
        out["MLflow"] = f"mlflow ui --backend-store-uri {uri}   (experiment {exp_id})"
    return out


#: How the ``orch.git_dirty`` tag reads (``unknown``: not said).
_DIRTY = {"true": "with uncommitted changes", "false": "clean tree"}


def describe_data(config: Mapping[str, Any]) -> str | None:
    """A run's data in words, from its flat resolved config (``data.source``, ``data.size``...; values as
    configs or as logged params hold them): ``synthetic phantoms 32x32, noise 0.1, 512 pairs``, the HDF5
    file, or the fastMRI folder; None when the config does not say (a user's own trainer)."""
    source = _text(config.get("data.source"))
    if source == "synthetic":
        size = _text(config.get("data.size"))
        noise = _text(config.get("data.noise"))
        if noise is None:  # per domain
            per = {d: _text(config.get(f"data.noise.{d}")) for d in ("a", "b")}
            noise = ", ".join(f"{d} {n}" for d, n in per.items() if n is not None) or None
        parts = [f"synthetic phantoms {size}x{size}"]
        parts += [f"noise {noise}"] if noise is not None else []
        parts += [f"{_text(config.get('data.pairs'))} pairs"]
        for key in ("structural_difference", "misregistration"):
            value = _text(config.get(f"data.{key}"))
            if value not in (None, "0", "0.0"):
                parts.append(f"{key.replace('_', ' ')} {value}")
        return ", ".join(parts)
    if source == "hdf5":
        return f"HDF5 file {_text(config.get('data.path'))}"
    if source == "fastmri":
        crop, size = _text(config.get("data.crop")), _text(config.get("data.size"))
        resized = f", resized to {size}" if size is not None else ""
        return f"fastMRI volumes in {_text(config.get('data.directory'))} (crop {crop}{resized})"
    return None


def describe_budget(config: Mapping[str, Any], epochs: int | None) -> str | None:
    """The training budget of a run in words: ``24 epochs after epoch 0, 6 steps of 16 pairs an epoch``."""
    steps = _text(config.get("trainer.steps_per_epoch"))
    batch = _text(config.get("trainer.batch_size"))
    if epochs is None:
        epochs_text = _text(config.get("trainer.epochs"))
        if epochs_text is None:
            return None
        epochs = int(float(epochs_text))
    if batch is None:
        return f"{epochs} epochs after epoch 0"
    per_epoch = (
        f"one pass over the training pairs an epoch (batches of {batch})"
        if steps is None
        else f"{steps} steps of {batch} pairs an epoch"
    )
    return f"{epochs} epochs after epoch 0, {per_epoch}"


def _per_cell(cells: Sequence[CellData], describe: Any) -> str | None:
    """One description when every cell has the same, else each distinct one with its cells."""
    by: dict[str, list[str]] = {}
    for cell in cells:
        text = describe(cell.config) if cell.config else None
        if text:
            by.setdefault(text, []).append(cell.name)
    if len(by) <= 1:
        return next(iter(by), None)
    return "; ".join(f"{text} ({', '.join(names)})" for text, names in by.items())


def _text(value: Any) -> str | None:
    """A config value as text (None, and a logged param "None", are None; floats without trailing zeros)."""
    if value is None or value == "None":
        return None
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
