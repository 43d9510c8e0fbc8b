"""Evolving donors: notice when a donor changes their mind, and follow them.

The **agreement stream** of a decision twin is one point per answer, in the order the
answers arrived: 1 when the clone that was serving (which had not seen the answer) chose
the donor's label, else 0, a prequential test. Its disagreements (1 - agreement) go to a
River detector (:mod:`twinkit.monitor.drift`; ADWIN by default, which adapts to the
stream's own variance, so the same significance suits a donor the clone matches 95 % of
the time and one it matches 70 %). Only a **rise** in disagreement is a change of the
donor: a fall is the clone learning, and the detector simply starts afresh.

A change shows in the stream only where the questions land on it, and a query strategy
that asks along the borders (where people are unsure) may go a long while without asking
where the donor departed from people in general. So a follower also **checks**: a share
of each batch (:data:`CHECK_SHARE`) asks about items where the clone answers otherwise
than the population prior, the donor's personal zone as the clone learnt it, most
confident first (:class:`CheckingQuery`). A donor who still has their habits agrees with
the clone there; one who dropped them disagrees at once. A new habit where the clone and
people in general agree is found only when the questions come to it.

A change begins at the change point of the disagreements since the detector last fired
(:func:`twinkit.monitor.drift.change_point`). From there on the clone learns only from
the answers since that point: a sliding window of answers whose start the detector
chooses, personalised from the population prior as a new clone would be. The answers
before it are kept (the ledger and the store hold them) but no longer teach.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import drift
from river.drift import binary

from twinkit.clone.query import QueryContext, QueryStrategy
from twinkit.core.errors import TwinkitError
from twinkit.monitor.drift import fires

#: detectors of an agreement stream by name (see the module docstring)
ANSWER_DETECTORS: dict[str, Callable[[int], Any]] = {
    "page_hinkley": lambda seed: drift.PageHinkley(
        min_instances=20, delta=0.05, threshold=8.0, mode="up"
    ),
    "adwin": lambda seed: drift.ADWIN(  # type: ignore[no-untyped-call]
        delta=0.002, clock=1, grace_period=20, min_window_length=5
    ),
    "ddm": lambda seed: binary.DDM(warm_start=30, drift_threshold=3.0),
}
#: the agreement stream's detector unless one is named
DEFAULT_ANSWER_DETECTOR = "page_hinkley"
#: the share of each batch of questions that checks the donor's personal zone
CHECK_SHARE = 0.3


@dataclass(frozen=True)
class DonorChange:
    """A rise in the clone's disagreement with its donor: found at answer ``at`` (0-based,
    in arrival order), beginning at answer ``start``; the disagreement rates before it
    (since the detector last fired) and from ``start`` to ``at``."""

    at: int
    start: int
    disagreement_before: float
    disagreement_after: float
    detector: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "start": self.start,
            "disagreement_before": round(self.disagreement_before, 4),
            "disagreement_after": round(self.disagreement_after, 4),
            "answers": self.at + 1 - self.start,
            "detector": self.detector,
        }


def donor_changes(
    agree: Sequence[bool] | np.ndarray, detector: str = DEFAULT_ANSWER_DETECTOR, seed: int = 0
) -> list[DonorChange]:
    """The donor's changes in an agreement stream (oldest answer first): where a fresh
    detector fed the disagreements fired on a rise. The same stream gives the same
    changes, so replaying a growing stream finds each change once, at the same answer.

    >>> changed = [True] * 60 + [False, False, True, False] * 15
    >>> [(c.start, c.at) for c in donor_changes(changed)]
    [(60, 72)]
    >>> donor_changes([True, False] * 60)
    []
    """
    disagree = 1.0 - np.asarray(agree, dtype=np.float64)
    out: list[DonorChange] = []
    for i, start, since in fires(disagree, detector, seed, ANSWER_DETECTORS):
        before = float(disagree[since:start].mean())
        after = float(disagree[start : i + 1].mean())
        if after > before:
            out.append(DonorChange(i, start, before, after, detector))
    return out


def window_start(changes: Sequence[DonorChange]) -> int:
    """The first answer the clone learns from: the newest change's start, else 0."""
    return changes[-1].start if changes else 0


class CheckingQuery(QueryStrategy):
    """``base``'s questions, except that ``share`` of each batch (rounded up) checks the
    donor's personal zone: unasked items where the clone's answer differs from the
    population prior's, those the clone is surest of first. Without such items the base
    strategy asks them all."""

    def __init__(self, base: QueryStrategy, share: float = CHECK_SHARE) -> None:
        if not 0.0 <= share <= 1.0:
            raise TwinkitError(f"the check share must be between 0 and 1, got {share}")
        self.base, self.share = base, share
        self.name = base.name
        #: how many of the last batch's questions were checks (they come first)
        self.checked = 0

    def checks(self, context: QueryContext, k: int) -> np.ndarray:
        """Up to ``k`` unasked pool rows in the clone's personal zone, surest first."""
        free = context.pool.unasked()
        if k <= 0 or len(free) == 0 or context.clone is context.population:
            return free[:0]
        features = context.pool.features[free]
        proba = context.clone.predict_proba(features)
        mine = proba.argmax(axis=1)
        differ = np.flatnonzero(mine != context.population.predict_proba(features).argmax(axis=1))
        order = differ[np.argsort(-proba[differ, mine[differ]], kind="stable")]
        return np.asarray(free[order[:k]], dtype=np.int64)

    def select(self, context: QueryContext, k: int, rng: np.random.Generator) -> np.ndarray:
        checked = self.checks(context, math.ceil(self.share * k))
        self.checked = len(checked)
        if len(checked) == 0:
            return self.base.select(context, k, rng)
        context.pool.asked[checked] = True  # hidden from the base strategy for this batch
        try:
            rest = self.base.select(context, k - len(checked), rng)
        finally:
            context.pool.asked[checked] = False
        return np.concatenate([checked, np.asarray(rest, dtype=np.int64)])
