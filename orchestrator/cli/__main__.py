"""``python -m orchestrator.cli``: the same as ``orch``."""

from orchestrator.cli import run

run()
