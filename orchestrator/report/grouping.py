"""Cells and seeds of runs that orch did not make: grouped by their params or tags.

Any MLflow experiment can be judged: ``orch report --experiment NAME --metric val_loss --cell-by
params.lr,params.width --seed-by params.seed`` makes one cell per distinct (lr, width), named
``lr=0.1,width=32``, whose seeds are the runs' ``seed`` params. A key is ``params.<name>`` or
``tags.<name>``; a run that lacks one of the ``--cell-by`` keys is left out. Without ``--seed-by`` every run
of a cell is one seed, numbered in the order the runs started.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from orchestrator.errors import UserError
from orchestrator.tracking import RunRecord
from orchestrator.tracking.vocabulary import TAG_AXIS

__all__ = ["Grouping", "GroupingError", "logged_keys"]

_SOURCES = ("params", "tags")


class GroupingError(UserError, ValueError):
    """A ``--cell-by`` or ``--seed-by`` key that cannot group the runs."""


@dataclass(frozen=True)
class Grouping:
    """How runs are made into cells: by the values of ``cell_by`` keys, seeded by ``seed_by``'s value.

    Attributes:
        cell_by: keys such as ``params.lr`` or ``tags.model``; a cell per distinct combination of values.
        seed_by: the key whose (integer) value is a run's seed; None: each run of a cell is one seed.
    """

    cell_by: tuple[str, ...]
    seed_by: str | None = None

    @classmethod
    def parse(cls, cell_by: Sequence[str], seed_by: str | None = None) -> Grouping:
        """A grouping from ``--cell-by`` values (each a key or comma-separated keys) and ``--seed-by``.

        Raises:
            GroupingError: a key that is not ``params.<name>`` or ``tags.<name>``, or none given.
        """
        keys = tuple(dict.fromkeys(k.strip() for text in cell_by for k in text.split(",") if k.strip()))
        if not keys:
            raise GroupingError("--cell-by: give at least one key, e.g. --cell-by params.lr")
        for key in (*keys, *([seed_by] if seed_by is not None else [])):
            source, _, name = key.partition(".")
            if source not in _SOURCES or not name:
                option = "--seed-by" if key == seed_by else "--cell-by"
                raise GroupingError(f"{option} {key!r}: a key is params.NAME or tags.NAME, e.g. params.lr")
        return cls(keys, seed_by)

    def describe(self) -> str:
        seeds = f", seeds by {self.seed_by}" if self.seed_by else ", each run one seed"
        return f"cells by {', '.join(self.cell_by)}{seeds}"

    def group(self, records: Sequence[RunRecord], experiment: str) -> list[RunRecord]:
        """The runs that hold every ``cell_by`` key (and ``seed_by``), each with its cell and seed.

        Raises:
            GroupingError: no run holds the keys (the message lists the keys the runs have), or a seed
                value that is not an integer.
        """
        out = []
        for rec in sorted(records, key=lambda r: r.start_time):
            values = {key.partition(".")[2]: _value(rec, key) for key in self.cell_by}
            if any(v is None for v in values.values()):
                continue
            seed = rec.seed
            if self.seed_by is not None:
                text = _value(rec, self.seed_by)
                if text is None:
                    continue
                seed = _integer(text, rec, self.seed_by)
            cell = ",".join(f"{name}={value}" for name, value in values.items())
            tags = {k: v for k, v in rec.tags.items() if not k.startswith(TAG_AXIS)}
            tags |= {f"{TAG_AXIS}{name}": str(value) for name, value in values.items()}
            out.append(replace(rec, cell=cell, seed=seed, tags=tags))
        if not out:
            wanted = [*self.cell_by, *([self.seed_by] if self.seed_by else [])]
            raise GroupingError(
                f"no run of {experiment!r} has {' and '.join(wanted)} (the runs log: {logged_keys(records)})"
            )
        if self.seed_by is None:  # each run is a seed of its cell, in the order they started
            count: dict[str, int] = {}
            for i, rec in enumerate(out):
                out[i] = replace(rec, seed=count.setdefault(rec.cell, 0))
                count[rec.cell] += 1
        return out


def _value(rec: RunRecord, key: str) -> str | None:
    source, _, name = key.partition(".")
    return (rec.params if source == "params" else rec.tags).get(name)


def _integer(text: str, rec: RunRecord, key: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value.is_integer()):
        raise GroupingError(f"--seed-by {key}: run {rec.run_id} has {text!r}, not an integer seed")
    return int(value)


def logged_keys(records: Sequence[RunRecord], limit: int = 12) -> str:
    """The params and tags (orch's and MLflow's own left out) the runs log, as keys to group by."""
    params = sorted({f"params.{k}" for r in records for k in r.params})
    tags = sorted({f"tags.{k}" for r in records for k in r.tags if not k.startswith(("mlflow.", "orch."))})
    keys = params + tags
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return (", ".join(keys[:limit]) + more) if keys else "no params or tags"
