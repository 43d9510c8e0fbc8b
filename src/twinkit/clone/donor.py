"""Donors: whoever answers the clone's questions, behind one protocol.

A donor labels a batch of queries and may leave some unanswered (``None``): a pool donor
knows only the items it has recorded answers for, a queue donor answers later. The
clone's learning loop is the same for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Queries:
    """Samples to ask about: features, and the pool item each one is (``None`` for a
    synthetic sample the donor has never seen)."""

    features: np.ndarray
    item_ids: list[str | None]
    origin: list[str] = field(default_factory=list)  # "pool", "synthetic", "perturbed"

    def __post_init__(self) -> None:
        if len(self.features) != len(self.item_ids):
            raise ValueError("one item id (or None) per query row")

    def __len__(self) -> int:
        return len(self.item_ids)


@runtime_checkable
class Donor(Protocol):
    """Answers queries with a label each, or ``None`` where it has no answer (yet)."""

    def label(self, queries: Queries) -> list[str | None]: ...


class PoolDonor:
    """Recorded answers: a donor who can only be asked about items they labelled."""

    def __init__(self, answers: Mapping[str, str]) -> None:
        self.answers = dict(answers)

    def label(self, queries: Queries) -> list[str | None]:
        return [None if i is None else self.answers.get(i) for i in queries.item_ids]


class ModelDonor:
    """A model standing in for a person (simulation): labels any features, synthetic too."""

    def __init__(self, predict: Callable[[np.ndarray], Sequence[str]]) -> None:
        self.predict = predict

    def label(self, queries: Queries) -> list[str | None]:
        if len(queries) == 0:
            return []
        return [str(v) for v in self.predict(np.asarray(queries.features))]


class QueueDonor:
    """A person who answers later: queries wait in a queue until answers arrive.

    ``label`` enqueues and answers nothing now; ``answer`` records what the person said,
    and the next ``label`` (or :meth:`answered`) hands those answers back. The service's
    labeling page and ``twinkit clone answer`` feed it.
    """

    def __init__(self) -> None:
        self.pending: dict[str, np.ndarray] = {}
        self.received: dict[str, str] = {}

    def label(self, queries: Queries) -> list[str | None]:
        out: list[str | None] = []
        for item, row in zip(queries.item_ids, queries.features, strict=True):
            if item is not None and item in self.received:
                out.append(self.received[item])
            else:
                if item is not None:
                    self.pending[item] = np.asarray(row)
                out.append(None)
        return out

    def answer(self, answers: Mapping[str, str]) -> list[str]:
        """Record answers; return the item ids that were not waiting for one."""
        unknown = [i for i in answers if i not in self.pending and i not in self.received]
        for item, label in answers.items():
            if item in self.pending:
                del self.pending[item]
                self.received[item] = str(label)
        return unknown
