"""Simulated people: a model with a personal bias, standing in for a donor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twinkit.clone.donor import ModelDonor, Queries
from twinkit.clone.model import CloneModel


@dataclass(frozen=True)
class Swap:
    """Where the base model says ``said`` and ``instead`` is within ``shift`` log-odds of
    it, this person answers ``instead``: "calls some 4s 9s" is ``Swap("4", "9", shift)``."""

    said: str
    instead: str
    shift: float


def biased_answers(base: CloneModel, x: np.ndarray, swaps: Sequence[Swap]) -> list[str]:
    """The base model's answers with the person's swaps applied."""
    proba = np.clip(base.predict_proba(x), 1e-12, 1.0)
    answers = [base.classes[i] for i in proba.argmax(axis=1)]
    index = {c: i for i, c in enumerate(base.classes)}
    for swap in swaps:
        a, b = index[swap.said], index[swap.instead]
        odds = np.log(proba[:, b]) - np.log(proba[:, a])
        for row in np.flatnonzero(odds > -swap.shift):
            if answers[row] == swap.said:
                answers[row] = swap.instead
    return answers


def shift_for_share(
    base: CloneModel, x: np.ndarray, said: str, instead: str, share: float
) -> float:
    """The shift that makes the person swap ``share`` of the items the base calls ``said``."""
    proba = np.clip(base.predict_proba(x), 1e-12, 1.0)
    index = {c: i for i, c in enumerate(base.classes)}
    rows = proba.argmax(axis=1) == index[said]
    odds = np.log(proba[rows, index[instead]]) - np.log(proba[rows, index[said]])
    return float(-np.quantile(odds, 1.0 - share)) + 1e-9


def biased_donor(base: CloneModel, swaps: Sequence[Swap]) -> ModelDonor:
    """A donor who answers like ``base`` except for their swaps (labels any features)."""
    return ModelDonor(lambda x: biased_answers(base, x, swaps))


class ChangingDonor:
    """A simulated donor who changes their mind: ``first`` answers the first ``after``
    queries, ``then`` every later one (counted over all the queries it was given)."""

    def __init__(self, first: ModelDonor, then: ModelDonor, after: int) -> None:
        self.first, self.then, self.after = first, then, after
        self.given = 0

    def label(self, queries: Queries) -> list[str | None]:
        head = max(0, min(len(queries), self.after - self.given))
        self.given += len(queries)
        out: list[str | None] = []
        if head:
            out += self.first.label(_rows(queries, 0, head))
        if head < len(queries):
            out += self.then.label(_rows(queries, head, len(queries)))
        return out


def _rows(queries: Queries, start: int, stop: int) -> Queries:
    return Queries(
        queries.features[start:stop],
        queries.item_ids[start:stop],
        queries.origin[start:stop],
    )
