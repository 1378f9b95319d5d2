"""`diagnose`: train a config for a few steps and take every diagnostic at the start and the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from model.config import RunConfig
from model.data import PairedSource
from model.diagnose.data_content import data_content
from model.diagnose.readings import DiagnosisReport
from model.diagnose.snapshot import Snapshot, measure
from model.trainer import NonFiniteLossError, Trainer, skip_weight_at

if TYPE_CHECKING:
    pass

__all__ = [
    "diagnose",
]

# ------------------------------------------------------------------------------------------ diagnose


def _snapshot_steps(steps: int, every: int | None) -> set[int]:
    marks = {0, steps}
    if every:
        marks |= set(range(every, steps, every))
    return marks


def diagnose(
    config: RunConfig,
    steps: int = 10,
    *,
    every: int | None = None,
    source: PairedSource | None = None,
    on_step: Callable[[int, int], None] | None = None,
    eval_pairs: int = 64,
    probe_pairs: int = 128,
    data_pairs: int = 64,
) -> DiagnosisReport:
    """Train ``config`` for ``steps`` steps and measure every diagnostic at the start and the end.

    Training is the trainer's own step (same losses, optimiser, discriminator step); the skip weight is
    the schedule's first-epoch value throughout.

    Args:
        config: the run to diagnose.
        steps: training steps (>= 1).
        every: also measure every ``every`` steps.
        source: data to use instead of opening ``config.data``.
        on_step: called as ``on_step(step, steps)`` after each update.
        eval_pairs: held-out pairs measured (see :func:`measure`).
        probe_pairs: pairs for the domain probe (see :func:`measure`).
        data_pairs: pairs whose clean images are compared (hypothesis 2).

    Returns:
        :class:`DiagnosisReport`; when a loss turns NaN/Inf, training stops there with status
        ``diverged`` and the last snapshot is the last one taken before.

    Raises:
        ValueError: ``steps`` < 1 or ``every`` < 1.
        model.data.DataError: the data cannot be opened.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"every must be a whole number >= 1, got {every!r}")
    t0 = time.perf_counter()
    # one update per train_epoch call, so that the diagnosis can look between any two steps
    one_step = config.model_copy(update={"trainer": config.trainer.model_copy(update={"steps_per_epoch": 1})})
    trainer = Trainer(one_step, source)
    sw = skip_weight_at(config.trainer, 1)
    k = min(data_pairs, trainer.source.n)
    pairs = trainer.source.read(np.arange(k))
    data = data_content(pairs.clean_a, pairs.clean_b)
    marks = _snapshot_steps(steps, every)

    def snap(step: int) -> Snapshot:
        return measure(trainer, step=step, skip_weight=sw, eval_pairs=eval_pairs, probe_pairs=probe_pairs)

    snapshots = [snap(0)]
    train_losses: list[dict[str, float]] = []
    status, reason, done = "finished", None, 0
    for step in range(1, steps + 1):
        try:
            losses = trainer.train_epoch(1)
        except NonFiniteLossError as exc:
            status, reason, done = "diverged", f"non-finite {exc.term} loss at step {step}", step
            break
        done = step
        train_losses.append({"step": step} | {k.removeprefix("train_"): v for k, v in losses.items()})
        if on_step is not None:
            on_step(step, steps)
        if step in marks:
            snapshots.append(snap(step))
    domains = tuple(getattr(trainer.source, "domains", ("a", "b")))[:2]
    return DiagnosisReport(
        config=config,
        steps=steps,
        steps_done=done,
        every=every,
        status=status,
        reason=reason,
        seconds=time.perf_counter() - t0,
        snapshots=snapshots,
        train_losses=train_losses,
        data=data,
        domains=(str(domains[0]), str(domains[1])),
    )
