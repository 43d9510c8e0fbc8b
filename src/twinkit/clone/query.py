"""Query strategies: which items to ask the donor about next.

Every strategy picks from the pool's items not asked yet, so no item is asked twice.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from twinkit.clone.confusion import DEFAULT_MARGIN, border_categories, combined_proba
from twinkit.clone.donor import Queries
from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError


@dataclass
class Pool:
    """The items a donor can be asked about, and which have been asked already."""

    features: np.ndarray
    item_ids: list[str]
    asked: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float64)
        if len(self.features) != len(self.item_ids):
            raise TwinkitError("one item id per pool row")
        if len(set(self.item_ids)) != len(self.item_ids):
            raise TwinkitError("pool item ids repeat")
        if len(self.asked) != len(self.item_ids):
            self.asked = np.zeros(len(self.item_ids), dtype=bool)

    def unasked(self) -> np.ndarray:
        return np.flatnonzero(~self.asked)

    def queries(self, rows: np.ndarray) -> Queries:
        rows = np.asarray(rows, dtype=np.int64)
        return Queries(self.features[rows], [self.item_ids[i] for i in rows], ["pool"] * len(rows))

    def mark(self, rows: np.ndarray) -> None:
        if self.asked[rows].any() or len(np.unique(rows)) != len(rows):
            raise TwinkitError("an item was about to be asked twice")
        self.asked[rows] = True


@dataclass
class QueryContext:
    """What a strategy may look at: the pool, the clone as it is, the population prior,
    and the labels the donor gave so far (features, class indices)."""

    pool: Pool
    clone: CloneModel
    population: CloneModel
    labeled_x: np.ndarray
    labeled_y: np.ndarray


class QueryStrategy(abc.ABC):
    """Pick up to ``k`` unasked pool rows; never the same row twice in one call."""

    name = "base"

    @abc.abstractmethod
    def select(self, context: QueryContext, k: int, rng: np.random.Generator) -> np.ndarray: ...


def margins(proba: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row: 0 on the boundary, 1 far from it."""
    top2 = np.sort(proba, axis=1)[:, -2:]
    return np.asarray(top2[:, 1] - top2[:, 0])


class RandomQuery(QueryStrategy):
    name = "random"

    def select(self, context: QueryContext, k: int, rng: np.random.Generator) -> np.ndarray:
        free = context.pool.unasked()
        return np.asarray(rng.permutation(free)[:k], dtype=np.int64)


class UncertaintyQuery(QueryStrategy):
    """The clone's least certain items: smallest margin (or largest entropy)."""

    name = "uncertainty"

    def __init__(self, measure: str = "margin") -> None:
        if measure not in ("margin", "entropy"):
            raise TwinkitError(f"uncertainty measure is margin or entropy, not {measure!r}")
        self.measure = measure

    def select(self, context: QueryContext, k: int, rng: np.random.Generator) -> np.ndarray:
        free = context.pool.unasked()
        if len(free) == 0:
            return free
        proba = context.clone.predict_proba(context.pool.features[free])
        if self.measure == "margin":
            score = margins(proba)
        else:
            score = (proba * np.log(np.clip(proba, 1e-12, 1.0))).sum(axis=1)  # -entropy
        ties = rng.random(len(free))  # random order among equal scores
        return free[np.lexsort((ties, score))[:k]]


class ConfusionQuery(QueryStrategy):
    """Items from the border categories, balanced over the pairs of classes.

    Confusion sets come from the clone's and the population's probabilities together, so
    both what the clone is unsure of and where people in general are split are covered.
    Pairs take turns (the most populated first); within a pair the most ambiguous item
    goes first. When the borders run out, the clone's least certain items fill up.
    """

    name = "confusion"

    def __init__(self, margin: float = DEFAULT_MARGIN) -> None:
        self.margin = margin

    def select(self, context: QueryContext, k: int, rng: np.random.Generator) -> np.ndarray:
        free = context.pool.unasked()
        if len(free) == 0:
            return free
        features = context.pool.features[free]
        proba = combined_proba(
            context.clone.predict_proba(features), context.population.predict_proba(features)
        )
        gap = margins(proba)
        borders = border_categories(proba, self.margin)
        queues = [
            list(rows[np.argsort(gap[rows], kind="stable")])
            for rows in sorted(borders.values(), key=len, reverse=True)
        ]
        chosen: list[int] = []
        while len(chosen) < k and any(queues):
            for queue in queues:
                if queue and len(chosen) < k:
                    chosen.append(int(queue.pop(0)))
        if len(chosen) < k:
            taken = set(chosen)
            rest = [int(i) for i in np.argsort(gap, kind="stable") if int(i) not in taken]
            chosen += rest[: k - len(chosen)]
        return free[np.asarray(chosen, dtype=np.int64)]
