"""The run vocabulary: statuses written and read back, including stores from before the orch.status tag."""

from __future__ import annotations

import json

import pytest

from orchestrator.tracking.vocabulary import (
    TAG_FAILURE,
    TAG_STATUS,
    TAG_STOP,
    RunKind,
    RunStatus,
    axes_from_tags,
    run_tags,
)


@pytest.mark.parametrize("status", list(RunStatus))
def test_every_status_reads_back_as_written(status: RunStatus) -> None:
    tags = status.end_tags("why")
    mlflow_status = status.mlflow_status
    assert RunStatus.of(mlflow_status, tags) is status


@pytest.mark.parametrize(
    ("mlflow_status", "tags", "status"),
    [
        ("FINISHED", {}, RunStatus.FINISHED),
        ("FINISHED", {TAG_STOP: "early stop at epoch 9"}, RunStatus.STOPPED),
        ("FAILED", {TAG_FAILURE: "nan: non-finite cross loss at epoch 3, step 2"}, RunStatus.DIVERGED),
        ("FAILED", {TAG_FAILURE: "ValueError: boom"}, RunStatus.CRASHED),
        ("FAILED", {}, RunStatus.CRASHED),
        ("KILLED", {TAG_FAILURE: "sweep interrupted"}, RunStatus.KILLED),
        ("RUNNING", {TAG_STATUS: "finished"}, RunStatus.RUNNING),
    ],
)
def test_runs_logged_before_the_status_tag_are_read_from_mlflow_status(
    mlflow_status: str, tags: dict[str, str], status: RunStatus
) -> None:
    assert RunStatus.of(mlflow_status, tags) is status


def test_end_tags_keep_the_mlflow_contract() -> None:
    assert RunStatus.DIVERGED.end_tags("non-finite cross")[TAG_FAILURE] == "nan: non-finite cross"
    assert RunStatus.DIVERGED.mlflow_status == "FAILED" and RunStatus.STOPPED.mlflow_status == "FINISHED"
    assert RunStatus.STOPPED.end_tags("decided") == {TAG_STATUS: "stopped", TAG_STOP: "decided"}
    assert RunStatus.FINISHED.end_tags(None) == {TAG_STATUS: "finished"}
    assert RunStatus.CRASHED.end_tags(None)[TAG_FAILURE] == "exception"
    assert [s for s in RunStatus if s.has_curve] == [RunStatus.FINISHED, RunStatus.STOPPED]


def test_run_tags_encode_axes_and_extras_and_read_back() -> None:
    tags = run_tags(
        RunKind.TRIAL,
        sweep="s1",
        cell="trial-3",
        seed=0,
        run_key="abc",
        axes={"decoder_features": [128, 64], "recon_weight": 0.05, "cross_skip": "no_skip"},
        expect=None,
        trial=3,
        unused=None,
    )
    assert tags["orch.kind"] == "trial" and tags["orch.trial"] == "3" and "orch.unused" not in tags
    assert tags["orch.seed"] == "0" and "orch.expect" not in tags
    axes = axes_from_tags(tags)
    assert json.loads(axes["decoder_features"]) == [128, 64]
    assert axes == {"decoder_features": "[128, 64]", "recon_weight": "0.05", "cross_skip": "no_skip"}
