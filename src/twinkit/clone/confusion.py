"""Confusion-driven relabeling: which classes a sample could be, and whom that confuses.

Every sample gets a confusion label, the set of classes whose probability is within
``margin`` of the top class: a clear "1" stays ``1``, an ambiguous one becomes ``1|7``.
Samples whose label names two or more classes fall into border categories, one per pair
of classes (the "border guards"). A donor's personal confusion zone is where their own
answers part from what people in general answer, pair by pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: probability gap to the top class within which a class still counts as possible
DEFAULT_MARGIN = 0.2
SEPARATOR = "|"


def confusion_sets(proba: np.ndarray, margin: float = DEFAULT_MARGIN) -> list[tuple[int, ...]]:
    """Per row, the classes (indices, most probable first) within ``margin`` of the top."""
    proba = np.asarray(proba, dtype=np.float64)
    top = proba.max(axis=1, keepdims=True)
    out: list[tuple[int, ...]] = []
    for row, near in zip(proba, proba >= top - margin, strict=True):
        members = np.flatnonzero(near)
        out.append(tuple(int(i) for i in members[np.argsort(-row[members], kind="stable")]))
    return out


def confusion_labels(
    proba: np.ndarray, classes: Sequence[str], margin: float = DEFAULT_MARGIN
) -> list[str]:
    """Confusion labels such as ``"4"`` or ``"4|9"`` (classes in their listed order)."""
    return [
        SEPARATOR.join(classes[i] for i in sorted(members))
        for members in confusion_sets(proba, margin)
    ]


def combined_proba(*probas: np.ndarray) -> np.ndarray:
    """The mean of several models' probabilities: a sample that confuses either model
    (the clone or the population) is confusing."""
    return np.asarray(np.mean(np.stack([np.asarray(p, dtype=np.float64) for p in probas]), axis=0))


def border_categories(
    proba: np.ndarray, margin: float = DEFAULT_MARGIN
) -> dict[tuple[int, int], np.ndarray]:
    """Rows on each border: pair (a, b) with a < b -> the rows whose two most probable
    classes are a and b and whose confusion set holds both."""
    groups: dict[tuple[int, int], list[int]] = {}
    for row, members in enumerate(confusion_sets(proba, margin)):
        if len(members) >= 2:
            a, b = sorted(members[:2])
            groups.setdefault((a, b), []).append(row)
    return {pair: np.asarray(rows, dtype=np.int64) for pair, rows in sorted(groups.items())}


@dataclass(frozen=True)
class PairBias:
    """How often a person answers ``said`` where people in general answer ``expected``."""

    expected: str
    said: str
    person_rate: float
    general_rate: float
    support: int

    @property
    def excess(self) -> float:
        return self.person_rate - self.general_rate

    def to_dict(self) -> dict[str, object]:
        return {
            "expected": self.expected,
            "said": self.said,
            "person_rate": round(self.person_rate, 4),
            "general_rate": round(self.general_rate, 4),
            "excess": round(self.excess, 4),
            "support": self.support,
        }


def swap_rates(expected: np.ndarray, said: np.ndarray, n_classes: int) -> np.ndarray:
    """Row-normalised confusion matrix: [a, b] = share of rows expected a that said b."""
    counts = np.zeros((n_classes, n_classes))
    np.add.at(counts, (np.asarray(expected), np.asarray(said)), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.asarray(np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0))


def confusion_zone(
    reference: np.ndarray,
    person: np.ndarray,
    general: np.ndarray,
    classes: Sequence[str],
    *,
    min_excess: float = 0.05,
    min_support: int = 5,
    reference_general: np.ndarray | None = None,
) -> list[PairBias]:
    """The pairs a person mixes up more (or less) than people in general.

    ``reference`` is what people in general would answer (the population model's labels)
    on the items the person answered, ``person`` the person's (or their clone's) answers
    on the same items; ``general`` is what other people answered on items whose reference
    is ``reference_general`` (by default the same items). Pairs whose rate differs by at
    least ``min_excess`` with at least ``min_support`` items expected, largest first.
    """
    k = len(classes)
    mine = swap_rates(reference, person, k)
    theirs = swap_rates(reference if reference_general is None else reference_general, general, k)
    support = np.bincount(np.asarray(reference, dtype=np.int64), minlength=k)
    out = [
        PairBias(classes[a], classes[b], float(mine[a, b]), float(theirs[a, b]), int(support[a]))
        for a in range(k)
        for b in range(k)
        if a != b and support[a] >= min_support and abs(mine[a, b] - theirs[a, b]) >= min_excess
    ]
    return sorted(out, key=lambda p: -abs(p.excess))
