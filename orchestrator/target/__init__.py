"""Run targets: what one run computes, as the sweep, its workers and the tracker see it.

A matrix's runs train either the built-in model (:class:`~orchestrator.target.model.ModelTarget`, a
:class:`~model.config.RunConfig` fitted by :func:`model.trainer.fit`) or the user's own training function
(:class:`~orchestrator.target.function.FunctionTarget`, ``module:function`` called with its params, seed and
epochs; docs/own_training.md). Both are a :class:`~orchestrator.target.base.RunTarget`: its budget, its
device, the params it logs, its checks before a sweep starts, and how a worker runs it, resumes it and
reads its checkpoint. The matrix (:mod:`orchestrator.matrix`) is the one place that builds them; nothing
else asks which kind a run is.

Names are imported on first use: a worker that runs a user's function never imports the built-in model.
"""

from __future__ import annotations

from orchestrator.lazy import lazy_attributes

__all__, __getattr__ = lazy_attributes(
    __name__,
    {
        "base": ("Epoch", "RunControl", "RunOutcome", "RunTarget"),
        "function": ("EntrypointError", "FunctionCheckpoint", "FunctionTarget", "load_function"),
        "model": ("ModelTarget",),
    },
)
