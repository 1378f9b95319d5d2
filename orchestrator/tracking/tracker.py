"""The tracker: every write of a sweep, a search or a single run to MLflow, and every read back.

Names (the MLflow contract, README "MLflow"): experiment = matrix name; one parent run per sweep; one
child run per (cell, seed) with the tags of :mod:`orchestrator.tracking.vocabulary`, the resolved config as
params and a ``config.json`` artifact; metrics per epoch with ``step`` = epoch; image grids
``x_a_from_b`` / ``x_b_from_a`` per epoch; a failed run carries ``orch.failure``.

All writes go through :class:`MlflowClient` with explicit run ids (no fluent "active run"), so one
process can track many runs at once.
"""

from __future__ import annotations

import functools
import json
import platform
import re
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import LifecycleStage, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_EXPERIMENT_NAME_LENGTH, MAX_TAG_VAL_LENGTH

from model.config import RunConfig
from orchestrator.identity import code_context
from orchestrator.tracking.curves import fetch_curves
from orchestrator.tracking.errors import first_line
from orchestrator.tracking.images import label_grids, read_layout, unlabel
from orchestrator.tracking.integrity import StoreFile, log_whole_checkpoint, unwritten
from orchestrator.tracking.records import Attempt, RunRecord, flatten
from orchestrator.tracking.store import (
    TrackingError,
    artifact_root,
    check_reachable,
    normalize_uri,
    retry,
    shared,
)
from orchestrator.tracking.vocabulary import (
    NOTE,
    TAG_CELL,
    TAG_CHECKPOINT,
    TAG_CONFIG_KEY,
    TAG_DESCRIPTION,
    TAG_FAILURE,
    TAG_GIT_COMMIT,
    TAG_GIT_DIRTY,
    TAG_IMAGE_LAYOUT,
    TAG_KEY,
    TAG_KIND,
    TAG_SEED,
    TAG_STATUS,
    TAG_SWEEP,
    RunKind,
    RunStatus,
    run_tags,
)

if TYPE_CHECKING:
    from model.trainer import EpochResult  # torch: not for a report


def check_experiment_name(name: str) -> None:
    """Refuse an experiment name MLflow would refuse, before anything is written.

    Raises:
        TrackingError: empty, or longer than MLflow allows (500 characters).
    """
    if not name:
        raise TrackingError("the experiment name is empty")
    if len(name) > MAX_EXPERIMENT_NAME_LENGTH:
        raise TrackingError(
            f"experiment name {name[:40]!r}... is {len(name)} characters long; MLflow allows at most "
            f"{MAX_EXPERIMENT_NAME_LENGTH}: shorten the matrix's name"
        )


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Tags naming the software a run used: Python and package versions, the git commit and dirty flag."""
    tags = {"orch.python": platform.python_version()}
    for pkg in ("orch", "torch", "mlflow", "optuna", "numpy"):
        try:
            tags[f"orch.version.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    context = code_context()
    tags |= {TAG_GIT_COMMIT: context["git_commit"], TAG_GIT_DIRTY: context["git_dirty"]}
    if context["git_commit"] != "unknown":
        tags["mlflow.source.git.commit"] = context["git_commit"]
    return tags


class Tracker:
    """Writes sweeps and runs to one MLflow store."""

    def __init__(self, uri: str) -> None:
        """A tracker of the store at ``uri``.

        Raises:
            TrackingError: ``uri`` is a tracking server that does not answer (:func:`check_reachable`).
        """
        self.uri = uri = normalize_uri(uri)
        check_reachable(uri)
        self.client = MlflowClient(tracking_uri=uri)
        self.store_file = StoreFile(uri)  # a store deleted under this tracker is noticed at its next write

    # ------------------------------------------------------------------------------- experiments

    def experiment_id(self, name: str, *, create: bool = True) -> str | None:
        """The id of experiment ``name``, created when missing and ``create`` (else None).

        Raises:
            TrackingError: the experiment was deleted (it is still in the store), or its name is refused.
        """
        check_experiment_name(name)
        exp = retry(self.client.get_experiment_by_name, name)
        if exp is not None:
            return self._active(exp)
        if not create:
            return None
        try:
            return retry(self.client.create_experiment, name, artifact_location=artifact_root(self.uri))
        except MlflowException as exc:
            exp = self.client.get_experiment_by_name(name)  # created concurrently
            if exp is None:
                raise TrackingError(
                    f"cannot create experiment {name!r} in {self.uri}: {first_line(exc)}"
                ) from None
            return self._active(exp)

    def describe_experiment(self, name: str, text: str) -> None:
        """Set experiment ``name``'s description in ``mlflow ui`` (tag ``mlflow.note.content``) to ``text``,
        unless someone wrote another one there since orch last did (``orch.description`` keeps orch's)."""
        exp_id = self.experiment_id(name)
        tags = retry(self.client.get_experiment, exp_id).tags
        shown = tags.get(NOTE)
        if not text or shown == text or (shown and shown != tags.get(TAG_DESCRIPTION)):
            return
        for key in (NOTE, TAG_DESCRIPTION):
            retry(self.client.set_experiment_tag, exp_id, key, text)

    def _active(self, exp: Any) -> str:
        """An experiment's id, unless it was deleted (MLflow keeps it, and refuses new runs in it)."""
        if exp.lifecycle_stage == LifecycleStage.DELETED:
            raise TrackingError(
                f"experiment {exp.name!r} was deleted in the store {self.uri} (`mlflow gc` removes it for "
                f"good, `mlflow experiments restore --experiment-id {exp.experiment_id}` brings it back)"
            )
        return exp.experiment_id

    # ------------------------------------------------------------------------------------- writes

    def start_sweep(
        self, experiment: str, *, name: str, tags: dict[str, str], artifacts: Iterable[Path] = ()
    ) -> str:
        """Create the parent run of a sweep; returns its run id."""
        exp_id = self.experiment_id(experiment)
        run = retry(
            self.client.create_run,
            exp_id,
            run_name=name,
            tags={**run_tags(RunKind.SWEEP), **versions(), **tags},
        )
        for path in artifacts:
            retry(self.client.log_artifact, run.info.run_id, str(path))
        return run.info.run_id

    def start_run(
        self,
        experiment: str,
        config: RunConfig | dict[str, Any],
        *,
        name: str,
        tags: dict[str, str],
        params: Mapping[str, Any] | None = None,
        parent_id: str | None = None,
    ) -> str:
        """Create a run with its resolved config (or a function's params) as ``config.json``; returns its id.

        Args:
            tags: the run's tags (:func:`~orchestrator.tracking.vocabulary.run_tags`).
            params: its MLflow params (a sweep's: the axes that differ between its cells,
                :func:`~orchestrator.matrix.varying_axes`); None: every field of the config (``orch
                train``, ``orch diagnose``).
        """
        data = config if isinstance(config, dict) else config.to_dict()
        exp_id = self.experiment_id(experiment)
        all_tags = {**versions(), **tags}
        if parent_id:
            all_tags["mlflow.parentRunId"] = parent_id
        run = retry(self.client.create_run, exp_id, run_name=name, tags=all_tags)
        run_id = run.info.run_id
        logged = flatten(data) if params is None else params
        listed = [Param(k, _param_text(v, compact=params is not None)) for k, v in logged.items()]
        for i in range(0, len(listed), 100):
            retry(self.client.log_batch, run_id, params=listed[i : i + 100])
        retry(self.client.log_dict, run_id, data, "config.json")
        return run_id

    def log_epoch(self, run_id: str, result: EpochResult) -> None:
        """One batched call for the epoch's metrics (step = epoch) and the image layout tag, then its image
        grids, each column named above it (:func:`~orchestrator.tracking.images.label_grids`), each whole or
        none."""
        self.store_file.check()
        ts = int(time.time() * 1000)
        metrics = [Metric(k, float(v), ts, result.epoch) for k, v in result.metrics.items()]
        images, layout = label_grids(result.images, clean="cross_clean" in result.metrics)
        tags = [RunTag(TAG_IMAGE_LAYOUT, layout)] if layout else []
        retry(self.client.log_batch, run_id, metrics=metrics, tags=tags)
        for name, img in images.items():
            with unwritten(self.client, run_id, "images", f"{name}[+%]step[+%]{result.epoch}[+%]"):
                retry(self.client.log_image, run_id, img, key=name, step=result.epoch)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        retry(self.client.log_text, run_id, text, artifact_file)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        retry(self.client.log_artifact, run_id, str(path), artifact_path)

    def log_table(self, run_id: str, columns: dict[str, list[Any]], artifact_file: str) -> None:
        """A table artifact that MLflow's UI shows as one (``columns``: name -> values)."""
        retry(self.client.log_table, run_id, columns, artifact_file)

    def describe_run(self, run_id: str, markdown: str, *, cut: str) -> None:
        """Set the run's description in ``mlflow ui`` (tag ``mlflow.note.content``) to ``markdown``; text
        over MLflow's limit for a tag (8,000 characters) is cut at a line, and ``cut`` said after it."""
        if len(markdown) > MAX_TAG_VAL_LENGTH:
            room = MAX_TAG_VAL_LENGTH - len(cut) - 2
            markdown = markdown[: markdown.rfind("\n", 0, room) + 1] + "\n" + cut
        self.set_tags(run_id, {NOTE: markdown})

    def log_values(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Metrics logged once (step 0), in one call: a sweep's results on its parent run."""
        ts = int(time.time() * 1000)
        retry(self.client.log_batch, run_id, metrics=[Metric(k, float(v), ts, 0) for k, v in metrics.items()])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        retry(self.client.log_batch, run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def finish(
        self, run_id: str, status: RunStatus, reason: str | None = None, traceback: str | None = None
    ) -> None:
        """End a run with ``status``: its tags say why (:meth:`RunStatus.end_tags`), a traceback becomes
        ``traceback.txt``, and MLflow's status follows (:attr:`RunStatus.mlflow_status`)."""
        status = RunStatus(status)
        self.store_file.check()
        self.set_tags(run_id, status.end_tags(reason))
        if traceback:
            self.log_text(run_id, traceback, "traceback.txt")
        retry(self.client.set_terminated, run_id, status=status.mlflow_status)

    # ------------------------------------------------------------------------- checkpoints (resume)

    def log_checkpoint(self, run_id: str, path: Path, epoch: int, config: dict[str, Any]) -> None:
        """A run's resumable checkpoint as ``checkpoint/last.pt`` with its ``checkpoint/config.json``, and
        ``orch.checkpoint_epoch`` (its epoch), set once both are whole (a copy cut short is removed)."""
        log_whole_checkpoint(self.client, run_id, path, config)
        self.set_tags(run_id, {TAG_CHECKPOINT: str(epoch)})

    def checkpoint_epochs(self, experiment: str) -> dict[str, int]:
        """Child runs of ``experiment`` with a logged checkpoint: run id -> the checkpoint's epoch."""
        runs = self._search(experiment, f"tags.`{TAG_CHECKPOINT}` LIKE '%'")
        return {r.info.run_id: int(r.data.tags[TAG_CHECKPOINT]) for r in runs}

    def download_checkpoint(self, run_id: str, folder: Path) -> Path:
        """The run's ``checkpoint/last.pt``, copied into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        return Path(retry(self.client.download_artifacts, run_id, "checkpoint/last.pt", str(folder)))

    def find_run(self, run_id: str) -> Any | None:
        """The run with id ``run_id`` in any experiment of the store, or None."""
        try:
            return self.client.get_run(run_id)
        except MlflowException:
            return None

    def reopen(self, run_id: str, tags: dict[str, str]) -> None:
        """Set an ended run RUNNING again with ``tags`` added: an interrupted run, to log its remaining epochs
        under the same id, or a sweep's parent run resumed by the next sweep. Its end tags and checkpoint
        epoch go (a run killed again before its next checkpoint is not resumed twice)."""
        current = retry(self.client.get_run, run_id).data.tags
        for key in (TAG_STATUS, TAG_FAILURE, TAG_CHECKPOINT):
            if key in current:
                retry(self.client.delete_tag, run_id, key)
        self.set_tags(run_id, tags)
        retry(self.client.update_run, run_id, status="RUNNING")

    # -------------------------------------------------------------------------------------- reads

    def _search(
        self, experiment: str, filter_string: str = "", *, kinds: tuple[RunKind, ...] | None = (RunKind.RUN,)
    ) -> list[Any]:
        """Runs of ``experiment`` of the given kinds (None: every run, whatever logged it) matching
        ``filter_string``, every page of them."""
        exp_id = self.experiment_id(experiment, create=False)
        if exp_id is None:
            return []
        runs = []
        for kind in kinds or (None,):
            flt = " and ".join(
                f for f in (f"tags.`{TAG_KIND}` = '{kind.value}'" if kind else "", filter_string) if f
            )
            runs.extend(shared((self.uri, exp_id, flt), lambda flt=flt: self._pages(exp_id, flt)))
        return runs

    def _pages(self, exp_id: str, flt: str) -> list[Any]:
        """Every page of runs of experiment ``exp_id`` that match ``flt``."""
        runs, token = [], None
        while True:
            page = retry(self.client.search_runs, [exp_id], flt, max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def attempts(self, experiment: str) -> list[Attempt]:
        """Every child run of a sweep in ``experiment``, oldest first."""
        out = [Attempt.of(run) for run in self._search(experiment)]
        return sorted((a for a in out if a.run_key), key=lambda a: a.start_time)

    def mark_killed(self, run_ids: Iterable[str], reason: str) -> int:
        """Mark runs left RUNNING by a killed sweep as KILLED."""
        n = 0
        for run_id in run_ids:
            self.finish(run_id, RunStatus.KILLED, reason)
            n += 1
        return n

    def running_runs(self, experiment: str) -> list[tuple[str, str, str]]:
        """(run id, sweep id, run key) of every child run of ``experiment`` still RUNNING in the store."""
        out = []
        for run in self._search(experiment, "attributes.status = 'RUNNING'"):
            tags = run.data.tags
            out.append((run.info.run_id, tags.get(TAG_SWEEP, ""), tags.get(TAG_KEY, "")))
        return out

    def sweep_parents(self, experiment: str) -> list[tuple[str, RunStatus, dict[str, str]]]:
        """(run id, status, tags) of every sweep parent run of ``experiment``, oldest first."""
        runs = sorted(self._search(experiment, kinds=(RunKind.SWEEP,)), key=lambda r: r.info.start_time or 0)
        return [(r.info.run_id, RunStatus.of(r.info.status, r.data.tags), dict(r.data.tags)) for r in runs]

    def sweep_runs(self, experiment: str, sweep_id: str) -> list[Any]:
        """The child runs one sweep logged (from any machine)."""
        return self._search(experiment, f"tags.`{TAG_SWEEP}` = '{sweep_id}'")

    def latest_sweep(self, experiment: str) -> str | None:
        """Run id of the most recent sweep parent run in ``experiment``."""
        runs = self._search(experiment, kinds=(RunKind.SWEEP,))
        if not runs:
            return None
        return max(runs, key=lambda r: r.info.start_time).info.run_id

    def sweep_matrix(self, experiment: str) -> tuple[str, str, dict[str, str]] | None:
        """The matrix file that the newest sweep or search of ``experiment`` holding one logged to its
        parent run: (the parent's run id, the file's text, the parent's tags); None when no parent has one."""
        for run_id, _, tags in reversed(self.sweep_parents(experiment)):
            files = [f.path for f in retry(self.client.list_artifacts, run_id) if not f.is_dir]
            files = [f for f in files if f.endswith((".yaml", ".yml"))]
            if files:
                with tempfile.TemporaryDirectory() as tmp:
                    local = retry(self.client.download_artifacts, run_id, files[0], tmp)
                    return run_id, Path(local).read_text(encoding="utf-8"), tags
        return None

    def run_tags_and_start(self, run_id: str) -> tuple[dict[str, str], int]:
        """A run's tags and its start time (ms since the epoch)."""
        run = retry(self.client.get_run, run_id)
        return dict(run.data.tags), run.info.start_time or 0

    def experiment_names(self) -> list[str]:
        return [e.name for e in retry(self.client.search_experiments)]

    def records(
        self,
        experiment: str,
        metrics: Iterable[str],
        *,
        keys: set[str] | None = None,
        by_config: bool = False,
        every: bool = False,
    ) -> list[RunRecord]:
        """Runs of ``experiment`` with the per-step history of ``metrics`` and the final value of every other
        metric: with ``keys``, its sweeps' child runs whose run key (with ``by_config``, config key) is in
        ``keys``; else every run tagged ``orch.cell`` and ``orch.seed``, whoever logged it (a sweep, a
        search, another script); with ``every``, every run, those without these tags as cell ``""`` and seed
        -1 (a report groups them by their params: :mod:`orchestrator.report.grouping`).

        Raises:
            TrackingError: no experiment ``experiment``, or a run whose ``orch.seed`` is not an integer.
        """
        if self.experiment_id(experiment, create=False) is None:
            raise TrackingError(f"no experiment named {experiment!r} in {self.uri}")
        wanted = list(dict.fromkeys(metrics))
        chosen = []
        # a matrix's runs are its sweeps' (search trials are judged by --experiment); without keys, any run
        # with the two tags counts, whatever its kind (DESIGN: "runs orch did not make")
        for run in self._search(experiment, kinds=(RunKind.RUN,) if keys is not None else None):
            tags = run.data.tags
            if not every and (TAG_CELL not in tags or TAG_SEED not in tags):
                continue
            key = tags.get(TAG_KEY, run.info.run_id)
            config_key = tags.get(TAG_CONFIG_KEY, key)  # before code fingerprints, the run key was this
            matched = config_key if by_config else key
            if keys is not None and (matched not in keys or tags.get(TAG_KIND) == RunKind.TRIAL):
                continue
            chosen.append((run, key, config_key))
        curves = fetch_curves(self.client, self.uri, [run for run, _, _ in chosen], wanted)
        out = []
        for run, key, config_key in chosen:
            tags = run.data.tags
            rec = RunRecord(
                run_id=run.info.run_id,
                cell=tags.get(TAG_CELL, ""),
                seed=_seed(run.info.run_id, tags) if TAG_SEED in tags else -1,
                run_key=key,
                config_key=config_key,
                status=RunStatus.of(run.info.status, tags),
                sweep=tags.get(TAG_SWEEP, ""),
                tags=dict(tags),
                params=dict(run.data.params),
                start_time=run.info.start_time or 0,
                end_time=run.info.end_time,
            )
            rec.history.update(curves[run.info.run_id])
            for name, value in run.data.metrics.items():
                rec.history.setdefault(name, [(-1, value)])
            out.append(rec)
        return out

    def run_config(self, run_id: str) -> dict[str, Any] | None:
        """A run's resolved config as its ``config.json`` holds it, flat (``{"data.size": 32}``); None when
        it has none (a run orch did not make)."""
        try:
            return flatten(self._read_artifact(run_id, "config.json", lambda f: json.loads(f.read_text())))
        except (MlflowException, OSError, ValueError, AttributeError):
            return None

    def _read_artifact(self, run_id: str, path: str, read: Callable[[Path], Any]) -> Any:
        """``read`` of the run's artifact ``path``: in place in a local store, else downloaded first."""
        root = retry(self.client.get_run, run_id).info.artifact_uri
        if root.startswith("file://"):  # a local store: read the file where it is
            return read(Path(urllib.parse.unquote(urllib.parse.urlparse(root).path)) / path)
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, tracking_uri=self.uri, dst_path=tmp
            )
            return read(Path(local))

    def images(self, run_id: str, key: str) -> np.ndarray | None:
        """The last logged image grid ``key`` of a run, as uint8 (H, W[, C]) without column names, or None."""
        try:
            files = retry(self.client.list_artifacts, run_id, "images")
        except MlflowException:
            return None
        # log_image(key=, step=) names files "<key>+step+<n>+timestamp+...png" ('%' in older MLflow)
        pattern = re.compile(rf"^{re.escape(key)}[+%]step[+%](\d+)[+%].*(?<!compressed)\.png$")
        steps = {}
        for f in files:
            match = pattern.match(f.path.rsplit("/", 1)[-1])
            if match:
                steps[int(match.group(1))] = f.path
        if not steps:
            return None
        from PIL import Image

        layout = read_layout(retry(self.client.get_run, run_id).data.tags.get(TAG_IMAGE_LAYOUT), key)

        def read(file: Path) -> np.ndarray:
            with Image.open(file) as img:
                return unlabel(np.asarray(img), layout)

        return self._read_artifact(run_id, steps[max(steps)], read)


def _param_text(value: Any, *, compact: bool) -> str:
    """A param's value as MLflow keeps it: lists as JSON (``compact``: without spaces, as a sweep's axes
    are logged, so that an image card's param line stays short), anything else as ``str``."""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":")) if compact else json.dumps(value)
    return str(value)


def _seed(run_id: str, tags: dict[str, str]) -> int:
    """A run's ``orch.seed`` as an integer (a run another script tagged may hold anything)."""
    try:
        return int(tags[TAG_SEED])
    except ValueError:
        value = tags[TAG_SEED]
        raise TrackingError(f"run {run_id}: its tag {TAG_SEED} is {value!r}, not an integer") from None
